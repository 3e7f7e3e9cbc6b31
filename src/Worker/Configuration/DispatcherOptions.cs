namespace Dispatcher.Worker.Configuration;

/// <summary>The <c>Dispatcher</c> configuration section.</summary>
public sealed class DispatcherOptions
{
    public const string SectionName = "Dispatcher";

    public WorkerOptions Worker { get; set; } = new();

    /// <summary>Destinations by name (case-insensitive). Requests name one in <c>Destination</c>.</summary>
    public Dictionary<string, DestinationOptions> Destinations { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    public LimitsOptions Limits { get; set; } = new();

    public OutboxOptions Outbox { get; set; } = new();

    public AdminOptions Admin { get; set; } = new();

    public LoggingOptions Logging { get; set; } = new();

    public TracingOptions Tracing { get; set; } = new();

    /// <summary>Header names redacted in logs, outputs and events, on top of the built-in ones.</summary>
    public List<string> RedactedHeaders { get; set; } = [];
}

public sealed class WorkerOptions
{
    /// <summary>
    /// Messages one worker process works on at once (reading, claiming, committing). A message waiting on its
    /// destination (rate permit, downstream call) counts against that destination's MaxConcurrency instead, so
    /// the consumer takes up to this plus twice every destination's cap (its calls and its queue). Default: 64.
    /// </summary>
    public int MaxConcurrency { get; set; } = DispatcherDefaults.WorkerMaxConcurrency;

    /// <summary>RabbitMQ prefetch; 0 means "equal to the consumer's message limit" (MaxConcurrency + 2 x the destinations' caps). Default: 0.</summary>
    public int PrefetchCount { get; set; }

    /// <summary>The request queue. Default: <c>dispatch-requests</c>.</summary>
    public string QueueName { get; set; } = DispatcherDefaults.QueueName;

    /// <summary>How long past its AttemptTimeout a claim stays owned before another message may take it over. Default: 30 s.</summary>
    public TimeSpan LeaseMargin { get; set; } = DispatcherDefaults.LeaseMargin;

    /// <summary>How long shutdown waits for in-flight dispatches to finish. Default: 30 s.</summary>
    public TimeSpan ShutdownTimeout { get; set; } = DispatcherDefaults.ShutdownTimeout;
}

public sealed class DestinationOptions
{
    /// <summary>Absolute http(s) URL every request path is resolved against. Required.</summary>
    public Uri? BaseUrl { get; set; }

    /// <summary>Calls in flight to this destination from one worker (also its connection cap). Default: 16.</summary>
    public int MaxConcurrency { get; set; } = DispatcherDefaults.DestinationMaxConcurrency;

    /// <summary>Time allowed for one attempt, response body included. Default: 30 s.</summary>
    public TimeSpan AttemptTimeout { get; set; } = DispatcherDefaults.AttemptTimeout;

    /// <summary>Header carrying the RequestId on every attempt. Default: <c>Idempotency-Key</c>.</summary>
    public string IdempotencyHeader { get; set; } = DispatcherDefaults.IdempotencyHeader;

    /// <summary>Static headers sent on every call (credentials: set them from environment variables).</summary>
    public Dictionary<string, string> Headers { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    public RateLimitOptions RateLimit { get; set; } = new();

    public RetryOptions Retry { get; set; } = new();

    public CircuitBreakerOptions CircuitBreaker { get; set; } = new();
}

public sealed class RateLimitOptions
{
    /// <summary>Calls per second across all workers together. Default: 100.</summary>
    public double PermitsPerSecond { get; set; } = DispatcherDefaults.PermitsPerSecond;

    /// <summary>Calls allowed at once above the steady rate; 0 means "one second's worth". Default: 0.</summary>
    public int Burst { get; set; }
}

public sealed class RetryOptions
{
    /// <summary>Attempts in all, the first included. Default: 5.</summary>
    public int MaxAttempts { get; set; } = DispatcherDefaults.RetryMaxAttempts;

    /// <summary>Base of the exponential backoff (full jitter). Default: 1 s.</summary>
    public TimeSpan BaseDelay { get; set; } = DispatcherDefaults.RetryBaseDelay;

