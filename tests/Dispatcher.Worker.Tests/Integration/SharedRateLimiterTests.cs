using System.Diagnostics;
using Dispatcher.Persistence;
using Dispatcher.Persistence.RateLimiting;
using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Resilience;
using Dispatcher.Worker.Tests.Infrastructure;

namespace Dispatcher.Worker.Tests.Integration;

/// <summary>The worker's side of the shared bucket, against a real PostgreSQL bucket.</summary>
[Collection(IntegrationCollection.Name)]
public sealed class SharedRateLimiterTests(ServicesFixture services)
{
    [Fact]
    public async Task A_steady_stream_below_the_limit_rarely_waits_for_a_lease()
    {
        await using var dataSources = new DispatcherDataSources(await services.CreateDatabaseAsync());
        var limiter = new SharedRateLimiter($"d{Guid.NewGuid():N}", new RateLimitOptions { PermitsPerSecond = 1000, Burst = 1000 },
            new RateLimitStore(dataSources), TimeProvider.System);

        // A new bucket starts empty: a first permit, then 300 at ~400/s (never catching up after a late wake-up, so
        // the stream stays well under 1,000/s). Leases sized to the demand (~5 permits: a lease lives 20 ms) are
        // topped up in the background when half spent or half through their life, so callers rarely wait for a round
        // trip: 3 of 300 waited, over 57-59 leases (measured). Topped up only when half spent, 13-21 waited; with
        // no top-up every lease would be a wait.
        Assert.Null(await limiter.TryAcquireAsync(TimeSpan.FromSeconds(1), CancellationToken.None));
        var before = limiter.ForegroundLeases;
        var leasesBefore = limiter.Leases;
        var next = Stopwatch.GetTimestamp();
        var mostInHand = 0;
        for (var i = 0; i < 300; i++)
        {
            next += Stopwatch.Frequency / 400;
            var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), next);
            if (wait > TimeSpan.Zero)
                await Task.Delay(wait);
            else
                next = Stopwatch.GetTimestamp();
            Assert.Null(await limiter.TryAcquireAsync(TimeSpan.FromSeconds(1), CancellationToken.None));
            mostInHand = Math.Max(mostInHand, limiter.PermitsInHand);
        }
        var waited = limiter.ForegroundLeases - before;
        // Topped up, never stocked: at most a lease and its top-up in hand (a lease is at most 20 ms of the rate: 20
        // permits), each dropped 20 ms after its grant. (A first version added each top-up to the lot in hand and
        // restarted its life: the stock grew by ~250 permits a second, which a later surge would spend at once.)
        Assert.True(mostInHand <= 2 * 20, $"{mostInHand} permits in hand at most");
        var leases = limiter.Leases - leasesBefore;
        Assert.True(waited <= 10, $"{waited} of 300 permits waited for a lease ({leases} leases)");
    }

    [Fact]
    public async Task A_contended_bucket_is_never_leased_ahead_and_holds_its_rate()
    {
        await using var dataSources = new DispatcherDataSources(await services.CreateDatabaseAsync());
        var limiter = new SharedRateLimiter($"d{Guid.NewGuid():N}", new RateLimitOptions { PermitsPerSecond = 100, Burst = 5 },
            new RateLimitStore(dataSources), TimeProvider.System);

        // 32 callers asking as fast as they can for 2 s (after a first permit: connections open, code warm): the
        // bucket allows 100/s + its burst of 5, and never more. How close the callers get to it is a known weakness:
        // re-running this test on an idle machine gave 124-168 of the 200 (the first runs gave 180+), the same
        // shortfall as the bench's "calls / permitted"; the lower bound here only catches a limiter that stalls. It was
        // half the permits until a slow CI run (7 min for the suite against 4-4.5) got 85: a third now.
        Assert.Null(await limiter.TryAcquireAsync(TimeSpan.FromSeconds(1), CancellationToken.None));
        var clock = Stopwatch.StartNew();
        var granted = 0;
        await Task.WhenAll(Enumerable.Range(0, 32).Select(async _ =>
        {
            while (clock.Elapsed < TimeSpan.FromSeconds(2))
            {
                if (await limiter.TryAcquireAsync(TimeSpan.FromMilliseconds(200), CancellationToken.None) is null)
                    Interlocked.Increment(ref granted);
            }
        }));
        var seconds = clock.Elapsed.TotalSeconds;
        Assert.InRange(granted, 100 * 2 / 3, (100 * seconds) + 5);
    }
}
