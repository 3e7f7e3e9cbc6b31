using Dispatcher.Worker.Observability;
using Dispatcher.Worker.Resilience;
using Dispatcher.Worker.Tests.Infrastructure;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed class IsolationTests(ServicesFixture services)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_hanging_destination_times_out_within_its_concurrency_cap_while_another_destination_keeps_flowing()
    {
        await using var healthy = await Downstream.StartAsync();
        await using var s = await Scenario.StartAsync(services, new Dictionary<string, string>
        {
            ["Dispatcher:Destinations:{destination}:MaxConcurrency"] = "8",
            ["Dispatcher:Destinations:{destination}:AttemptTimeout"] = "00:00:01",
            ["Dispatcher:Destinations:{destination}:Retry:MaxAttempts"] = "1",
            // 40 timeouts would open the breaker (20 by default) and park the rest for 30 s: not the subject here.
            ["Dispatcher:Destinations:{destination}:CircuitBreaker:MinimumThroughput"] = "1000000",
            ["Dispatcher:Destinations:other:BaseUrl"] = healthy.BaseUrl.ToString(),
            ["Dispatcher:Destinations:other:MaxConcurrency"] = "64",
            ["Dispatcher:Destinations:other:RateLimit:PermitsPerSecond"] = "100000",
        });
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var open = 0;
        var maxOpen = 0;
        // Start times of the calls the downstream still has open. A call the worker timed out stays open here until
        // its connection's close arrives, a moment after the worker has moved on to the next call: the cap is checked
        // on the calls younger than 0.9 s, which the worker (timing out at 1 s) cannot have given up yet.
        var openSince = new System.Collections.Concurrent.ConcurrentDictionary<HttpContext, long>();
        s.Downstream.Handler = async context =>
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            openSince[context] = started;
            Interlocked.Increment(ref open);
            InterlockedMax(ref maxOpen, openSince.Values.Count(t => System.Diagnostics.Stopwatch.GetElapsedTime(t, started) < TimeSpan.FromSeconds(0.9)));
            try
            {
                // Hangs until the worker gives up (the connection is dropped) or the test ends.
                await release.Task.WaitAsync(context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
            }
            finally
            {
                openSince.TryRemove(context, out _);
                Interlocked.Decrement(ref open);
            }
        };
        healthy.Handler = context =>
        {
            context.Response.StatusCode = 200;
            return Task.CompletedTask;
        };

        try
        {
            var hanging = Enumerable.Range(0, 40).Select(i => s.NewRequest($"/slow/{i}")).ToList();
            foreach (var r in hanging)
                await s.SendAsync(r);
            await Eventually.TrueAsync(() => Volatile.Read(ref open) >= 8, Timeout, "8 calls hanging at the slow destination");

            var fine = Enumerable.Range(0, 200).Select(i => s.NewRequest($"/fast/{i}") with { Destination = "other" }).ToList();
            foreach (var r in fine)
                await s.SendAsync(r);
            var fineIds = fine.Select(r => r.RequestId).ToHashSet();
            var hangingIds = hanging.Select(r => r.RequestId).ToHashSet();
            var hangingTerminalWhenFineDone = -1;
            await Eventually.TrueAsync(async () =>
            {
                var states = await s.StatesAsync();
                if (!fineIds.All(id => states.TryGetValue(id, out var st) && st.State == "Succeeded"))
                    return false;
                hangingTerminalWhenFineDone = hangingIds.Count(id => states.TryGetValue(id, out var st) && st.State is "Succeeded" or "DeadLettered");
                return true;
            }, Timeout, "the 200 requests to the healthy destination to succeed");
            // 40 attempts of 1 s, 8 at a time, take at least 5 s: the healthy destination was not made to wait for them.
            Assert.True(hangingTerminalWhenFineDone < 40 - 8,
                $"{hangingTerminalWhenFineDone} of the 40 hanging requests had already ended when the 200 healthy ones were done");

            await s.WaitForTerminalAsync(hangingIds, Timeout);
            var states = await s.StatesAsync();
            Assert.All(hangingIds, id => Assert.Equal(("DeadLettered", (string?)"RetriesExhausted", 1), states[id]));
            Assert.All(fineIds, id => Assert.Equal(("Succeeded", (string?)null, 1), states[id]));
            Assert.Equal(200, healthy.Calls.Count);

            var attempts = (await s.AttemptsAsync()).Where(a => hangingIds.Contains(a.RequestId)).ToList();
            Assert.Equal(40, attempts.Count);
            Assert.All(attempts, a =>
            {
                Assert.Equal("Timeout", a.Result);
                Assert.Null(a.StatusCode);
                // AttemptTimeout is 1 s; its timer runs on a coarse clock and may fire a few ms before the stopwatch reads 1000.
                Assert.InRange(a.DurationMs, 980, 3000);
            });
            Assert.True(maxOpen <= 8, $"the hanging destination had {maxOpen} calls the worker still waited for open at once; MaxConcurrency is 8");
            // The worker's own record agrees: no more than 8 of its attempts overlapped.
            Assert.True(MaxOverlap(attempts) <= 8, $"{MaxOverlap(attempts)} recorded attempts overlapped");
        }
        finally
        {
            release.TrySetResult();
        }
    }

    [Fact]
    public async Task Destinations_hanging_at_their_caps_hold_none_of_the_worker_slots_that_a_healthy_destination_needs()
    {
        // Two destinations hang with 4 calls each: 8 calls in flight, twice the worker's 4 slots. Were the calls holding
        // worker slots, the first 4 would take them all and nothing else could start until an attempt timed out (60 s).
        await using var healthy = await Downstream.StartAsync();
        await using var s = await Scenario.StartAsync(services, new Dictionary<string, string>
        {
            ["Dispatcher:Worker:MaxConcurrency"] = "4",
            ["Dispatcher:Destinations:{destination}:MaxConcurrency"] = "4",
            ["Dispatcher:Destinations:{destination}:AttemptTimeout"] = "00:01:00",
            ["Dispatcher:Destinations:second:MaxConcurrency"] = "4",
            ["Dispatcher:Destinations:second:AttemptTimeout"] = "00:01:00",
            ["Dispatcher:Destinations:second:RateLimit:PermitsPerSecond"] = "100000",
            ["Dispatcher:Destinations:other:BaseUrl"] = healthy.BaseUrl.ToString(),
            ["Dispatcher:Destinations:other:MaxConcurrency"] = "4",
            ["Dispatcher:Destinations:other:RateLimit:PermitsPerSecond"] = "100000",
        }, startWorker: false);
        s.Settings["Dispatcher:Destinations:second:BaseUrl"] = s.Downstream.BaseUrl.ToString();
        await s.StartWorkerAsync();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var open = 0;
        s.Downstream.Handler = async context =>
        {
            Interlocked.Increment(ref open);
            try
            {
                await release.Task.WaitAsync(context.RequestAborted);
                context.Response.StatusCode = 200;
            }
            finally
            {
                Interlocked.Decrement(ref open);
            }
        };
        healthy.Handler = context =>
        {
            context.Response.StatusCode = 200;
            return Task.CompletedTask;
        };

        try
        {
            var hanging = Enumerable.Range(0, 4).Select(i => s.NewRequest($"/slow/{i}"))
                .Concat(Enumerable.Range(0, 4).Select(i => s.NewRequest($"/slow/second/{i}") with { Destination = "second" }))
                .ToList();
            foreach (var r in hanging)
                await s.SendAsync(r);
            await Eventually.TrueAsync(() => Volatile.Read(ref open) == 8, Timeout, "8 calls hanging at the two slow destinations");

            var fine = Enumerable.Range(0, 100).Select(i => s.NewRequest($"/fast/{i}") with { Destination = "other" }).ToList();
            foreach (var r in fine)
                await s.SendAsync(r);
            await s.WaitForTerminalAsync(fine.Select(r => r.RequestId).ToList(), Timeout);

            // Every healthy request succeeded while all 8 hanging calls were still open (they hang until released).
            Assert.Equal(8, Volatile.Read(ref open));
            var states = await s.StatesAsync();
            Assert.All(fine, r => Assert.Equal(("Succeeded", (string?)null, 1), states[r.RequestId]));
            Assert.Equal(100, healthy.Calls.Count);
            Assert.All(hanging, r => Assert.Equal("InProgress", states[r.RequestId].State));

            // Released, the hanging calls complete normally, each called once.
            release.SetResult();
            await s.WaitForTerminalAsync(hanging.Select(r => r.RequestId).ToList(), Timeout);
            states = await s.StatesAsync();
            Assert.All(hanging, r => Assert.Equal(("Succeeded", (string?)null, 1), states[r.RequestId]));
            Assert.All(hanging, r => Assert.Single(s.Downstream.CallsOf(r.RequestId)));
        }
        finally
        {
            release.TrySetResult();
        }
    }

    [Fact]
    public async Task Requests_for_a_destination_at_its_cap_are_held_back_unclaimed_and_each_is_called_once_later()
    {
        await using var s = await Scenario.StartAsync(services, new Dictionary<string, string>
        {
            ["Dispatcher:Destinations:{destination}:MaxConcurrency"] = "1",
            // At the cap, a request waits in the destination's queue (as deep as its cap: untimed) for as long as it would be
            // parked: a quarter of the attempt timeout (0.5 s to 5 s). 5 s here, longer than this test needs.
            ["Dispatcher:Destinations:{destination}:AttemptTimeout"] = "00:00:20",
        });
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        s.Downstream.Handler = async context =>
        {
            await release.Task.WaitAsync(context.RequestAborted);
            context.Response.StatusCode = 200;
        };
        var parked = DispatcherMetrics.Parked.WithLabels(s.Destination, DestinationPolicy.AtCapacity);
        var first = s.NewRequest("/orders/first");
        var queued = s.NewRequest("/orders/queued");
        var others = Enumerable.Range(0, 4).Select(i => s.NewRequest($"/orders/{i}")).ToList();

        await s.SendAsync(first);
        await Eventually.TrueAsync(() => s.Downstream.Calls.Count == 1, Timeout, "the first call in flight");
        // The next one is claimed and waits in the destination's queue (length 1) for the slot.
        await s.SendAsync(queued);
        await Eventually.TrueAsync(async () => await s.ScalarAsync("SELECT count(*) FROM dispatches") == 2, Timeout, "the second request claimed");
        // The queue is full: the others are held back.
        foreach (var r in others)
            await s.SendAsync(r);
        await Eventually.TrueAsync(() => parked.Value >= 4, Timeout, "4 requests held back at MaxConcurrency 1 with its queue full");

        // Held back before any claim: the others have no row and wait in the outbox as requests.
        Assert.Equal(2, await s.ScalarAsync("SELECT count(*) FROM dispatches"));
        Assert.True(await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'request'") >= 4, "each held-back request has an outbox row");
        Assert.Equal(0, await s.ScalarAsync("SELECT count(*) FROM dispatch_attempts"));

        // Released, the queued request gets the slot as soon as the first call ends: called second, without a park.
        release.SetResult();
        await s.WaitForTerminalAsync([first.RequestId, queued.RequestId], Timeout);
        Assert.Equal([first.RequestId.ToString(), queued.RequestId.ToString()], s.Downstream.Calls.Take(2).Select(c => c.IdempotencyKey));
        Assert.Equal(0, await s.ScalarAsync($"SELECT count(*) FROM outbox WHERE kind = 'request' AND payload::text LIKE '%{queued.RequestId}%'"));

        var ids = others.Select(r => r.RequestId).Append(first.RequestId).Append(queued.RequestId).ToList();
        await s.WaitForTerminalAsync(ids, Timeout);
        var states = await s.StatesAsync();
        Assert.All(ids, id => Assert.Equal(("Succeeded", (string?)null, 1), states[id]));
        Assert.All(ids, id => Assert.Single(s.Downstream.CallsOf(id)));
    }

    private static void InterlockedMax(ref int target, int value)
    {
        var current = Volatile.Read(ref target);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
                return;
            current = seen;
        }
    }

    private static int MaxOverlap(IEnumerable<AttemptRow> attempts)
    {
        var edges = attempts
            .SelectMany(a => new[] { (At: a.StartedAt, Delta: 1), (At: a.StartedAt.AddMilliseconds(a.DurationMs), Delta: -1) })
            .OrderBy(e => e.At).ThenBy(e => e.Delta);
        int open = 0, max = 0;
        foreach (var e in edges)
            max = Math.Max(max, open += e.Delta);
        return max;
    }
}
