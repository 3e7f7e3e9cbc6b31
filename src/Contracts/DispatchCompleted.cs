namespace Dispatcher.Contracts;

/// <summary>
/// Published (through the transactional outbox) once a <see cref="DispatchRequest"/> reaches a terminal state.
/// The MessageId is stable across re-publications, so subscribers can deduplicate on it.
/// </summary>
public sealed record DispatchCompleted
{
    public Guid RequestId { get; init; }

    public string Destination { get; init; } = "";

    public DispatchOutcome Outcome { get; init; }

    /// <summary>Null when the dispatch succeeded.</summary>
    public DeadLetterReason? Reason { get; init; }

    /// <summary>Status code of the last response, if any.</summary>
    public int? StatusCode { get; init; }

    public int Attempts { get; init; }

    public IReadOnlyDictionary<string, string>? ResponseHeaders { get; init; }

    /// <summary>The last response body, capped (see <c>Dispatcher:Limits:MaxStoredResponseBytes</c>).</summary>
    public string? ResponseBody { get; init; }

    /// <summary>Text of the last error, if any.</summary>
    public string? Error { get; init; }

    public DateTimeOffset? FirstAttemptAt { get; init; }

    public DateTimeOffset CompletedAt { get; init; }

    public IReadOnlyDictionary<string, string>? Metadata { get; init; }
}
