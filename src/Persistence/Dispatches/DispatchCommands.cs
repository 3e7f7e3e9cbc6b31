using Dispatcher.Persistence.Model;

namespace Dispatcher.Persistence.Dispatches;

/// <summary>Take ownership of a request before calling the downstream.</summary>
/// <param name="MessageId">
/// The message that carries the request. A row in progress is taken over only by the message that owns it
/// (a redelivery after a crash) or once its lease expired; null means "take over" (a redelivered message
/// that has no MessageId).
/// </param>
/// <param name="Redelivered">
/// The broker redelivered the message (its consumer died or lost its connection): it may take over the live claim
/// of its own MessageId. A fresh copy of the same message (published twice: a relay that died between publishing
/// and marking) may not: it is a duplicate while the claim's owner lives.
/// </param>
public sealed record ClaimCommand(
    Guid RequestId,
    string Destination,
    string RequestJson,
    Guid? MessageId,
    Guid LeaseToken,
    DateTimeOffset LeaseUntil,
    string? TraceParent,
    bool Redelivered = false);

/// <summary>What a claim found. <see cref="Claimed"/> false means a duplicate: terminal, or owned by another message.</summary>
public readonly record struct ClaimResult(bool Claimed, int Attempts, int Cycle, DateTimeOffset? FirstAttemptAt, DateTimeOffset CreatedAt);

/// <summary>One downstream call, for the attempt history.</summary>
public sealed record AttemptRecord(
    int Number,
    DateTimeOffset StartedAt,
    double DurationMs,
    string Result,
    int? StatusCode,
    string? Error);

/// <summary>A message to commit into the outbox with the state change.</summary>
/// <param name="HeldFor">Why a request sent back for later was held back or parked (OutboxMessage.HeldFor); null otherwise.</param>
public sealed record OutboxEntry(Guid MessageId, string Kind, string Payload, DateTimeOffset NotBefore, string? TraceParent, string? HeldFor = null);

/// <summary>
/// The new state of a claimed dispatch, its attempt (if one was made) and the message that follows from it,
/// committed together. Applied only while <see cref="LeaseToken"/> still owns the row.
/// </summary>
public sealed record CompletionCommand
{
    public required Guid RequestId { get; init; }
    public required Guid LeaseToken { get; init; }
    public required DispatchState State { get; init; }
    public string? Reason { get; init; }
    public required int Cycle { get; init; }
    public AttemptRecord? Attempt { get; init; }
    public int? StatusCode { get; init; }
    public string? LastError { get; init; }
    public string? ResponseHeadersJson { get; init; }
    public string? ResponseBody { get; init; }
    public DateTimeOffset? FirstAttemptAt { get; init; }
    public DateTimeOffset? CompletedAt { get; init; }
    public DateTimeOffset? NextAttemptAt { get; init; }
    public required DateTimeOffset Now { get; init; }
    /// <summary>The event (terminal) or the scheduled redelivery (Scheduled) committed with this change.</summary>
    public OutboxEntry? Outbox { get; init; }
}

/// <summary>
/// What a completion found: <see cref="Applied"/> false when another owner took the row over (nothing was written
/// but the attempt history); <see cref="OutboxId"/> is the outbox row written with it.
/// </summary>
public readonly record struct CompletionResult(bool Applied, long? OutboxId);

/// <summary>A request dead-lettered on arrival (invalid or for an unknown destination): no call is made.</summary>
public sealed record RejectCommand(
    Guid RequestId,
    string Destination,
    string Reason,
    string Error,
    string RequestJson,
    Guid? MessageId,
    string? TraceParent,
    DateTimeOffset Now,
    OutboxEntry Event);