    /// <summary>Cap of one backoff delay. Default: 5 min.</summary>
    public TimeSpan MaxDelay { get; set; } = DispatcherDefaults.RetryMaxDelay;
}

public sealed class CircuitBreakerOptions
{
    /// <summary>Failure ratio over SamplingDuration that opens the breaker. Default: 0.5.</summary>
    public double FailureRatio { get; set; } = DispatcherDefaults.BreakerFailureRatio;

    /// <summary>Attempts within SamplingDuration before the ratio counts. Default: 20.</summary>
    public int MinimumThroughput { get; set; } = DispatcherDefaults.BreakerMinimumThroughput;

    /// <summary>Default: 30 s.</summary>
    public TimeSpan SamplingDuration { get; set; } = DispatcherDefaults.BreakerSamplingDuration;

    /// <summary>How long the breaker stays open before a probe. Default: 30 s.</summary>
    public TimeSpan BreakDuration { get; set; } = DispatcherDefaults.BreakerBreakDuration;
}

public sealed class LimitsOptions
{
    /// <summary>Largest request body accepted. Default: 1 MiB.</summary>
    public int MaxRequestBodyBytes { get; set; } = DispatcherDefaults.MaxRequestBodyBytes;

    /// <summary>Largest response body stored (the rest is dropped). Default: 64 KiB.</summary>
    public int MaxStoredResponseBytes { get; set; } = DispatcherDefaults.MaxStoredResponseBytes;

    /// <summary>Most headers a request may carry. Default: 64.</summary>
    public int MaxHeaderCount { get; set; } = DispatcherDefaults.MaxHeaderCount;

    /// <summary>Most bytes of request header names and values together. Default: 16 KiB.</summary>
    public int MaxHeaderBytes { get; set; } = DispatcherDefaults.MaxHeaderBytes;
}

public sealed class OutboxOptions
{
    /// <summary>Fallback poll when no NOTIFY arrives. Default: 1 s.</summary>
    public TimeSpan PollInterval { get; set; } = DispatcherDefaults.OutboxPollInterval;

    /// <summary>Rows one relay claims at a time. Default: 200.</summary>
    public int BatchSize { get; set; } = DispatcherDefaults.OutboxBatchSize;

    /// <summary>How long published rows are kept before pruning. Default: 1 h.</summary>
    public TimeSpan Retention { get; set; } = DispatcherDefaults.OutboxRetention;

    /// <summary>
    /// A worker publishes its own DispatchCompleted events right after committing them; their outbox rows fall due
    /// for the relays only this long after, as the fallback when that worker dies or falls behind first.
    /// 0 turns the handoff off (the relays publish every event). Default: 5 s.
    /// </summary>
    public TimeSpan HandoffGrace { get; set; } = DispatcherDefaults.OutboxHandoffGrace;
}

public sealed class AdminOptions
{
    /// <summary>Kestrel URLs of the health, metrics and admin API endpoints. Default: http://127.0.0.1:5080.</summary>
    public string Urls { get; set; } = DispatcherDefaults.AdminUrls;

    /// <summary>Bearer token for <c>/api</c>; when unset the API is off.</summary>
    public string? Token { get; set; }
}

public sealed class LoggingOptions
{
    /// <summary><c>auto</c> (compact JSON in Production when output is redirected, else text), <c>text</c> or <c>json</c>. Default: auto.</summary>
    public string Format { get; set; } = "auto";

    /// <summary>Minimum level: Verbose, Debug, Information, Warning, Error, Fatal. Default: Information.</summary>
    public string Level { get; set; } = "Information";
}

public sealed class TracingOptions
{
    /// <summary><c>none</c>, <c>console</c> or <c>otlp</c>: where spans go (trace context is propagated either way). Default: none.</summary>
    public string Exporter { get; set; } = "none";

    /// <summary>OTLP endpoint when Exporter is otlp. Default: the exporter's own (http://localhost:4317).</summary>
    public Uri? OtlpEndpoint { get; set; }
}
