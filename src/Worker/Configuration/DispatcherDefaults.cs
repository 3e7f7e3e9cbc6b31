namespace Dispatcher.Worker.Configuration;

/// <summary>Every default of the configuration, in one place (documented in README's configuration reference).</summary>
internal static class DispatcherDefaults
{
    public const string QueueName = "dispatch-requests";
    public const int WorkerMaxConcurrency = 64;
    public static readonly TimeSpan LeaseMargin = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(30);

    public const int DestinationMaxConcurrency = 16;
    public static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(30);
    public const string IdempotencyHeader = "Idempotency-Key";
    public static readonly TimeSpan PooledConnectionLifetime = TimeSpan.FromMinutes(2);
    public static readonly TimeSpan PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60);

    public const double PermitsPerSecond = 100;
    public const int RetryMaxAttempts = 5;
    public static readonly TimeSpan RetryBaseDelay = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan RetryMaxDelay = TimeSpan.FromMinutes(5);

    public const double BreakerFailureRatio = 0.5;
    public const int BreakerMinimumThroughput = 20;
    public static readonly TimeSpan BreakerSamplingDuration = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan BreakerBreakDuration = TimeSpan.FromSeconds(30);

    public const int MaxRequestBodyBytes = 1024 * 1024;
    public const int MaxStoredResponseBytes = 64 * 1024;
    public const int MaxHeaderCount = 64;
    public const int MaxHeaderBytes = 16 * 1024;

    public static readonly TimeSpan OutboxPollInterval = TimeSpan.FromSeconds(1);
    public const int OutboxBatchSize = 200;
    public static readonly TimeSpan OutboxRetention = TimeSpan.FromHours(1);
    public static readonly TimeSpan OutboxHandoffGrace = TimeSpan.FromSeconds(5);

    public const string AdminUrls = "http://127.0.0.1:5080";
}
