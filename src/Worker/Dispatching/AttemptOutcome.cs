namespace Dispatcher.Worker.Dispatching;

/// <summary>How one downstream call went, as recorded in the attempt history.</summary>
internal enum AttemptResult
{
    /// <summary>A 2xx answer.</summary>
    Success,
    /// <summary>Any other status code.</summary>
    HttpError,
    /// <summary>The attempt did not finish within AttemptTimeout.</summary>
    Timeout,
    /// <summary>No usable answer: connection refused, reset or dropped.</summary>
    ConnectionError,
}

/// <summary>The result of one attempt; the body is already capped.</summary>
internal sealed record AttemptOutcome(
    AttemptResult Result,
    DateTimeOffset StartedAt,
    TimeSpan Duration,
    int? StatusCode = null,
    IReadOnlyDictionary<string, string>? ResponseHeaders = null,
    string? ResponseBody = null,
    string? Error = null,
    RetryAfterValue? RetryAfter = null);

/// <summary>A <c>Retry-After</c> header: a delay or an absolute date.</summary>
internal readonly record struct RetryAfterValue(TimeSpan? Delta, DateTimeOffset? Date)
{
    /// <summary>The earliest instant the next attempt may start.</summary>
    public DateTimeOffset EarliestAfter(DateTimeOffset receivedAt) =>
        Delta is { } d ? receivedAt + d : Date ?? receivedAt;
}
