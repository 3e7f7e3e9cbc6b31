using System.Collections.Frozen;
using Dispatcher.Persistence.RateLimiting;
using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Observability;
using Microsoft.Extensions.Primitives;

namespace Dispatcher.Worker.Destinations;

/// <summary>
/// The destinations in force. Follows configuration changes (the <c>--config</c> file is watched): a valid
/// change replaces the destinations; an invalid one is refused with a logged error naming the key, and the
/// previous policy stays. Reloads are read from <see cref="IConfiguration"/> directly rather than through
/// IOptionsMonitor, so a bad value on reload can never throw inside the change callback.
/// </summary>
internal sealed class DestinationRegistry : IDisposable
{
    private readonly IConfiguration _configuration;
    private readonly ILogger<DestinationRegistry> _logger;
    private readonly TimeProvider _time;
    private readonly RateLimitStore? _rateLimits;
    private readonly IDisposable _subscription;
    private volatile Snapshot _current;

    public DestinationRegistry(IConfiguration configuration, TimeProvider time, ILogger<DestinationRegistry> logger)
        : this(configuration, time, logger, rateLimits: null)
    {
    }

    /// <param name="rateLimits">The shared buckets; null (unit tests) means no rate limit.</param>
    public DestinationRegistry(IConfiguration configuration, TimeProvider time, ILogger<DestinationRegistry> logger, RateLimitStore? rateLimits)
    {
        _rateLimits = rateLimits;
        _configuration = configuration;
        _logger = logger;
        _time = time;
        var initial = Bind(configuration, out var errors);
        if (errors.Count > 0)
            throw new InvalidOperationException("Invalid configuration: " + string.Join(" ", errors));
        _current = new Snapshot(initial!, Build(initial!));
        _subscription = ChangeToken.OnChange(configuration.GetReloadToken, Reload);
    }

    /// <summary>The options in force (the last valid ones).</summary>
    public DispatcherOptions Options => _current.Options;

    public IEnumerable<Destination> All => _current.Destinations.Values;

    public bool TryGet(string? name, out Destination destination)
    {
        destination = null!;
        return name is not null && _current.Destinations.TryGetValue(name, out destination!);
    }

    /// <summary>Binds and validates the <c>Dispatcher</c> section; errors name their keys.</summary>
    public static DispatcherOptions? Bind(IConfiguration configuration, out List<string> errors)
    {
        // ErrorOnUnknownConfiguration: a misspelt key is an error. Destinations are bound one by one first, because
        // inside a dictionary the binder reports a bad value only as "binding failed" for the whole entry (and
        // without the flag silently drops the destination): bound alone, its error names the exact key.
        errors = [];
        var section = configuration.GetSection(DispatcherOptions.SectionName);
        foreach (var destination in section.GetSection(nameof(DispatcherOptions.Destinations)).GetChildren())
        {
            try
            {
                destination.Get<DestinationOptions>(o => o.ErrorOnUnknownConfiguration = true);
            }
            catch (InvalidOperationException ex)
            {
                errors.Add(Describe(ex, destination.Path));
            }
        }
        if (errors.Count > 0)
            return null;

        DispatcherOptions options;
        try
        {
            options = section.Get<DispatcherOptions>(o => o.ErrorOnUnknownConfiguration = true) ?? new DispatcherOptions();
        }
        catch (InvalidOperationException ex)
        {
            errors.Add(Describe(ex, section.Path));
            return null;
        }
        errors = DispatcherOptionsValidator.Collect(options);
        return errors.Count == 0 ? options : null;
    }

    // The binder names the failing key in "Failed to convert ... at 'key'"; an unknown key only by its
    // property name, so the section path is added.
    private static string Describe(InvalidOperationException ex, string path)
    {
        var message = ex.InnerException is InvalidOperationException inner ? $"{ex.Message} {inner.Message}" : ex.Message;
        return message.Contains(path + ":", StringComparison.OrdinalIgnoreCase) ? message : $"{path}: {message}";
    }

    private void Reload()
    {
        var updated = Bind(_configuration, out var errors);
        if (updated is null)
        {
            Log.ConfigurationRejected(_logger, string.Join(" ", errors));
            return;
        }
        var previous = _current;
        FrozenDictionary<string, Destination> built;
        try
        {
            built = Build(updated);
        }
        catch (ArgumentException ex)
        {
            Log.ConfigurationRejected(_logger, ex.Message);
            return;
        }
        foreach (var (name, destination) in built)
        {
            if (previous.Destinations.TryGetValue(name, out var replaced))
                destination.Policy.TakeOver(replaced.Policy);
        }
        _current = new Snapshot(updated, built);
        Log.ConfigurationApplied(_logger, updated.Destinations.Count);

        // In-flight calls may still hold a replaced client: dispose of it once they must have ended.
        var grace = previous.Destinations.Values.Select(d => d.Options.AttemptTimeout).DefaultIfEmpty().Max() + TimeSpan.FromSeconds(5);
        _ = DisposeLaterAsync(previous.Destinations.Values, grace);
    }

    private async Task DisposeLaterAsync(IEnumerable<Destination> replaced, TimeSpan grace)
    {
        await Task.Delay(grace, _time);
        foreach (var d in replaced)
            d.Dispose();
    }

    private FrozenDictionary<string, Destination> Build(DispatcherOptions options) =>
        options.Destinations.ToFrozenDictionary(
            kv => kv.Key, kv => new Destination(kv.Key, kv.Value, _rateLimits, _time, options.Worker.MaxConcurrency), StringComparer.OrdinalIgnoreCase);

    public void Dispose()
    {
        _subscription.Dispose();
        foreach (var d in _current.Destinations.Values)
            d.Dispose();
    }

    private sealed record Snapshot(DispatcherOptions Options, FrozenDictionary<string, Destination> Destinations);
}
