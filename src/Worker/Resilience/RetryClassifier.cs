using Dispatcher.Worker.Dispatching;

namespace Dispatcher.Worker.Resilience;

/// <summary>The spec's retry rules: which outcomes are worth another attempt.</summary>
internal static class RetryClassifier
{
    /// <summary>Connection failures, timeouts, 408, 429 and 5xx except 501 are retriable.</summary>
    public static bool IsRetriable(AttemptOutcome outcome) => outcome.Result switch
    {
        AttemptResult.Success => false,
        AttemptResult.Timeout or AttemptResult.ConnectionError => true,
        _ => IsRetriableStatus(outcome.StatusCode ?? 0),
    };

    public static bool IsRetriableStatus(int status) =>
        status is 408 or 429 || (status >= 500 && status != 501);

    /// <summary>Retry-After is honoured on 429 and 503.</summary>
    public static bool HonoursRetryAfter(int? status) => status is 429 or 503;
}
