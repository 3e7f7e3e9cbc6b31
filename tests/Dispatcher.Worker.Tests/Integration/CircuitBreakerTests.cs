using Dispatcher.Worker.Observability;
using Dispatcher.Worker.Resilience;
using Dispatcher.Worker.Tests.Infrastructure;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed class CircuitBreakerTests(ServicesFixture services)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan BreakDuration = TimeSpan.FromSeconds(2);

    /// <summary>
    /// A destination answering 503 until <c>recover</c> is called; its breaker opens after 4 calls (half of them
    /// failed) and probes every 2 s; retries (0.1-0.5 s apart) do not run out.
    /// </summary>
    private async Task<(Scenario Scenario, Action Recover)> StartDownAsync()
    {
        var s = await Scenario.StartAsync(services, new Dictionary<string, string>
        {
            ["Dispatcher:Destinations:{destination}:CircuitBreaker:MinimumThroughput"] = "4",
            ["Dispatcher:Destinations:{destination}:CircuitBreaker:FailureRatio"] = "0.5",
            ["Dispatcher:Destinations:{destination}:CircuitBreaker:SamplingDuration"] = "00:00:02",
            ["Dispatcher:Destinations:{destination}:CircuitBreaker:BreakDuration"] = "00:00:02",
            ["Dispatcher:Destinations:{destination}:Retry:MaxAttempts"] = "50",
            ["Dispatcher:Destinations:{destination}:Retry:BaseDelay"] = "00:00:00.100",
            ["Dispatcher:Destinations:{destination}:Retry:MaxDelay"] = "00:00:00.500",
        });
        var recovered = 0;
        s.Downstream.Handler = context =>
        {
            context.Response.StatusCode = Volatile.Read(ref recovered) == 1 ? 200 : 503;
            return Task.CompletedTask;
        };
        return (s, () => Volatile.Write(ref recovered, 1));
    }

    [Fact]
    public async Task A_failing_destination_opens_the_breaker_which_parks_requests_without_calls_and_all_succeed_once_it_recovers()
    {
        var (scenario, recover) = await StartDownAsync();
        await using var s = scenario;
        var circuit = DispatcherMetrics.CircuitState.WithLabels(s.Destination);
        var parkedByBreaker = DispatcherMetrics.Parked.WithLabels(s.Destination, "circuit open");
        var requests = Enumerable.Range(0, 30).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        var ids = requests.Select(r => r.RequestId).ToList();

        foreach (var r in requests)
            await s.SendAsync(r);
        await Eventually.TrueAsync(() => circuit.Value == 1, Timeout, "the breaker to open");
        await Eventually.TrueAsync(() => parkedByBreaker.Value > 0, Timeout, "requests parked because the circuit is open");
        recover();

        await s.WaitForTerminalAsync(ids, Timeout);
        var states = await s.StatesAsync();
        Assert.All(ids, id => Assert.Equal("Succeeded", states[id].State));
        Assert.Equal(0, await s.ScalarAsync("SELECT count(*) FROM dispatches WHERE state = 'DeadLettered'"));
        await Eventually.TrueAsync(() => circuit.Value == 0, Timeout, "the breaker to close again");

        // While open, the breaker held every call back: the 503s stopped for about BreakDuration, where retries
        // alone (at most 500 ms apart for 30 requests) would have kept them coming.
        var calls = s.Downstream.Calls.Select(c => c.At).Order().ToList();
        var longestPause = calls.Zip(calls.Skip(1), (a, b) => b - a).Max();
        Assert.True(longestPause >= TimeSpan.FromSeconds(1.5), $"the longest pause between calls was {longestPause.TotalMilliseconds:0} ms");
        // A parked request spent no attempt: each request's attempts are exactly its calls.
        Assert.All(ids, id => Assert.Equal(s.Downstream.CallsOf(id).Count, states[id].Attempts));
    }

    [Fact]
    public async Task A_backlog_at_a_destination_down_longer_than_the_return_line_is_sent_back_over_the_outage_brought_forward_once_it_recovers_and_all_succeed()
    {
        var (scenario, recover) = await StartDownAsync();
        await using var s = scenario;
        var requests = Enumerable.Range(0, 200).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        var ids = requests.Select(r => r.RequestId).ToList();
        foreach (var r in requests)
            await s.SendAsync(r);
        await Eventually.TrueAsync(() => DispatcherMetrics.CircuitState.WithLabels(s.Destination).Value == 1, Timeout, "the breaker to open");

        // For the outage's first 10 s the backlog goes round within the rest of a break and the 10-s line (and up to
        // 250 ms of jitter); retries wait at most 0.5 s. Past that, the breaker spreads its returns over as long as the
        // destination has been down: some go further than any line would have sent them.
        var line = (DestinationPolicy.MaxReturnLine + BreakDuration + TimeSpan.FromSeconds(0.5)).TotalSeconds;
        var sentFurther = $"SELECT count(*) FROM outbox WHERE kind = 'request' AND not_before - created_at > interval '{line} seconds'";
        await Eventually.TrueAsync(async () => await s.ScalarAsync(sentFurther) > 0, TimeSpan.FromSeconds(40),
            "a request sent back further than a break and the return line");
        // Down for long enough that, at the recovery, some are due more than 22 s later.
        const string dueLate = "SELECT count(*) FROM outbox WHERE kind = 'request' AND published_at IS NULL AND not_before > now() + interval '22 seconds'";
        await Eventually.TrueAsync(async () => await s.ScalarAsync(dueLate) > 0, TimeSpan.FromSeconds(45),
            "a request due more than 22 s from now");
        Assert.True(await s.ScalarAsync("SELECT count(*) FROM outbox WHERE held_for = 'circuit open'") > 0, "rows say why they were held");
        // Never further than the longest spread (from the end of a break).
        var longest = (DestinationPolicy.MaxOutageSpread + BreakDuration + TimeSpan.FromSeconds(0.5)).TotalSeconds;
        Assert.Equal(0, await s.ScalarAsync($"SELECT count(*) FROM outbox WHERE kind = 'request' AND not_before - created_at > interval '{longest} seconds'"));

        recover();
        var recoveredAt = DateTimeOffset.UtcNow;

        // Recovered: its next probe succeeds within a break (2 s, and a request's arrival), the next heartbeat (within
        // 5 s) brings what the breaker sent back over the outage forward to within a line (10 s: this destination takes
        // them faster than that), so none is due more than ~17.5 s after the recovery; without it, some stay due more
        // than 22 s after it, and pending until then.
        var stillLate = $"SELECT count(*) FROM outbox WHERE kind = 'request' AND published_at IS NULL AND not_before > '{recoveredAt.AddSeconds(19):O}'::timestamptz";
        await Eventually.TrueAsync(async () => await s.ScalarAsync(stillLate) == 0, TimeSpan.FromSeconds(16),
            "no request left due more than 19 s after the recovery");
        await s.WaitForTerminalAsync(ids, TimeSpan.FromSeconds(60));
        var states = await s.StatesAsync();
        Assert.All(ids, id => Assert.Equal("Succeeded", states[id].State));
        // Sent back by the breaker, a request spent no attempt: each request's attempts are exactly its calls, and
        // each succeeded once.
        Assert.All(ids, id => Assert.Equal(s.Downstream.CallsOf(id).Count, states[id].Attempts));
        Assert.All(ids, id => Assert.Single(s.Downstream.CallsOf(id), c => c.Status == 200));
    }
}
