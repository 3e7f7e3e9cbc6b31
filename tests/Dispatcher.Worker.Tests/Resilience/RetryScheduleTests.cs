using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Resilience;

namespace Dispatcher.Worker.Tests.Resilience;

public sealed class RetryScheduleTests
{
    private static readonly DateTimeOffset StartedAt = new(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Duration = TimeSpan.FromMilliseconds(250);
    private static readonly DateTimeOffset Now = StartedAt + TimeSpan.FromSeconds(1);

    private static readonly RetryOptions Retry = new() { BaseDelay = TimeSpan.FromSeconds(1), MaxDelay = TimeSpan.FromSeconds(20) };

    private static AttemptOutcome Outcome(int status, RetryAfterValue? retryAfter) =>
        new(AttemptResult.HttpError, StartedAt, Duration, status, RetryAfter: retryAfter);

    [Theory]
    [InlineData(1, 1_000)]
    [InlineData(2, 2_000)]
    [InlineData(3, 4_000)]
    [InlineData(4, 8_000)]
    [InlineData(5, 16_000)]
    [InlineData(6, 20_000)]
    [InlineData(7, 20_000)]
    [InlineData(64, 20_000)]
    [InlineData(int.MaxValue, 20_000)]
    public void Backoff_is_full_jitter_up_to_the_capped_exponential_ceiling(int attempt, int ceilingMs)
    {
        var random = new Random(42);
        var ceiling = TimeSpan.FromMilliseconds(ceilingMs);

        var delays = Enumerable.Range(0, 2_000).Select(_ => RetrySchedule.BackoffDelay(Retry, attempt, random)).ToList();

        Assert.All(delays, d => Assert.InRange(d, TimeSpan.Zero, ceiling));
        // Full jitter: the samples spread over the whole range rather than clustering at the ceiling.
        Assert.InRange(delays.Min(), TimeSpan.Zero, ceiling * 0.05);
        Assert.InRange(delays.Max(), ceiling * 0.95, ceiling);
        Assert.InRange(delays.Average(d => d.TotalMilliseconds), ceilingMs * 0.45, ceilingMs * 0.55);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-3)]
    public void Backoff_before_any_failure_stays_within_the_base_delay(int attempt)
    {
        var random = new Random(42);

        var delays = Enumerable.Range(0, 500).Select(_ => RetrySchedule.BackoffDelay(Retry, attempt, random));

        Assert.All(delays, d => Assert.InRange(d, TimeSpan.Zero, Retry.BaseDelay));
    }

    [Fact]
    public void Next_attempt_without_retry_after_is_now_plus_backoff()
    {
        var next = RetrySchedule.NextAttemptAt(Retry, 3, Outcome(500, null), Now, new Random(42));

        Assert.Equal(Now + RetrySchedule.BackoffDelay(Retry, 3, new Random(42)), next);
        Assert.InRange(next, Now, Now + TimeSpan.FromSeconds(4));
    }

    [Theory]
    [InlineData(429)]
    [InlineData(503)]
    public void Retry_after_seconds_on_429_and_503_sets_the_next_attempt_exactly(int status)
    {
        var outcome = Outcome(status, new RetryAfterValue(TimeSpan.FromSeconds(120), null));

        var next = RetrySchedule.NextAttemptAt(Retry, 1, outcome, Now, new Random(42));

        Assert.Equal(StartedAt + Duration + TimeSpan.FromSeconds(120), next);
    }

    [Theory]
    [InlineData(429)]
    [InlineData(503)]
    public void Retry_after_date_sets_the_next_attempt_to_that_date(int status)
    {
        var date = new DateTimeOffset(2026, 1, 1, 13, 30, 0, TimeSpan.Zero);

        var next = RetrySchedule.NextAttemptAt(Retry, 1, Outcome(status, new RetryAfterValue(null, date)), Now, new Random(42));

        Assert.Equal(date, next);
    }

    [Fact]
    public void Retry_after_beyond_max_delay_is_still_honoured()
    {
        var outcome = Outcome(429, new RetryAfterValue(TimeSpan.FromHours(1), null));

        var next = RetrySchedule.NextAttemptAt(Retry, 1, outcome, Now, new Random(42));

        Assert.Equal(StartedAt + Duration + TimeSpan.FromHours(1), next);
    }

    [Theory]
    [InlineData(500)]
    [InlineData(502)]
    [InlineData(408)]
    public void Retry_after_on_other_statuses_is_ignored_and_backoff_used(int status)
    {
        var outcome = Outcome(status, new RetryAfterValue(TimeSpan.FromHours(1), null));

        var next = RetrySchedule.NextAttemptAt(Retry, 2, outcome, Now, new Random(42));

        Assert.Equal(Now + RetrySchedule.BackoffDelay(Retry, 2, new Random(42)), next);
        Assert.True(next <= Now + TimeSpan.FromSeconds(2));
    }

    [Theory]
    [InlineData(429)]
    [InlineData(503)]
    public void Retry_after_in_the_past_yields_now(int status)
    {
        var pastDate = Outcome(status, new RetryAfterValue(null, StartedAt - TimeSpan.FromMinutes(5)));
        var zeroDelta = Outcome(status, new RetryAfterValue(TimeSpan.Zero, null));

        Assert.Equal(Now, RetrySchedule.NextAttemptAt(Retry, 1, pastDate, Now, new Random(42)));
        Assert.Equal(Now, RetrySchedule.NextAttemptAt(Retry, 1, zeroDelta, Now, new Random(42)));
    }
}
