using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Dispatching;

namespace Dispatcher.Worker.Resilience;

/// <summary>When the next attempt may start: exponential backoff with full jitter, or exactly what Retry-After says.</summary>
internal static class RetrySchedule
{
    /// <summary>
    /// The next attempt after <paramref name="attemptsMade"/> failed attempts. Full jitter: a uniform delay in
    /// [0, min(MaxDelay, BaseDelay * 2^(attemptsMade-1))]. A Retry-After on 429/503 sets the time instead.
    /// </summary>
    public static DateTimeOffset NextAttemptAt(RetryOptions retry, int attemptsMade, AttemptOutcome outcome, DateTimeOffset now, Random random)
    {
        if (outcome.RetryAfter is { } retryAfter && RetryClassifier.HonoursRetryAfter(outcome.StatusCode))
        {
            var at = retryAfter.EarliestAfter(outcome.StartedAt + outcome.Duration);
            return at > now ? at : now;
        }
        return now + BackoffDelay(retry, attemptsMade, random);
    }

    public static TimeSpan BackoffDelay(RetryOptions retry, int attemptsMade, Random random)
    {
        var exponent = Math.Clamp(attemptsMade - 1, 0, 30);
        var ceiling = Math.Min(retry.MaxDelay.TotalMilliseconds, retry.BaseDelay.TotalMilliseconds * Math.Pow(2, exponent));
        return TimeSpan.FromMilliseconds(random.NextDouble() * ceiling);
    }
}
