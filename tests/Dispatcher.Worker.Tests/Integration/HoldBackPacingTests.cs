using Dispatcher.Worker.Destinations;
using Dispatcher.Worker.Observability;
using Dispatcher.Worker.Resilience;
using Dispatcher.Worker.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Dispatcher.Worker.Tests.Integration;

/// <summary>
/// A backlog far larger than a worker holds for a destination at its cap goes back into the outbox spaced at the
/// destination's pace (its share of the rate limit, or what its cap carries), instead of all of it coming back after
/// every park delay.
/// </summary>
[Collection(IntegrationCollection.Name)]
public sealed class HoldBackPacingTests(ServicesFixture services)
{
    private const int Requests = 40, Rate = 10;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_backlog_at_a_rate_limited_destination_comes_back_at_its_pace_and_each_request_is_called_once()
    {
        await using var s = await Scenario.StartAsync(services, new Dictionary<string, string>
        {
            // The worker holds 2 + 2 x 1 messages: the rest of the 40 are held back.
            ["Dispatcher:Worker:MaxConcurrency"] = "2",
            ["Dispatcher:Destinations:{destination}:MaxConcurrency"] = "1",
            // Park delay (the first return): a quarter of the attempt timeout, 0.5 s.
            ["Dispatcher:Destinations:{destination}:AttemptTimeout"] = "00:00:02",
            ["Dispatcher:Destinations:{destination}:RateLimit:PermitsPerSecond"] = $"{Rate}",
        });
        s.Downstream.Handler = context =>
        {
            context.Response.StatusCode = 200;
            return Task.CompletedTask;
        };
        var requests = Enumerable.Range(0, Requests).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        foreach (var r in requests)
            await s.SendAsync(r);

        var ids = requests.Select(r => r.RequestId).ToList();
        await s.WaitForTerminalAsync(ids, Timeout);
        var states = await s.StatesAsync();
        Assert.All(ids, id => Assert.Equal(("Succeeded", (string?)null, 1), states[id]));
        Assert.All(ids, id => Assert.Single(s.Downstream.CallsOf(id)));

        // Every request sent back from the cap (held back, or parked after waiting for a slot) took the next place in
        // the destination's one line: due one after another at 12.5/s (the limit of 10/s for the one worker, with a
        // quarter of headroom) or later, so at least 80 ms apart, plus up to 250 ms of jitter each; other rows (a park
        // for a rate permit) can only widen the spread. Before the pacing they all fell due within 250 ms of the park
        // delay after their arrival (the first 37 over 0.57 s). Counted from the worker's own metric, not from a window
        // of arrival times (a slow run spreads the arrivals).
        var heldBack = await s.QueryAsync(
            "SELECT created_at, not_before FROM outbox WHERE kind = 'request' ORDER BY id",
            r => (Created: r.GetFieldValue<DateTimeOffset>(0), Due: r.GetFieldValue<DateTimeOffset>(1)));
        var inLine = (int)DispatcherMetrics.Parked.WithLabels(s.Destination, DestinationPolicy.AtCapacity).Value;
        Assert.True(inLine >= Requests / 2, $"{inLine} of {Requests} sent back from the cap");
        var spread = heldBack.Max(h => h.Due) - heldBack.Min(h => h.Due);
        var paced = TimeSpan.FromMilliseconds(80 * (inLine - 1) - 250);
        Assert.True(spread >= paced,
            $"the {inLine} returns from the cap fall due over {spread.TotalSeconds:0.00} s; paced at 12.5/s they span at least {paced.TotalSeconds:0.00} s");

        // Coming back at about the pace they are served, few are held back again (40-45 in all, measured): without the
        // pacing the whole remaining backlog came back every ~0.6 s and all but a few were held back again (105).
        Assert.True(heldBack.Count <= 2 * Requests, $"{heldBack.Count} hold-backs for {Requests} requests");
    }

    [Fact]
    public async Task A_worker_counts_the_live_workers_sharing_each_destination_from_their_heartbeats()
    {
        await using var s = await Scenario.StartAsync(services);
        Assert.True(s.Worker!.Services.GetRequiredService<DestinationRegistry>().TryGet(s.Destination, out var destination));

        // Two other live workers on this destination, one that stopped beating two minutes ago, one on another.
        await s.ScalarAsync($"""
            WITH ins AS (
                INSERT INTO worker_heartbeats (worker_id, destination, circuit_state, in_flight, permits_per_second, updated_at)
                VALUES ('other:1', '{s.Destination}', 0, 0, 100, now()),
                       ('other:2', '{s.Destination}', 0, 0, 100, now()),
                       ('gone:3', '{s.Destination}', 0, 0, 100, now() - interval '2 minutes'),
                       ('other:4', 'elsewhere', 0, 0, 100, now())
                RETURNING 1)
            SELECT count(*) FROM ins
            """);

        // Read at the worker's next heartbeat (every 5 s): itself and the two live ones.
        await Eventually.TrueAsync(() => destination.Policy.FleetWorkers == 3, TimeSpan.FromSeconds(12),
            "the worker counts 3 live workers on its destination");
        // The scenario limits its destination to 100,000/s: a third of it for this worker.
        Assert.Equal(100_000.0 / 3, destination.Policy.ExpectedPace, 6);
    }
}
