using System.Text;
using Dispatcher.Contracts;
using Dispatcher.Worker.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Xunit.Abstractions;

namespace Dispatcher.Worker.Tests.FaultInjection;

/// <summary>
/// Thousands of requests through real worker processes while things break: workers SIGKILLed, RabbitMQ and
/// PostgreSQL stopped and started, a partner that fails, hangs and drops connections, and bad input.
/// Size: <c>DISPATCHER_FAULT_REQUESTS</c> requests per case (default 1000 in CI; raise it for a longer run).
/// Pass: every request terminal, none lost, no request with two terminal results; repeated successful calls
/// only for requests in flight at a kill, each with the same Idempotency-Key.
/// </summary>
[Collection(IntegrationCollection.Name)]
public sealed class FaultInjectionTests(ServicesFixture services, ITestOutputHelper output)
{
    private static readonly int Requests = int.TryParse(Environment.GetEnvironmentVariable("DISPATCHER_FAULT_REQUESTS"), out var n) ? n : 1000;
    private static readonly TimeSpan Drain = TimeSpan.FromSeconds(180);
    private static readonly TimeSpan Outage = TimeSpan.FromSeconds(3);

    private static Dictionary<string, string> Settings() => new()
    {
        ["Dispatcher:Worker:MaxConcurrency"] = "32",
        ["Dispatcher:Destinations:{destination}:MaxConcurrency"] = "32",
        ["Dispatcher:Worker:LeaseMargin"] = "00:00:03",
        ["Dispatcher:Destinations:{destination}:AttemptTimeout"] = "00:00:01",
        ["Dispatcher:Destinations:{destination}:Retry:MaxAttempts"] = "12",
        ["Dispatcher:Destinations:{destination}:Retry:BaseDelay"] = "00:00:00.050",
        ["Dispatcher:Destinations:{destination}:Retry:MaxDelay"] = "00:00:00.500",
        ["Dispatcher:Destinations:{destination}:CircuitBreaker:MinimumThroughput"] = "1000",
    };

    [Fact]
    public async Task Workers_killed_several_times_lose_nothing_and_finish_each_request_once()
    {
        await using var s = await Scenario.StartAsync(services, Settings(), startWorker: false);
        s.Downstream.Handler = DelayedOk(TimeSpan.FromMilliseconds(20));
        var workers = new[] { await WorkerProcess.StartAsync(s.Settings), await WorkerProcess.StartAsync(s.Settings) };
        var ids = await PublishAsync(s);
        var firstKill = DateTimeOffset.UtcNow;
        try
        {
            for (var kill = 0; kill < 3; kill++)
            {
                var callsBefore = s.Downstream.Calls.Count;
                await Eventually.TrueAsync(() => s.Downstream.Calls.Count >= Math.Min(callsBefore + Requests / 6, Requests),
                    Drain, "progress before the next kill");
                var victim = kill % 2;
                if (kill == 0)
                    firstKill = DateTimeOffset.UtcNow;
                await workers[victim].KillAsync();
                await workers[victim].DisposeAsync();
                workers[victim] = await WorkerProcess.StartAsync(s.Settings);
            }
            await s.WaitForTerminalAsync(ids, Drain);
        }
        finally
        {
            foreach (var w in workers)
                await w.DisposeAsync();
        }
        var report = await CheckAsync("3 SIGKILLs across 2 workers", s, ids, firstKill);
        // A repeated successful call is allowed only for a request in flight at a kill: per kill, at most the
        // destination's 32 calls in flight plus the 32 worker slots of calls done but not yet committed.
        Assert.True(report.DuplicateSuccessfulCalls <= 3 * (32 + 32), $"{report.DuplicateSuccessfulCalls} requests had two successful calls");
    }

    [Fact]
    public Task RabbitMQ_stopped_and_started_mid_run_loses_nothing() =>
        OutageAsync("RabbitMQ stopped 3 s", ServiceControl.StopRabbitMqAsync, ServiceControl.StartRabbitMqAsync, brokerRestarts: true);

    [Fact]
    public Task PostgreSQL_stopped_immediately_and_started_mid_run_loses_nothing() =>
        OutageAsync("PostgreSQL stopped (immediate) 3 s", ServiceControl.KillPostgresAsync, ServiceControl.StartPostgresAsync);

