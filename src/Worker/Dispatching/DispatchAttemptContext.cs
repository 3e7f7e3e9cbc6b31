using Dispatcher.Contracts;
using Dispatcher.Persistence.Dispatches;
using Dispatcher.Persistence.Model;
using Dispatcher.Worker.Destinations;

namespace Dispatcher.Worker.Dispatching;

/// <summary>A claimed request and the attempt this worker is about to make (or just made).</summary>
internal sealed record DispatchAttemptContext(DispatchRequest Request, Destination Destination, ClaimCommand ClaimCommand, ClaimResult Claim)
{
    /// <summary>The request as received (claimed, stored and re-sent as this JSON).</summary>
    public string RequestJson => ClaimCommand.RequestJson;

    public string? TraceParent => ClaimCommand.TraceParent;

    /// <summary>1-based number of this attempt within the cycle.</summary>
    public int Number => Claim.Attempts + 1;

    public CompletionCommand Completion(AttemptOutcome? outcome, DispatchState state, DeadLetterReason? reason, string? error, DateTimeOffset now) => new()
    {
        RequestId = Request.RequestId,
        LeaseToken = ClaimCommand.LeaseToken,
        State = state,
        Reason = reason?.ToString(),
        Cycle = Claim.Cycle,
        Attempt = outcome is null ? null : new AttemptRecord(
            Number, outcome.StartedAt, outcome.Duration.TotalMilliseconds, outcome.Result.ToString(), outcome.StatusCode, outcome.Error),
        StatusCode = outcome?.StatusCode,
        LastError = error,
        ResponseHeadersJson = outcome?.ResponseHeaders is { } headers ? DispatcherJson.Serialize(headers) : null,
        ResponseBody = outcome?.ResponseBody,
        FirstAttemptAt = Claim.FirstAttemptAt ?? outcome?.StartedAt,
        Now = now,
    };

    public DispatchCompleted CompletedEvent(AttemptOutcome? outcome, DeadLetterReason? reason, string? error, DateTimeOffset now) => new()
    {
        RequestId = Request.RequestId,
        Destination = Destination.Name,
        Outcome = reason is null ? DispatchOutcome.Succeeded : DispatchOutcome.DeadLettered,
        Reason = reason,
        StatusCode = outcome?.StatusCode,
        Attempts = outcome is null ? Claim.Attempts : Number,
        ResponseHeaders = outcome?.ResponseHeaders,
        ResponseBody = outcome?.ResponseBody,
        Error = error,
        FirstAttemptAt = Claim.FirstAttemptAt ?? outcome?.StartedAt,
        CompletedAt = now,
        Metadata = Request.Metadata,
    };
}
