using Dispatcher.Worker.Destinations;
using Microsoft.Extensions.Time.Testing;

namespace Dispatcher.Worker.Tests.Destinations;

/// <summary>DestinationRegistry over a live configuration: start-up validation and hot reload.</summary>
public sealed class DestinationRegistryTests : IDisposable
{
    private const string Rate = "Dispatcher:Destinations:p:RateLimit:PermitsPerSecond";
    private readonly FakeTimeProvider _time = new();
    private readonly CapturingLogger _logger = new();
    private readonly IConfigurationRoot _root = new ConfigurationBuilder()
        .AddInMemoryCollection([
            new("Dispatcher:Destinations:p:BaseUrl", "https://p.example.com/"),
            new("Dispatcher:Destinations:p:AttemptTimeout", "00:00:02"),
            new(Rate, "10"),
        ])
        .Build();
    private readonly DestinationRegistry _registry;

    public DestinationRegistryTests() => _registry = new DestinationRegistry(_root, _time, _logger);

    public void Dispose() => _registry.Dispose();

    /// <summary>Sets a value and reloads, checking that the reload token really fired.</summary>
    private void Change(string key, string? value)
    {
        var token = _root.GetReloadToken();
        _root[key] = value;
        _root.Reload();
        Assert.True(token.HasChanged);
    }

    private static bool IsDisposed(Destination destination)
    {
        try
        {
            destination.Client.CancelPendingRequests();
            return false;
        }
        catch (ObjectDisposedException)
        {
            return true;
        }
    }

    [Fact]
    public void Start_up_exposes_the_configured_destinations_case_insensitively()
    {
        Assert.True(_registry.TryGet("P", out var destination));
        Assert.Equal("p", destination.Name);
        Assert.Equal(new Uri("https://p.example.com/"), destination.BaseUrl);
        Assert.Equal(10, _registry.Options.Destinations["p"].RateLimit.PermitsPerSecond);
        Assert.False(_registry.TryGet("q", out _));
        Assert.False(_registry.TryGet(null, out _));
    }

    [Fact]
    public void Invalid_configuration_at_start_up_throws_naming_the_key()
    {
        var root = new ConfigurationBuilder()
            .AddInMemoryCollection([new("Dispatcher:Destinations:p:BaseUrl", "https://p.example.com/"), new(Rate, "0")])
            .Build();

        var ex = Assert.Throws<InvalidOperationException>(() => new DestinationRegistry(root, _time, _logger));

        Assert.Contains(Rate, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Valid_change_is_applied_on_reload()
    {
        _registry.TryGet("p", out var before);

        Change(Rate, "5");

        Assert.Equal(5, _registry.Options.Destinations["p"].RateLimit.PermitsPerSecond);
        Assert.True(_registry.TryGet("p", out var after));
        Assert.NotSame(before, after);
        Assert.Equal(5, after.Options.RateLimit.PermitsPerSecond);
        Assert.Contains(_logger.Entries, e => e.Level == LogLevel.Information && e.Message.Contains("applied (1 destinations)", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(Rate, "-1")]
    [InlineData("Dispatcher:Destinations:p:BaseUrl", "ftp://p.example.com/")]
    [InlineData("Dispatcher:Worker:MaxConcurrency", "many")]
    public void Invalid_change_is_refused_and_the_previous_policy_stays(string key, string value)
    {
        _registry.TryGet("p", out var before);
        var optionsBefore = _registry.Options;

        Change(key, value);

        Assert.Same(optionsBefore, _registry.Options);
        Assert.Equal(10, _registry.Options.Destinations["p"].RateLimit.PermitsPerSecond);
        Assert.True(_registry.TryGet("p", out var after));
        Assert.Same(before, after);
        Assert.False(IsDisposed(after));
        var refused = Assert.Single(_logger.Entries, e => e.Level == LogLevel.Error);
        Assert.Contains(key, refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Valid_change_after_a_refused_one_is_still_applied()
    {
        Change(Rate, "-1");
        Change(Rate, "7");

        Assert.Equal(7, _registry.Options.Destinations["p"].RateLimit.PermitsPerSecond);
    }

    [Fact]
    public void A_destination_rebuilt_on_reload_keeps_its_fleet_count()
    {
        Assert.True(_registry.TryGet("p", out var before));
        before.Policy.FleetWorkers = 3;
        Change(Rate, "20");
        Assert.True(_registry.TryGet("p", out var after));
        Assert.NotSame(before, after);
        Assert.Equal(3, after.Policy.FleetWorkers);
        Assert.Equal(20.0 / 3, after.Policy.ExpectedPace, 6);
    }

    [Fact]
    public void Destination_added_on_reload_is_available()
    {
        Change("Dispatcher:Destinations:q:BaseUrl", "http://q.example.com/api/");

        Assert.True(_registry.TryGet("Q", out var q));
        Assert.Equal(new Uri("http://q.example.com/api/"), q.BaseUrl);
        Assert.Equal(["p", "q"], _registry.All.Select(d => d.Name).Order());
    }

    [Fact]
    public void Destination_removed_on_reload_is_gone()
    {
        // The in-memory provider cannot delete a key (setting null leaves it present), so swap the whole data set.
        var provider = new SwappableProvider();
        provider.Replace(new() { ["Dispatcher:Destinations:p:BaseUrl"] = "https://p.example.com/", ["Dispatcher:Destinations:q:BaseUrl"] = "https://q.example.com/" });
        using var registry = new DestinationRegistry(new ConfigurationRoot([provider]), _time, _logger);

        provider.Replace(new() { ["Dispatcher:Destinations:q:BaseUrl"] = "https://q.example.com/" });

        Assert.False(registry.TryGet("p", out _));
        Assert.True(registry.TryGet("q", out _));
        Assert.Equal(["q"], registry.Options.Destinations.Keys);
    }

    [Fact]
    public void Replaced_destination_is_disposed_only_after_its_attempt_timeout_plus_five_seconds()
    {
        _registry.TryGet("p", out var replaced);

        Change(Rate, "5");
        _time.Advance(TimeSpan.FromSeconds(7) - TimeSpan.FromMilliseconds(1));
        Assert.False(IsDisposed(replaced));

        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True(SpinWait.SpinUntil(() => IsDisposed(replaced), TimeSpan.FromSeconds(10)));
        _registry.TryGet("p", out var current);
        Assert.False(IsDisposed(current));
    }

    [Fact]
    public void Dispose_stops_following_changes_and_disposes_the_clients()
    {
        _registry.TryGet("p", out var destination);

        _registry.Dispose();
        Change(Rate, "5");

        Assert.True(IsDisposed(destination));
        Assert.Equal(10, _registry.Options.Destinations["p"].RateLimit.PermitsPerSecond);
    }

    private sealed class SwappableProvider : ConfigurationProvider
    {
        public void Replace(Dictionary<string, string?> data)
        {
            Data = new Dictionary<string, string?>(data, StringComparer.OrdinalIgnoreCase);
            OnReload();
        }
    }

    private sealed class CapturingLogger : ILogger<DestinationRegistry>
    {
        public List<(LogLevel Level, string Message)> Entries { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Add((logLevel, formatter(state, exception)));
    }
}
