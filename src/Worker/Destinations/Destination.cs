using System.Diagnostics;
using System.Net;
using Dispatcher.Persistence.RateLimiting;
using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Resilience;
using Dispatcher.Worker.Observability;

namespace Dispatcher.Worker.Destinations;

/// <summary>
/// A configured destination as the worker uses it: its validated options and its own pooled HTTP client.
/// Replaced as a whole when its configuration changes.
/// </summary>
internal sealed class Destination : IDisposable
{
    private readonly SocketsHttpHandler _handler;

    public Destination(string name, DestinationOptions options, RateLimitStore? rateLimits = null, TimeProvider? time = null, int workerSlots = int.MaxValue)
    {
        Name = name;
        Options = options;
        Metrics = new DestinationMetrics(name);
        Policy = new DestinationPolicy(name, options, Metrics, rateLimits, time ?? TimeProvider.System, workerSlots);
        BaseUrl = options.BaseUrl!;
        _handler = new SocketsHttpHandler
        {
            PooledConnectionLifetime = DispatcherDefaults.PooledConnectionLifetime,
            PooledConnectionIdleTimeout = DispatcherDefaults.PooledConnectionIdleTimeout,
            MaxConnectionsPerServer = options.MaxConcurrency,
            ConnectTimeout = options.AttemptTimeout,
            // A redirect could lead to another host: a 3xx is an answer, not an instruction.
            AllowAutoRedirect = false,
            UseCookies = false,
            UseProxy = false,
            AutomaticDecompression = DecompressionMethods.All,
            // The attempt sets its own traceparent (DispatchTracing); the handler must not add another.
            ActivityHeadersPropagator = DistributedContextPropagator.CreateNoOutputPropagator(),
        };
        Client = new HttpClient(_handler, disposeHandler: false) { Timeout = Timeout.InfiniteTimeSpan };
    }

    public string Name { get; }

    public DestinationOptions Options { get; }

    public Uri BaseUrl { get; }

    public HttpClient Client { get; }

    public DestinationMetrics Metrics { get; }

    public DestinationPolicy Policy { get; }

    public void Dispose()
    {
        Client.Dispose();
        _handler.Dispose();
    }
}
