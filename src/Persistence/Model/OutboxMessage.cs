namespace Dispatcher.Persistence.Model;

/// <summary>
/// A message committed with the state change that caused it, published later by the relay.
/// <see cref="NotBefore"/> makes the same table carry delayed redeliveries (retries, parked requests, replays).
/// </summary>
public sealed class OutboxMessage
{
    public long Id { get; set; }
    /// <summary>Stable across re-publications so subscribers can deduplicate.</summary>
    public Guid MessageId { get; set; }
    /// <summary><see cref="OutboxKinds"/>.</summary>
    public string Kind { get; set; } = "";
    public string Payload { get; set; } = "{}";
    public string? TraceParent { get; set; }
    public DateTimeOffset NotBefore { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? PublishedAt { get; set; }
    public int PublishAttempts { get; set; }
    public string? LastError { get; set; }
    /// <summary>
    /// Why a request sent back for later was held back or parked by its destination's policies ("circuit open",
    /// "MaxConcurrency reached", ...); null for retries, replays and events. A destination whose breaker closes after
    /// a long outage brings its "circuit open" rows forward.
    /// </summary>
    public string? HeldFor { get; set; }
}

public static class OutboxKinds
{
    /// <summary>A DispatchCompleted event, published with the bus's default topology.</summary>
    public const string Completed = "completed";

    /// <summary>A DispatchRequest sent back to the request queue when due (retry, park, replay).</summary>
    public const string Request = "request";
}
