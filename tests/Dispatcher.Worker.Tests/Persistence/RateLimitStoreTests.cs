using Dispatcher.Persistence;
using Dispatcher.Persistence.RateLimiting;
using Dispatcher.Worker.Tests.Infrastructure;
using Npgsql;

namespace Dispatcher.Worker.Tests.Persistence;

[Collection(IntegrationCollection.Name)]
public sealed class RateLimitStoreTests(ServicesFixture services)
{
    [Fact]
    public async Task A_full_bucket_grants_no_more_than_the_rate_within_one_second_whatever_its_burst()
    {
        var postgres = await services.CreateDatabaseAsync();
        await using var dataSources = new DispatcherDataSources(postgres);
        var store = new RateLimitStore(dataSources);
        const string destination = "partner";
        const double rate = 50;
        const double capacity = 200; // Burst 200: a token bucket alone would allow 250 in a second

        Assert.Equal(0, (await store.TakeAsync(destination, 1, rate, capacity, CancellationToken.None)).Granted); // a new bucket starts empty
        await Buckets.FillAsync(postgres, 200);

        // 200 tokens in the bucket, but the window allows 50 within any second.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var first = await store.TakeAsync(destination, 30, rate, capacity, CancellationToken.None);
        var second = await store.TakeAsync(destination, 30, rate, capacity, CancellationToken.None);
        var third = await store.TakeAsync(destination, 30, rate, capacity, CancellationToken.None);
        var elapsed = clock.Elapsed;
        Assert.Equal(30, first.Granted);
        Assert.Equal(20, second.Granted);
        Assert.Equal(0, third.Granted);
        // The next permit comes when the first grant leaves the window, 1 s after it (not when the bucket refills):
        // 1 s less the time the three statements took (a fixed 0.5 s floor failed once, on a run stalled for 0.7 s).
        Assert.InRange(third.NextPermitIn, TimeSpan.FromSeconds(0.98) - elapsed, TimeSpan.FromSeconds(1.02));
    }

    [Fact]
    public async Task Permits_given_back_can_be_granted_again_within_the_same_second()
    {
        var postgres = await services.CreateDatabaseAsync();
        await using var dataSources = new DispatcherDataSources(postgres);
        var store = new RateLimitStore(dataSources);
        const string destination = "partner";
        const double rate = 50;
        const double capacity = 200;
        await Buckets.CreateFullAsync(postgres, store, destination, rate, capacity);

        var first = await store.TakeAsync(destination, 30, rate, capacity, CancellationToken.None);
        var second = await store.TakeAsync(destination, 30, rate, capacity, CancellationToken.None);
        Assert.Equal((30, 20), (first.Granted, second.Granted)); // the window (50 in any second) is full
        Assert.Equal(0, (await store.TakeAsync(destination, 1, rate, capacity, CancellationToken.None)).Granted);

        // 25 of the first grant and 15 of the second never spent: the window holds 10, so 40 may go now.
        var given = first.Slot == second.Slot
            ? (Slots: new[] { first.Slot }, Counts: new[] { 40 })
            : (Slots: new[] { first.Slot, second.Slot }, Counts: new[] { 25, 15 });
        await store.GiveBackAsync(destination, given.Slots, given.Counts, capacity, CancellationToken.None);
        var again = await store.TakeAsync(destination, 50, rate, capacity, CancellationToken.None);
        Assert.Equal(40, again.Granted);
    }

    [Fact]
    public void The_window_holds_the_rate_rounded_up()
    {
        Assert.Equal(200, RateLimitStore.WindowLimit(200));
        Assert.Equal(2, RateLimitStore.WindowLimit(1.5));
        Assert.Equal(1, RateLimitStore.WindowLimit(0.1));
    }
}
