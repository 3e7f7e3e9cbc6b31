using Dispatcher.Worker.Destinations;

namespace Dispatcher.Worker.Tests.Destinations;

/// <summary>The static <see cref="DestinationRegistry.Bind"/>: configuration to validated options.</summary>
public sealed class DestinationRegistryBindTests
{
    private static IConfiguration Config(params (string Key, string? Value)[] values) =>
        new ConfigurationBuilder()
            .AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value)))
            .Build();

    [Fact]
    public void Valid_section_binds_every_value()
    {
        var configuration = Config(
            ("Dispatcher:Destinations:payments:BaseUrl", "https://payments.example.com/v1/"),
            ("Dispatcher:Destinations:payments:AttemptTimeout", "00:00:05"),
            ("Dispatcher:Destinations:payments:RateLimit:PermitsPerSecond", "12.5"),
            ("Dispatcher:Destinations:payments:Headers:X-Api-Key", "k"),
            ("Dispatcher:Worker:MaxConcurrency", "8"),
            ("Dispatcher:RedactedHeaders:0", "X-Secret"));

        var options = DestinationRegistry.Bind(configuration, out var errors);

        Assert.Empty(errors);
        Assert.NotNull(options);
        var payments = Assert.Single(options.Destinations).Value;
        Assert.Equal(new Uri("https://payments.example.com/v1/"), payments.BaseUrl);
        Assert.Equal(TimeSpan.FromSeconds(5), payments.AttemptTimeout);
        Assert.Equal(12.5, payments.RateLimit.PermitsPerSecond);
        Assert.Equal("k", payments.Headers["X-Api-Key"]);
        Assert.Equal(8, options.Worker.MaxConcurrency);
        Assert.Equal(["X-Secret"], options.RedactedHeaders);
    }

    [Fact]
    public void Empty_configuration_binds_the_defaults()
    {
        var options = DestinationRegistry.Bind(Config(), out var errors);

        Assert.Empty(errors);
        Assert.NotNull(options);
        Assert.Empty(options.Destinations);
        Assert.Equal(64, options.Worker.MaxConcurrency);
    }

    [Theory]
    [InlineData("Dispatcher:Worker:MaxConcurrency", "many")]
    [InlineData("Dispatcher:Worker:ShutdownTimeout", "soon")]
    [InlineData("Dispatcher:Limits:MaxHeaderBytes", "16k")]
    [InlineData("Dispatcher:Outbox:PollInterval", "1 second")]
    public void Unconvertible_value_returns_null_with_an_error_naming_the_key(string key, string value)
    {
        var configuration = Config(("Dispatcher:Destinations:p:BaseUrl", "https://p.example.com/"), (key, value));

        var options = DestinationRegistry.Bind(configuration, out var errors);

        Assert.Null(options);
        Assert.Contains(key, Assert.Single(errors), StringComparison.Ordinal);
    }

    // The binder swallows conversion errors inside dictionary entries unless ErrorOnUnknownConfiguration is set:
    // today the destination silently disappears and Bind reports no error at all.
    [Theory]
    [InlineData("Dispatcher:Destinations:p:AttemptTimeout", "soon")]
    [InlineData("Dispatcher:Destinations:p:RateLimit:PermitsPerSecond", "fast")]
    [InlineData("Dispatcher:Destinations:p:Retry:MaxAttempts", "2.5")]
    public void Unconvertible_destination_value_returns_null_with_an_error_naming_the_key(string key, string value)
    {
        var configuration = Config(("Dispatcher:Destinations:p:BaseUrl", "https://p.example.com/"), (key, value));

        var options = DestinationRegistry.Bind(configuration, out var errors);

        Assert.Null(options);
        Assert.Contains(key, Assert.Single(errors), StringComparison.Ordinal);
    }

    [Fact]
    public void Invalid_value_returns_null_with_the_validation_errors()
    {
        var configuration = Config(
            ("Dispatcher:Destinations:p:BaseUrl", "ftp://p.example.com/"),
            ("Dispatcher:Destinations:p:RateLimit:PermitsPerSecond", "0"));

        var options = DestinationRegistry.Bind(configuration, out var errors);

        Assert.Null(options);
        Assert.Equal(2, errors.Count);
        Assert.StartsWith("Dispatcher:Destinations:p:BaseUrl ", errors[0], StringComparison.Ordinal);
        Assert.StartsWith("Dispatcher:Destinations:p:RateLimit:PermitsPerSecond ", errors[1], StringComparison.Ordinal);
    }

    [Fact]
    public void Destination_and_header_names_are_case_insensitive_after_binding()
    {
        var configuration = Config(
            ("Dispatcher:Destinations:Payments:BaseUrl", "https://payments.example.com/"),
            ("Dispatcher:Destinations:Payments:Headers:X-Tenant", "t1"));

        var options = DestinationRegistry.Bind(configuration, out _);

        Assert.NotNull(options);
        Assert.True(options.Destinations.ContainsKey("payments"));
        Assert.True(options.Destinations.ContainsKey("PAYMENTS"));
        Assert.Equal("t1", options.Destinations["payments"].Headers["x-tenant"]);
    }

    [Fact]
    public void Keys_differing_only_in_case_are_one_destination()
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection([new("Dispatcher:Destinations:payments:BaseUrl", "https://a.example.com/")])
            .AddInMemoryCollection([new("Dispatcher:Destinations:PAYMENTS:BaseUrl", "https://b.example.com/")])
            .Build();

        var options = DestinationRegistry.Bind(configuration, out _);

        Assert.Equal(new Uri("https://b.example.com/"), Assert.Single(options!.Destinations).Value.BaseUrl);
    }
}
