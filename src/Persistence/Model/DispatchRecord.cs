namespace Dispatcher.Persistence.Model;

/// <summary>One row per RequestId: its current state, the request itself and the last response.</summary>
public sealed class DispatchRecord
{
    public Guid RequestId { get; set; }
    public string Destination { get; set; } = "";
    public DispatchState State { get; set; }
    /// <summary>Name of a <c>DeadLetterReason</c> when dead-lettered.</summary>
    public string? Reason { get; set; }
    /// <summary>Attempts made in the current cycle.</summary>
    public int Attempts { get; set; }
    /// <summary>0 for the first cycle; each replay starts a new one.</summary>
    public int Cycle { get; set; }
    /// <summary>The request as received (JSON).</summary>
    public string Request { get; set; } = "{}";
    /// <summary>MessageId of the message that owns the current cycle (the original, a retry or a replay).</summary>
    public Guid? MessageId { get; set; }
    /// <summary>Fencing token of the worker that claimed the row last; a completion must present it.</summary>
    public Guid? LeaseToken { get; set; }
    public DateTimeOffset? LeaseUntil { get; set; }
    public int? StatusCode { get; set; }
    public string? LastError { get; set; }
    public string? ResponseHeaders { get; set; }
    public string? ResponseBody { get; set; }
    public string? TraceParent { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
    public DateTimeOffset? FirstAttemptAt { get; set; }
    public DateTimeOffset? NextAttemptAt { get; set; }
    public DateTimeOffset? CompletedAt { get; set; }
}
