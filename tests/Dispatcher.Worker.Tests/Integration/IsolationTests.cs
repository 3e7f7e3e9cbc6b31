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
        s.Downstream.Handler = async context =>
        {
            var now = Interlocked.Increment(ref open);
            InterlockedMax(ref maxOpen, now);
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
            Assert.True(maxOpen <= 8, $"the hanging destination had {maxOpen} calls open at once; MaxConcurrency is 8");
            // The worker's own record agrees: no more than 8 of its attempts overlapped.
            Assert.True(MaxOverlap(attempts) <= 8, $"{MaxOverlap(attempts)} recorded attempts overlapped");
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
            // Parked for a quarter of the attempt timeout (at least 0.5 s).
            ["Dispatcher:Destinations:{destination}:AttemptTimeout"] = "00:00:04",
        });
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        s.Downstream.Handler = async context =>
        {
            await release.Task.WaitAsync(context.RequestAborted);
            context.Response.StatusCode = 200;
        };
        var parked = DispatcherMetrics.Parked.WithLabels(s.Destination, DestinationPolicy.AtCapacity);
        var first = s.NewRequest("/orders/first");
        var others = Enumerable.Range(0, 5).Select(i => s.NewRequest($"/orders/{i}")).ToList();

        await s.SendAsync(first);
        await Eventually.TrueAsync(() => s.Downstream.Calls.Count == 1, Timeout, "the first call in flight");
        foreach (var r in others)
            await s.SendAsync(r);
        await Eventually.TrueAsync(() => parked.Value >= 5, Timeout, "5 requests held back at MaxConcurrency 1");

        // Held back before any claim: only the first request has a row; the others wait in the outbox as requests.
        Assert.Equal(1, await s.ScalarAsync("SELECT count(*) FROM dispatches"));
        Assert.True(await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'request'") >= 5, "each held-back request has an outbox row");
        Assert.Equal(0, await s.ScalarAsync("SELECT count(*) FROM dispatch_attempts"));

        release.SetResult();
        var ids = others.Select(r => r.RequestId).Append(first.RequestId).ToList();
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
