namespace Dispatcher.Worker.Observability;

/// <summary>Every log line of the worker, source-generated. Properties are structured fields.</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Error, "Configuration change refused, the previous policy stays: {Errors}")]
    public static partial void ConfigurationRejected(ILogger logger, string errors);

    [LoggerMessage(2, LogLevel.Information, "Configuration change applied ({DestinationCount} destinations)")]
    public static partial void ConfigurationApplied(ILogger logger, int destinationCount);

    [LoggerMessage(10, LogLevel.Warning, "Dispatch {RequestId} to {Destination} dead-lettered on arrival: {Reason}: {Error}")]
    public static partial void Rejected(ILogger logger, Guid requestId, string destination, string reason, string error);

    [LoggerMessage(11, LogLevel.Debug, "Dispatch {RequestId} is a duplicate (terminal or owned by another message); acknowledged without a call")]
    public static partial void Duplicate(ILogger logger, Guid requestId);

    [LoggerMessage(12, LogLevel.Debug, "Dispatch {RequestId} to {Destination} attempt {Attempt}: {Result} {StatusCode} in {DurationMs:0.0} ms")]
    public static partial void AttemptFinished(ILogger logger, Guid requestId, string destination, int attempt, string result, int? statusCode, double durationMs);

    [LoggerMessage(13, LogLevel.Information, "Dispatch {RequestId} to {Destination} attempt {Attempt} failed ({Error}); next attempt at {NextAttemptAt:O}")]
    public static partial void RetryScheduled(ILogger logger, Guid requestId, string destination, int attempt, string? error, DateTimeOffset nextAttemptAt);

    [LoggerMessage(14, LogLevel.Warning, "Dispatch {RequestId} to {Destination} dead-lettered after {Attempt} attempts: {Reason}: {Error}")]
    public static partial void DeadLettered(ILogger logger, Guid requestId, string destination, int attempt, string reason, string? error);

    [LoggerMessage(15, LogLevel.Warning, "Dispatch {RequestId}: another owner took the request over before this worker committed; its result is kept in the attempt history only")]
    public static partial void LeaseLost(ILogger logger, Guid requestId);

    [LoggerMessage(31, LogLevel.Warning, "Dispatch {RequestId}: its claim was gone when it committed (lost in a PostgreSQL restart); claimed again and committing")]
    public static partial void Reclaimed(ILogger logger, Guid requestId);

    [LoggerMessage(16, LogLevel.Warning, "PostgreSQL unavailable ({Error}); retrying in {DelayMs} ms")]
    public static partial void DatabaseUnavailable(ILogger logger, string error, int delayMs);

    [LoggerMessage(17, LogLevel.Debug, "Dispatch {RequestId} to {Destination} parked ({Reason}) until {NextAttemptAt:O}")]
    public static partial void Parked(ILogger logger, Guid requestId, string destination, string reason, DateTimeOffset nextAttemptAt);

    [LoggerMessage(32, LogLevel.Information, "Destination {Destination} recovered after {Outage} of failing: {Count} requests its breaker sent back brought forward")]
    public static partial void BacklogBroughtForward(ILogger logger, string destination, TimeSpan outage, int count);

    [LoggerMessage(33, LogLevel.Warning, "Bringing a recovered destination's backlog forward failed (tried again at the next heartbeat): {Error}")]
    public static partial void BringingForwardFailed(ILogger logger, string error);

    [LoggerMessage(30, LogLevel.Warning, "Heartbeat failed: {Error}")]
    public static partial void HeartbeatFailed(ILogger logger, string error);

    [LoggerMessage(20, LogLevel.Warning, "Outbox relay: publishing message {MessageId} failed, retry at {RetryAt:O}: {Error}")]
    public static partial void OutboxPublishFailed(ILogger logger, Guid messageId, DateTimeOffset retryAt, string error);

    [LoggerMessage(21, LogLevel.Warning, "Outbox relay error, restarting in {DelayMs} ms")]
    public static partial void OutboxRelayError(ILogger logger, Exception exception, int delayMs);

    [LoggerMessage(23, LogLevel.Warning, "Publishing {Count} completed events failed; the relays publish them when their rows fall due in {GraceSeconds} s")]
    public static partial void HandoffPublishFailed(ILogger logger, int count, double graceSeconds);

    [LoggerMessage(24, LogLevel.Warning, "Marking {Count} published events failed ({Error}); retried with the next batch")]
    public static partial void HandoffMarkFailed(ILogger logger, int count, string error);

    [LoggerMessage(25, LogLevel.Debug, "Completed events are published to exchange {Exchange}")]
    public static partial void EventPublisherTarget(ILogger logger, string exchange);

    [LoggerMessage(22, LogLevel.Information, "Outbox relay pruned {Count} published rows")]
    public static partial void OutboxPruned(ILogger logger, int count);
}