    /// <summary>A third of the way through, one service goes away for <see cref="Outage"/> and comes back.</summary>
    private async Task OutageAsync(string name, Func<Task> stop, Func<Task> start, bool brokerRestarts = false)
    {
        await using var s = await Scenario.StartAsync(services, Settings(), startWorker: false);
        s.Downstream.Handler = DelayedOk(TimeSpan.FromMilliseconds(10));
        await using var worker = await WorkerProcess.StartAsync(s.Settings);
        var ids = await PublishAsync(s);
        await Eventually.TrueAsync(() => s.Downstream.Calls.Count >= Requests / 3, Drain, "a third of the calls");
        var faultAt = DateTimeOffset.UtcNow;
        await stop();
        try
        {
            await Task.Delay(Outage);
        }
        finally
        {
            await start();
        }
        try
        {
            await s.WaitForTerminalAsync(ids, Drain);
        }
        catch (TimeoutException)
        {
            // Say where the requests are stuck and what the worker said, not just that time ran out.
            var states = await s.StatesAsync();
            output.WriteLine(string.Join(", ", ids.GroupBy(id => states.TryGetValue(id, out var st) ? $"{st.State}/{st.Attempts}" : "missing")
                .Select(g => $"{g.Key}: {g.Count()}")));
            output.WriteLine($"outbox pending: {await s.ScalarAsync("SELECT count(*) FROM outbox WHERE published_at IS NULL")}, " +
                $"queue: {await s.Bus.MessageCountAsync(s.Queue)}, error queue: {await s.Bus.MessageCountAsync(s.Queue + "_error")}");
            var configuration = new Microsoft.Extensions.Configuration.ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["ConnectionStrings:RabbitMq"] = s.RabbitMq,
                ["Dispatcher:Worker:QueueName"] = s.Queue,
            }).Build();
            if (await s.Bus.MessageCountAsync(s.Queue + "_error") > 0)
            {
                await using var errors = new Worker.ErrorQueue.ErrorQueueClient(configuration);
                foreach (var fault in (await errors.ListAsync(3, CancellationToken.None)).Select(m => $"{m.FaultExceptionType}: {m.FaultMessage}").Distinct())
                    output.WriteLine("error queue fault: " + fault);
            }
            output.WriteLine(string.Join('\n', worker.Output.Split('\n').Where(l => l.Contains("WRN", StringComparison.Ordinal)
                || l.Contains("ERR", StringComparison.Ordinal) || l.Contains("FTL", StringComparison.Ordinal)).TakeLast(60)));
            throw;
        }
        var report = await CheckAsync(name, s, ids, faultAt, subscriberSurvives: !brokerRestarts);
        // Calls in flight when the broker went away cannot be acknowledged and are redelivered: at most one
        // worker's concurrency of them may be called again.
        Assert.True(report.DuplicateSuccessfulCalls <= 32, $"{report.DuplicateSuccessfulCalls} requests had two successful calls");
    }

    [Fact]
    public async Task A_partner_that_fails_hangs_and_drops_connections_gets_every_request_to_a_terminal_state()
    {
        await using var s = await Scenario.StartAsync(services, Settings(), startWorker: false);
        var random = new Random(7);
        s.Downstream.Handler = async context =>
        {
            int roll;
            lock (random)
                roll = random.Next(100);
            switch (roll)
            {
                case < 30:
                    context.Response.StatusCode = 503;
                    break;
                case < 40:
                    await Task.Delay(TimeSpan.FromSeconds(30), context.RequestAborted).ContinueWith(_ => { }, TaskScheduler.Default);
                    break;
                case < 45:
                    context.Abort();
                    break;
                default:
                    context.Response.StatusCode = 200;
                    break;
            }
        };
        await using var worker = await WorkerProcess.StartAsync(s.Settings);
        var ids = await PublishAsync(s);
        await s.WaitForTerminalAsync(ids, Drain);
        var report = await CheckAsync("partner: 30% 503, 10% hang, 5% dropped", s, ids, DateTimeOffset.UtcNow);
        // No kill here: a request was called again after a success only when that success never reached the
        // worker (the partner answered 200 on a connection that was then reset): the worker recorded a failure
        // for that call and retried with the same Idempotency-Key, which is what the key is for.
        Assert.Equal(0, report.RecordedDuplicateSuccesses);
    }

    [Fact]
    public async Task Bad_input_never_crashes_a_worker_and_each_bad_message_ends_visibly()
    {
        await using var s = await Scenario.StartAsync(services, Settings(), startWorker: false);
        await using var worker = await WorkerProcess.StartAsync(s.Settings);
        var count = Math.Max(50, Requests / 10);
        var deadLettered = new List<Guid>();
        var unreadable = 0;
        for (var i = 0; i < count; i++)
        {
            var id = Guid.NewGuid();
            switch (i % 10)
            {
                case 0: await s.Bus.PublishRawAsync(s.Queue, "{\"requestId\":"u8.ToArray(), "application/json"); unreadable++; break; // truncated
                case 1: await s.Bus.PublishRawAsync(s.Queue, "\u0001\u0002 not json"u8.ToArray(), "application/json"); unreadable++; break; // malformed
                case 2: await s.Bus.PublishPlainJsonAsync(s.Queue, $$"""{"requestId":"{{id}}","destination":42,"path":["x"]}"""); unreadable++; break; // wrong types
                case 3: await s.Bus.PublishRawAsync(s.Queue, "{}"u8.ToArray(), "application/vnd.masstransit+json"); unreadable++; break; // no message type
                case 4: deadLettered.Add(id); await s.SendAsync(s.NewRequest() with { RequestId = id, Body = new string('x', 2 * 1024 * 1024) }); break;
                case 5: deadLettered.Add(id); await s.SendAsync(s.NewRequest() with { RequestId = id, Headers = Enumerable.Range(0, 500).ToDictionary(h => $"X-H{h}", h => "v") }); break;
                case 6: deadLettered.Add(id); await s.SendAsync(s.NewRequest() with { RequestId = id, Headers = new Dictionary<string, string> { ["X-A"] = "a\r\nHost: evil.example" } }); break;
                case 7: deadLettered.Add(id); await s.SendAsync(s.NewRequest(i % 20 == 7 ? "//evil.example/x" : "/%2e%2e/%2e%2e/etc/passwd") with { RequestId = id }); break;
                case 8: deadLettered.Add(id); await s.SendAsync(s.NewRequest() with { RequestId = id, Destination = "nowhere" }); break;
                default: deadLettered.Add(id); await s.SendAsync(s.NewRequest() with { RequestId = id, Method = "TRACE\r\n" }); break;
            }
        }
        var good = await PublishAsync(s, Requests / 2);

        await s.WaitForTerminalAsync(deadLettered, Drain);
        await s.WaitForTerminalAsync(good, Drain);
        await Eventually.TrueAsync(async () => await s.Bus.MessageCountAsync(s.Queue + "_error") == unreadable, Drain, $"{unreadable} unreadable messages in the error queue");

        var states = await s.StatesAsync();
        Assert.All(deadLettered, id => Assert.Equal("DeadLettered", states[id].State));
        Assert.All(good, id => Assert.Equal("Succeeded", states[id].State));
        Assert.DoesNotContain(s.Downstream.Calls, c => !good.Contains(Guid.Parse(c.IdempotencyKey!)));
        output.WriteLine($"bad input: {deadLettered.Count} dead-lettered with a reason, {unreadable} in the error queue, {good.Count} good requests succeeded after them");
    }

    private static Func<HttpContext, Task> DelayedOk(TimeSpan latency) => async context =>
    {
        await Task.Delay(latency, context.RequestAborted);
        context.Response.StatusCode = 200;
    };

    private static async Task<List<Guid>> PublishAsync(Scenario s, int? count = null)
    {
        var requests = Enumerable.Range(0, count ?? Requests).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        for (var i = 0; i < requests.Count; i += 200)
            await Task.WhenAll(requests.Skip(i).Take(200).Select(s.SendAsync));
        return [.. requests.Select(r => r.RequestId)];
    }

    private async Task<FaultReport> CheckAsync(string name, Scenario s, List<Guid> ids, DateTimeOffset faultAt, bool subscriberSurvives = true)
    {
        var report = await FaultChecker.CheckAsync(name, s, ids, faultAt);
        output.WriteLine(FaultReport.Header);
        output.WriteLine(report.ToString());
        foreach (var line in await FaultChecker.ExplainDuplicatesAsync(s, 3))
            output.WriteLine(line);
        Assert.Equal(0, report.Lost);
        Assert.Equal(ids.Count, report.Terminal);
        Assert.Equal(0, report.DuplicateTerminalResults);
        Assert.Equal(0, report.DuplicatesWithoutSameKey);
        Assert.Equal(0, report.RecordedDuplicateSuccesses);

        // Every terminal result's DispatchCompleted reached the broker (its outbox row is marked only after a
        // confirmed publish, by the committing worker or by a relay once due) and, unless the broker itself was
        // restarted (the test subscriber's own queue is not durable), reached a subscriber.
        await Eventually.TrueAsync(async () => await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'completed' AND published_at IS NULL") == 0,
            Drain, "every completed event published");
        if (subscriberSurvives)
            await Eventually.TrueAsync(() => ids.All(id => s.Bus.EventCount(id) >= 1), Drain, "an event for every request at the subscriber");
        return report;
    }
}
