using Dispatcher.Worker.Tests.Infrastructure;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed class CrashRecoveryTests(ServicesFixture services)
{
    [Fact]
    public async Task A_worker_killed_mid_flight_loses_nothing_and_each_request_ends_once()
    {
        await using var s = await Scenario.StartAsync(services, new Dictionary<string, string>
        {
            ["Dispatcher:Worker:MaxConcurrency"] = "32",
            ["Dispatcher:Worker:LeaseMargin"] = "00:00:05",
        }, startWorker: false);
        s.Downstream.Handler = async context =>
        {
            await Task.Delay(TimeSpan.FromMilliseconds(250), context.RequestAborted);
            context.Response.StatusCode = 200;
        };
        var requests = Enumerable.Range(0, 500).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        var ids = requests.Select(r => r.RequestId).ToList();

        await using (var first = await WorkerProcess.StartAsync(s.Settings))
        {
            await Task.WhenAll(requests.Select(s.SendAsync));
            await Eventually.TrueAsync(() => s.Downstream.Calls.Count >= 150, TimeSpan.FromSeconds(60), "150 calls before the kill");
            await first.KillAsync();
        }
        var callsAtKill = s.Downstream.Calls.Count;
        Assert.True(callsAtKill < 500, "the kill came too late to prove anything");

        await using var second = await WorkerProcess.StartAsync(s.Settings);
        await s.WaitForTerminalAsync(ids, TimeSpan.FromSeconds(120));

        var states = await s.StatesAsync();
        Assert.All(ids, id => Assert.Equal("Succeeded", states[id].State));
        // Exactly one terminal result each: every event of a request carries the same MessageId
        // (a relay killed between publish and commit may publish a row twice, never two results).
        await Eventually.TrueAsync(() => ids.All(id => s.Bus.EventCount(id) >= 1), TimeSpan.FromSeconds(60), "an event for each request");
        Assert.All(ids, id => Assert.Single(s.Bus.Events[id].Select(e => e.MessageId).Distinct()));
        Assert.Equal(500, await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'completed'"));

        // Every request was called; a request was called twice only if it was in flight at the kill,
        // and every call carried its RequestId as Idempotency-Key.
        var callsById = s.Downstream.Calls.GroupBy(c => c.IdempotencyKey).ToDictionary(g => g.Key!, g => g.Count());
        Assert.Equal(ids.Select(id => id.ToString()).Order(), callsById.Keys.Order());
        // In flight at the kill means: called by the first worker, outcome not yet committed. Each repeated request
        // was called exactly once before the kill and once after it, and there are at most as many as the worker
        // had messages in hand (32 worker slots + the destination's 64 calls and 64 queued).
        var calls = s.Downstream.Calls.ToList();
        var repeated = callsById.Where(kv => kv.Value > 1).Select(kv => kv.Key).ToList();
        Assert.All(repeated, key =>
        {
            Assert.Equal(2, callsById[key]);
            Assert.Equal(1, calls.Take(callsAtKill).Count(c => c.IdempotencyKey == key));
        });
        Assert.True(repeated.Count <= 32 + (2 * 64), $"{repeated.Count} requests were called more than once; at most the in-flight ones may be");
    }

    [Fact]
    public async Task Sigterm_drains_in_flight_dispatches_before_the_worker_exits()
    {
        await using var s = await Scenario.StartAsync(services, startWorker: false);
        var release = new TaskCompletionSource();
        s.Downstream.Handler = async context =>
        {
            await release.Task.WaitAsync(context.RequestAborted);
            context.Response.StatusCode = 200;
        };
        var requests = Enumerable.Range(0, 20).Select(i => s.NewRequest($"/slow/{i}")).ToList();

        await using var worker = await WorkerProcess.StartAsync(s.Settings);
        foreach (var r in requests)
            await s.SendAsync(r);
        await Eventually.TrueAsync(() => s.Downstream.Calls.Count == 20, TimeSpan.FromSeconds(30), "20 calls in flight");

        var exited = worker.TerminateAsync(TimeSpan.FromSeconds(60));
        // The worker is shutting down with 20 calls in flight; they answer now.
        await Eventually.TrueAsync(() => worker.Output.Contains("shutting down", StringComparison.OrdinalIgnoreCase),
            TimeSpan.FromSeconds(30), "the worker to begin its shutdown");
        release.SetResult();
        Assert.Equal(0, await exited);

        // Everything in flight was recorded and acknowledged before the exit: nothing is left to redeliver.
        var states = await s.StatesAsync();
        Assert.All(requests, r => Assert.Equal("Succeeded", states[r.RequestId].State));
        Assert.Equal(0u, await s.Bus.MessageCountAsync(s.Queue));
        Assert.Equal(20, s.Downstream.Calls.Count);
    }

    [Fact]
    public async Task A_claim_lost_while_its_call_was_in_flight_is_claimed_again_and_the_result_committed_once()
    {
        // Claims are not flushed before the call: a PostgreSQL crash may lose one. Here the claim's row is removed
        // while the call is in flight, as a crash would leave it; the completion must not be dropped as "another
        // owner took it over" (the message would be acknowledged and the request lost).
        await using var s = await Scenario.StartAsync(services);
        var inCall = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        s.Downstream.Handler = async context =>
        {
            inCall.TrySetResult();
            await release.Task.WaitAsync(context.RequestAborted);
            context.Response.StatusCode = 200;
        };
        var request = s.NewRequest("/orders/lost-claim");
        await s.SendAsync(request);
        await inCall.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1, await s.ScalarAsync($"DELETE FROM dispatches WHERE request_id = '{request.RequestId}' RETURNING 1"));

        release.SetResult();
        await s.WaitForTerminalAsync([request.RequestId], TimeSpan.FromSeconds(30));
        var states = await s.StatesAsync();
        Assert.Equal(("Succeeded", (string?)null, 1), states[request.RequestId]);
        Assert.Single(s.Downstream.CallsOf(request.RequestId));
        Assert.Equal(1, await s.ScalarAsync($"SELECT count(*) FROM outbox WHERE kind = 'completed' AND payload->>'requestId' = '{request.RequestId}'"));
    }
}
