using Dispatcher.Worker.Hosting;

namespace Dispatcher.Worker.Tests.Hosting;

public sealed class DispatcherConfigurationTests
{
    [Fact]
    public void Key_value_overrides_are_split_from_command_arguments_keeping_order()
    {
        string[] args =
        [
            "send", "--Dispatcher:Worker:MaxConcurrency=8", "--config", "x.json",
            "--destination", "payments", "--ConnectionStrings:Postgres=Host=db;Username=u", "-n", "3",
        ];

        var (commandArgs, overrides) = DispatcherConfiguration.SplitArgs(args);

        Assert.Equal(["send", "--config", "x.json", "--destination", "payments", "-n", "3"], commandArgs);
        Assert.Equal(["--Dispatcher:Worker:MaxConcurrency=8", "--ConnectionStrings:Postgres=Host=db;Username=u"], overrides);
    }

    [Theory]
    [InlineData("--config=x.json")]
    [InlineData("--Dispatcher:Worker:MaxConcurrency")]
    [InlineData("Dispatcher:Worker:MaxConcurrency=8")]
    [InlineData("-Dispatcher:Worker:MaxConcurrency=8")]
    [InlineData("/v1/charges")]
    public void Argument_that_is_not_a_double_dash_key_with_colon_and_value_stays_a_command_argument(string arg)
    {
        var (commandArgs, overrides) = DispatcherConfiguration.SplitArgs(["run", arg]);

        Assert.Equal(["run", arg], commandArgs);
        Assert.Empty(overrides);
    }

    // IsOverride only asks for "--", some ':' and some '=' anywhere: an option value containing ':' is taken as
    // a configuration override and silently disappears from the command (send gets no body / no path).
    [Theory]
    [InlineData("--body={\"amount\":100}")]
    [InlineData("--path=/v1/slots?from=10:30")]
    [InlineData("--header=X-Trace=a:b")]
    public void Command_option_whose_value_contains_a_colon_stays_a_command_argument(string arg)
    {
        var (commandArgs, overrides) = DispatcherConfiguration.SplitArgs(["send", arg]);

        Assert.Equal(["send", arg], commandArgs);
        Assert.Empty(overrides);
    }

    [Fact]
    public void Empty_command_line_gives_nothing_to_either_side()
    {
        var (commandArgs, overrides) = DispatcherConfiguration.SplitArgs([]);

        Assert.Empty(commandArgs);
        Assert.Empty(overrides);
    }

    [Fact]
    public void Overrides_are_applied_last_over_every_other_source()
    {
        var configuration = new ConfigurationManager();
        Environment.SetEnvironmentVariable("Dispatcher__Worker__QueueName", "from-env");
        try
        {
            DispatcherConfiguration.Apply(configuration, "Testing", null,
                ["--Dispatcher:Worker:MaxConcurrency=8", "--Dispatcher:Worker:QueueName=from-args"]);

            Assert.Equal("8", configuration["Dispatcher:Worker:MaxConcurrency"]);
            Assert.Equal("from-args", configuration["Dispatcher:Worker:QueueName"]);
        }
        finally
        {
            Environment.SetEnvironmentVariable("Dispatcher__Worker__QueueName", null);
        }
    }

    [Fact]
    public void Missing_config_file_is_reported_with_its_full_path()
    {
        var missing = Path.Combine(Path.GetTempPath(), $"dispatcher-{Guid.NewGuid():N}.json");

        var ex = Assert.Throws<FileNotFoundException>(() => DispatcherConfiguration.Apply(new ConfigurationManager(), "Testing", missing, []));

        Assert.Equal(missing, ex.FileName);
        Assert.Contains("--config", ex.Message, StringComparison.Ordinal);
    }
}
