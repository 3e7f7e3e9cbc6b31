using Dispatcher.Worker.Cli;
using Dispatcher.Worker.Hosting;
using Spectre.Console.Cli;

var (commandArgs, overrides) = DispatcherConfiguration.SplitArgs(args);
CliOverrides.Values = overrides;

var app = new CommandApp<RunCommand>();
app.Configure(config =>
{
    config.SetApplicationName("dispatcher");
    config.AddCommand<RunCommand>("run").WithDescription("Run a worker (the default).");
    config.AddCommand<MigrateCommand>("migrate").WithDescription("Create or upgrade the database schema, then exit.");
    config.AddCommand<SendCommand>("send").WithDescription("Publish requests to the request queue.")
        .WithExample("send", "--destination", "payments", "--path", "/v1/charges", "--body", "{\"amount\":100}", "--count", "10");
    config.AddBranch("dispatches", b =>
    {
        b.SetDescription("Inspect dispatches.");
        b.AddCommand<DispatchesShowCommand>("show").WithDescription("A request's state, attempts and history.");
    });
    config.AddCommand<DemoCommand>("demo").WithDescription("Run a worker against a local demo downstream with demo traffic, then print a summary.");
});
return await app.RunAsync(commandArgs);

/// <summary>The entry point, visible to tests that start the worker in-process or as a process.</summary>
public partial class Program;
