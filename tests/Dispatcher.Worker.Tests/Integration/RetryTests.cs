using System.Collections.Concurrent;
using System.Globalization;
using Dispatcher.Contracts;
using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Tests.Infrastructure;
using Npgsql;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed class RetryTests(ServicesFixture services)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Keeps the circuit breaker (by default open after 20 retriable failures) out of tests about retries: an open
    /// breaker parks requests for BreakDuration, which is its own behaviour (see CircuitBreakerTests).
    /// </summary>
    private static Dictionary<string, string> WithoutBreaker(Dictionary<string, string>? settings = null)
    {
        settings ??= [];
        settings["Dispatcher:Destinations:{destination}:CircuitBreaker:MinimumThroughput"] = "1000000";
        return settings;
    }

    /// <summary>How late a retry may start after its due time on a loaded 2-core machine (relay, queue, claim, call).</summary>
    private static readonly TimeSpan Lateness = TimeSpan.FromSeconds(2);

    [Fact]
    public async Task A_429_with_Retry_After_in_seconds_is_retried_no_sooner_than_that_many_seconds_after_the_answer()
    {
        await using var s = await Scenario.StartAsync(services, WithoutBreaker());
        var answeredAt = new ConcurrentDictionary<string, DateTimeOffset>();
        s.Downstream.Handler = context =>
        {
            // Taken before the answer leaves: the worker cannot have received the 429 earlier than this.
            if (answeredAt.TryAdd(context.Request.Headers["Idempotency-Key"].ToString(), DateTimeOffset.UtcNow))
            {
                context.Response.StatusCode = 429;
                context.Response.Headers.RetryAfter = "3";
            }
            else
            {
                context.Response.StatusCode = 200;
            }
            return Task.CompletedTask;
        };
        var requests = Enumerable.Range(0, 5).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        var ids = requests.Select(r => r.RequestId).ToList();

        foreach (var r in requests)
            await s.SendAsync(r);
        await s.WaitForTerminalAsync(ids, Timeout);

        var states = await s.StatesAsync();
        Assert.All(ids, id =>
        {
            Assert.Equal(("Succeeded", (string?)null, 2), states[id]);
            var calls = s.Downstream.CallsOf(id);
            Assert.Equal(2, calls.Count);
            var wait = calls[1].At - answeredAt[id.ToString()];
            Assert.True(wait >= TimeSpan.FromSeconds(3) && wait <= TimeSpan.FromSeconds(3) + Lateness,
                $"the retry started {wait.TotalMilliseconds:0} ms after the 429 with Retry-After: 3 (expected 3000 to {(TimeSpan.FromSeconds(3) + Lateness).TotalMilliseconds:0})");
        });
        var attempts = await s.AttemptsAsync();
        Assert.All(ids, id => Assert.Equal(
            [(1, "HttpError", (int?)429), (2, "Success", 200)],
            attempts.Where(a => a.RequestId == id).Select(a => (a.Number, a.Result, a.StatusCode))));
    }

    [Fact]
    public async Task A_503_with_Retry_After_as_an_HTTP_date_is_retried_at_or_after_that_date()
    {
        await using var s = await Scenario.StartAsync(services, WithoutBreaker());
        var retryAt = new ConcurrentDictionary<string, DateTimeOffset>();
        s.Downstream.Handler = context =>
        {
            var key = context.Request.Headers["Idempotency-Key"].ToString();
            var now = DateTimeOffset.UtcNow;
            // Whole seconds (the HTTP-date precision), 3 to 4 s ahead.
            var at = new DateTimeOffset(now.Ticks - (now.Ticks % TimeSpan.TicksPerSecond), TimeSpan.Zero).AddSeconds(4);
            if (retryAt.TryAdd(key, at))
            {
                context.Response.StatusCode = 503;
                context.Response.Headers.RetryAfter = at.ToString("R", CultureInfo.InvariantCulture);
            }
            else
            {
                context.Response.StatusCode = 200;
            }
            return Task.CompletedTask;
        };
        var requests = Enumerable.Range(0, 5).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        var ids = requests.Select(r => r.RequestId).ToList();

        foreach (var r in requests)
            await s.SendAsync(r);
        await s.WaitForTerminalAsync(ids, Timeout);

        var states = await s.StatesAsync();
        Assert.All(ids, id =>
        {
            Assert.Equal(("Succeeded", (string?)null, 2), states[id]);
            var calls = s.Downstream.CallsOf(id);
            Assert.Equal(2, calls.Count);
            var date = retryAt[id.ToString()];
            Assert.True(calls[1].At >= date && calls[1].At <= date + Lateness,
                $"the retry started at {calls[1].At:HH:mm:ss.fff}, Retry-After said {date:HH:mm:ss} (allowed up to {Lateness.TotalSeconds:0} s late, never early)");
        });
    }

    [Fact]
    public async Task Retries_waiting_in_the_outbox_survive_a_killed_worker_process_and_none_starts_before_its_Retry_After()
    {
        // Room for all 200 at once: none is held back at the cap, so the first calls come in one burst and the
        // retries (due 6 s after each) are all written before the first of them falls due and the worker is killed.
        await using var s = await Scenario.StartAsync(services, WithoutBreaker(new Dictionary<string, string>
        {
            ["Dispatcher:Destinations:{destination}:MaxConcurrency"] = "200",
        }), startWorker: false);
        var callsByKey = new ConcurrentDictionary<string, int>();
        s.Downstream.Handler = context =>
        {
            if (callsByKey.AddOrUpdate(context.Request.Headers["Idempotency-Key"].ToString(), 1, (_, n) => n + 1) == 1)
            {
                context.Response.StatusCode = 503;
                context.Response.Headers.RetryAfter = "6";
            }
            else
            {
                context.Response.StatusCode = 200;
            }
            return Task.CompletedTask;
        };
        var requests = Enumerable.Range(0, 200).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        var ids = requests.Select(r => r.RequestId).ToList();

        await using (var first = await WorkerProcess.StartAsync(s.Settings))
        {
            foreach (var r in requests)
                await s.SendAsync(r);
            await Eventually.TrueAsync(() => callsByKey.Count == 200, Timeout, "a first call for each of the 200 requests");
            await Eventually.TrueAsync(async () =>
                await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'request' AND published_at IS NULL") == 200,
                Timeout, "200 retries waiting in the outbox");
            await first.KillAsync();
        }
        Assert.Equal(200, s.Downstream.Calls.Count);

        await using var second = await WorkerProcess.StartAsync(s.Settings);
        await s.WaitForTerminalAsync(ids, Timeout);

        var states = await s.StatesAsync();
        Assert.All(ids, id => Assert.Equal(("Succeeded", (string?)null, 2), states[id]));
        var early = new List<string>();
        foreach (var id in ids)
        {
            var calls = s.Downstream.CallsOf(id);
            Assert.Equal(2, calls.Count);
            // The 503 was answered after the first call arrived, so the retry is due 6 s after that at the
            // earliest (50 ms allowed for clock granularity).
            var wait = calls[1].At - calls[0].At;
            if (wait < TimeSpan.FromSeconds(6) - TimeSpan.FromMilliseconds(50))
                early.Add($"{id}: {wait.TotalMilliseconds:0} ms");
        }
        Assert.True(early.Count == 0, $"{early.Count} retries started before Retry-After: 6 had passed: {string.Join(", ", early.Take(5))}");
    }

    [Fact]
    public async Task A_destination_answering_503_every_time_is_called_MaxAttempts_times_with_capped_backoff_then_dead_lettered()
    {
        // MaxDelay is below BaseDelay * 2^3, so the cap binds on the 3rd and 4th delays: an uncapped backoff
        // (up to 800 and 1600 ms) would exceed the ceiling plus the tolerance for some of the 20 requests.
        var baseDelay = TimeSpan.FromMilliseconds(200);
        var maxDelay = TimeSpan.FromMilliseconds(400);
        var tolerance = TimeSpan.FromMilliseconds(700);
        await using var s = await Scenario.StartAsync(services, WithoutBreaker(new Dictionary<string, string>
        {
            ["Dispatcher:Destinations:{destination}:Retry:MaxAttempts"] = "5",
            ["Dispatcher:Destinations:{destination}:Retry:BaseDelay"] = "00:00:00.200",
            ["Dispatcher:Destinations:{destination}:Retry:MaxDelay"] = "00:00:00.400",
        }));
        s.Downstream.Handler = context =>
        {
            context.Response.StatusCode = 503;
            return Task.CompletedTask;
        };
        var requests = Enumerable.Range(0, 20).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        var ids = requests.Select(r => r.RequestId).ToList();

        foreach (var r in requests)
            await s.SendAsync(r);
        await s.WaitForTerminalAsync(ids, Timeout);

        var states = await s.StatesAsync();
        var attempts = await s.AttemptsAsync();
        Assert.All(ids, id =>
        {
            Assert.Equal(("DeadLettered", (string?)"RetriesExhausted", 5), states[id]);
            Assert.Equal(5, s.Downstream.CallsOf(id).Count);
            Assert.Equal(
                Enumerable.Range(1, 5).Select(n => (0, n, "HttpError", (int?)503)),
                attempts.Where(a => a.RequestId == id).Select(a => (a.Cycle, a.Number, a.Result, a.StatusCode)));
        });
        Assert.Equal(20 * 5, s.Downstream.Calls.Count);
        // Every retry row ends published (four per request at least). Eventually: a relay commits its mark after the
        // broker confirmed the message, and the worker may have consumed it and reached the terminal state first.
        Assert.True(await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'request'") >= 20 * 4);
        await Eventually.TrueAsync(
            async () => await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'request' AND published_at IS NULL") == 0,
            Timeout, "every retry row in the outbox published");

        // Full jitter draws each delay uniformly in [0, ceiling]: a later gap need not be longer than an earlier
        // one, so each gap is held to its own ceiling, min(MaxDelay, BaseDelay * 2^(n-1)), plus the tolerance.
        var gaps = new List<double>();
        foreach (var id in ids)
        {
            var calls = s.Downstream.CallsOf(id);
            for (var n = 1; n < calls.Count; n++)
            {
                var gap = calls[n].At - calls[n - 1].At;
                var ceiling = TimeSpan.FromTicks(Math.Min(maxDelay.Ticks, baseDelay.Ticks << (n - 1)));
                Assert.True(gap >= TimeSpan.Zero && gap <= ceiling + tolerance,
                    $"gap after attempt {n} was {gap.TotalMilliseconds:0} ms; its ceiling is {ceiling.TotalMilliseconds:0} ms (+{tolerance.TotalMilliseconds:0} ms tolerance)");
                gaps.Add(gap.TotalMilliseconds);
            }
        }
        // And the delays are real: their ceilings average 350 ms, so a mean of jittered delays (~175 ms plus
        // overhead) below 100 ms over 80 gaps would mean the backoff was not applied.
        Assert.True(gaps.Average() >= 100, $"mean gap between attempts was {gaps.Average():0} ms");

        await Eventually.TrueAsync(() => ids.All(id => s.Bus.EventCount(id) >= 1), Timeout, "a DispatchCompleted for each request");
        Assert.All(ids, id =>
        {
            var e = Assert.Single(s.Bus.Events[id]).Event;
            Assert.Equal(DispatchOutcome.DeadLettered, e.Outcome);
            Assert.Equal(DeadLetterReason.RetriesExhausted, e.Reason);
            Assert.Equal(5, e.Attempts);
            Assert.Equal(503, e.StatusCode);
        });
    }

    [Fact]
    public async Task Rows_falling_due_in_the_outbox_are_published_even_when_no_commit_wakes_the_relay()
    {
        // What a durable retry or a park relies on: the relay wakes by itself when a row falls due. 100 events due
        // 23.7 ms apart (each at its own fraction of a millisecond), written by one statement (one NOTIFY); nothing
        // commits afterwards to wake the relay again.
        await using var s = await Scenario.StartAsync(services);
        var first = DateTimeOffset.UtcNow.AddSeconds(1);
        var rows = Enumerable.Range(0, 100).Select(i => (
            Id: Guid.NewGuid(),
            Due: first.AddMilliseconds(i * 23.7))).ToList();
        await using (var connection = new NpgsqlConnection(s.Postgres))
        {
            await connection.OpenAsync();
            await using var cmd = new NpgsqlCommand("""
                INSERT INTO outbox (message_id, kind, payload, not_before, created_at, publish_attempts)
                SELECT gen_random_uuid(), 'completed', p::jsonb, d, now(), 0 FROM unnest(@payloads, @dues) AS t(p, d)
                """, connection);
            cmd.Parameters.Add(new NpgsqlParameter<string[]>("payloads", [.. rows.Select(r => DispatcherJson.Serialize(new DispatchCompleted
            {
                RequestId = r.Id,
                Destination = s.Destination,
                Outcome = DispatchOutcome.Succeeded,
                Attempts = 1,
                CompletedAt = r.Due,
            }))]));
            cmd.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("dues", [.. rows.Select(r => r.Due)]));
            await cmd.ExecuteNonQueryAsync();
        }

        // The relay polls at least every PollInterval (1 s): 3 s after the last due time is plenty.
        var lastDue = rows[^1].Due;
        await Eventually.TrueAsync(async () => await s.ScalarAsync("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0,
            lastDue - DateTimeOffset.UtcNow + TimeSpan.FromSeconds(3), "every due outbox row to be published");
        await Eventually.TrueAsync(() => rows.All(r => s.Bus.EventCount(r.Id) == 1), Timeout, "each event to arrive once");
        var late = await s.QueryAsync(
            "SELECT extract(epoch FROM max(published_at - not_before)) FROM outbox", r => r.GetDouble(0));
        Assert.True(late[0] <= 2.0, $"a row was published {late[0]:0.000} s after it fell due");
    }

    [Fact]
    public async Task A_400_is_called_once_and_dead_lettered_as_NonRetriableStatus()
    {
        await using var s = await Scenario.StartAsync(services);
        s.Downstream.Handler = context =>
        {
            context.Response.StatusCode = 400;
            return Task.CompletedTask;
        };
        var requests = Enumerable.Range(0, 3).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        var ids = requests.Select(r => r.RequestId).ToList();

        foreach (var r in requests)
            await s.SendAsync(r);
        await s.WaitForTerminalAsync(ids, Timeout);

        var states = await s.StatesAsync();
        Assert.All(ids, id =>
        {
            Assert.Equal(("DeadLettered", (string?)"NonRetriableStatus", 1), states[id]);
            Assert.Single(s.Downstream.CallsOf(id));
        });
        Assert.Equal(3, await s.ScalarAsync("SELECT count(*) FROM dispatch_attempts WHERE result = 'HttpError' AND status_code = 400"));
        Assert.Equal(0, await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'request'"));
        await Eventually.TrueAsync(() => ids.All(id => s.Bus.EventCount(id) >= 1), Timeout, "a DispatchCompleted for each request");
        Assert.All(ids, id =>
        {
            var e = Assert.Single(s.Bus.Events[id]).Event;
            Assert.Equal(DeadLetterReason.NonRetriableStatus, e.Reason);
            Assert.Equal(400, e.StatusCode);
            Assert.Equal(1, e.Attempts);
        });
        Assert.Equal(3, s.Downstream.Calls.Count);
    }
}
