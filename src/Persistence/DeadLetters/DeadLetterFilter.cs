namespace Dispatcher.Persistence.DeadLetters;

/// <summary>Which dead letters an operator means: by ids, or by destination, reason and completion time.</summary>
public sealed record DeadLetterFilter
{
    public IReadOnlyList<Guid>? RequestIds { get; init; }
    public string? Destination { get; init; }
    public string? Reason { get; init; }
    public DateTimeOffset? Since { get; init; }
    public DateTimeOffset? Until { get; init; }

    /// <summary>
    /// Only dead letters a replay can act on: a request stored without a RequestId (keyed by its MessageId) would
    /// come back as a new dead letter, so it is left for the operator to fix and republish.
    /// </summary>
    public bool ReplayableOnly { get; init; }

    public bool IsEmpty => RequestIds is null && Destination is null && Reason is null && Since is null && Until is null;
}

/// <summary>One dead letter in a listing.</summary>
public sealed record DeadLetterSummary(
    Guid RequestId, string Destination, string? Reason, int? StatusCode, int Attempts, int Cycle, string? LastError,
    DateTimeOffset? CompletedAt, string Method, string Path);

/// <summary>Dead letters counted by what they have in common.</summary>
public sealed record DeadLetterGroup(string Destination, string? Reason, int? StatusCode, string? Error, long Count);

/// <summary>A dead letter sent back for a new cycle.</summary>
public sealed record ReplayedDeadLetter(Guid RequestId, string Destination, int Cycle);
