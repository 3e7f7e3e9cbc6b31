using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Dispatcher.Persistence.DeadLetters;
using Dispatcher.Worker.DeadLetters;
using Dispatcher.Worker.Tests.Infrastructure;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed class DeadLetterReplayTests(ServicesFixture services)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Replay_by_filter_sends_back_exactly_the_matching_dead_letters_and_they_then_succeed()
    {
        await using var s = await Scenario.StartAsync(services);
        var healthy = false;
        s.Downstream.Handler = context =>
        {
            context.Response.StatusCode = Volatile.Read(ref healthy) ? 200 : 400;
            return Task.CompletedTask;
        };
        var rejected = Enumerable.Range(0, 12).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        var unknown = Enumerable.Range(0, 3).Select(_ => s.NewRequest() with { Destination = "ghost" }).ToList();
        foreach (var r in rejected.Concat(unknown))
            await s.SendAsync(r);
        await s.WaitForTerminalAsync([.. rejected.Concat(unknown).Select(r => r.RequestId)], Timeout);
        Assert.Equal(12, s.Downstream.Calls.Count);

        Volatile.Write(ref healthy, true);
        var replayer = s.Worker!.Services.GetRequiredService<DeadLetterReplayer>();
        var filter = new DeadLetterFilter { Destination = s.Destination, Reason = "NonRetriableStatus" };

        var dry = await replayer.ReplayAsync(filter, rate: null, dryRun: true, progress: null, CancellationToken.None);
        Assert.Equal((true, 12L, 0L), (dry.DryRun, dry.Matched, dry.Replayed));
        Assert.Equal(15, await s.ScalarAsync("SELECT count(*) FROM dispatches WHERE state = 'DeadLettered'"));
        Assert.Equal(0, await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'request'"));

        var summary = await replayer.ReplayAsync(filter, rate: 50, dryRun: false, progress: null, CancellationToken.None);
        Assert.Equal(12, summary.Replayed);
        await Eventually.TrueAsync(async () => await s.ScalarAsync("SELECT count(*) FROM dispatches WHERE state = 'Succeeded'") == 12,
            Timeout, "the replayed dead letters to succeed");

        var states = await s.StatesAsync();
        Assert.All(rejected, r => Assert.Equal("Succeeded", states[r.RequestId].State));
        Assert.All(unknown, r => Assert.Equal(("DeadLettered", (string?)"UnknownDestination"), (states[r.RequestId].State, states[r.RequestId].Reason)));
        Assert.Equal(24, s.Downstream.Calls.Count);
        // History kept: two cycles, one attempt each; the replay counted in the cycle number.
        Assert.Equal(24, await s.ScalarAsync("SELECT count(*) FROM dispatch_attempts"));
        Assert.Equal(12, await s.ScalarAsync("SELECT count(*) FROM dispatches WHERE cycle = 1"));
        // A replayed request that ends again publishes a new DispatchCompleted.
        await Eventually.TrueAsync(() => rejected.All(r => s.Bus.EventCount(r.RequestId) == 2), Timeout, "a second event for each replayed request");
    }

    [Fact]
    public async Task Two_replays_running_at_once_never_send_the_same_dead_letter_twice()
    {
        await using var s = await Scenario.StartAsync(services);
        var healthy = false;
        s.Downstream.Handler = context =>
        {
            context.Response.StatusCode = Volatile.Read(ref healthy) ? 200 : 404;
            return Task.CompletedTask;
        };
        var requests = Enumerable.Range(0, 200).Select(i => s.NewRequest($"/items/{i}")).ToList();
        foreach (var r in requests)
            await s.SendAsync(r);
        await s.WaitForTerminalAsync([.. requests.Select(r => r.RequestId)], Timeout);
        Volatile.Write(ref healthy, true);

        var replayer = s.Worker!.Services.GetRequiredService<DeadLetterReplayer>();
        var filter = new DeadLetterFilter { Destination = s.Destination };
        var results = await Task.WhenAll(
            replayer.ReplayAsync(filter, rate: 400, dryRun: false, progress: null, CancellationToken.None),
            replayer.ReplayAsync(filter, rate: 400, dryRun: false, progress: null, CancellationToken.None));

        Assert.Equal(200, results.Sum(r => r.Replayed));
        await Eventually.TrueAsync(async () => await s.ScalarAsync("SELECT count(*) FROM dispatches WHERE state = 'Succeeded'") == 200,
            Timeout, "every replayed request to succeed");
        Assert.All(s.Downstream.Calls.GroupBy(c => c.IdempotencyKey), g => Assert.Equal(2, g.Count()));
        // One replay per dead letter: each went into cycle 1, none further. (Counting the outbox's request rows would
        // also count parks and hold-backs of the replayed requests at a busy destination.)
        Assert.Equal(200, await s.ScalarAsync("SELECT count(*) FROM dispatches WHERE cycle = 1"));
        Assert.Equal(1, await s.ScalarAsync("SELECT max(cycle) FROM dispatches"));
    }

    [Fact]
    public async Task The_admin_api_lists_and_replays_dead_letters_behind_the_token()
    {
        await using var s = await Scenario.StartAsync(services, new Dictionary<string, string> { ["Dispatcher:Admin:Token"] = "t0ken" });
        s.Downstream.Handler = context =>
        {
            context.Response.StatusCode = 422;
            return Task.CompletedTask;
        };
        var request = s.NewRequest() with
        {
            Headers = new Dictionary<string, string> { ["Authorization"] = "Bearer planted-secret", ["X-Api-Key"] = "planted-key", ["X-Trace"] = "kept" },
        };
        await s.SendAsync(request);
        await s.WaitForTerminalAsync([request.RequestId], Timeout);

        using var http = new HttpClient { BaseAddress = new Uri(s.Worker!.AdminUrl) };
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/dead-letters")).StatusCode);
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "t0ken");

        var list = await http.GetStringAsync($"/api/dead-letters?destination={s.Destination}");
        Assert.Contains(request.RequestId.ToString(), list, StringComparison.Ordinal);
        Assert.Contains("\"total\":1", list, StringComparison.Ordinal);
        var shown = await http.GetStringAsync($"/api/dispatches/{request.RequestId}");
        Assert.Contains("kept", shown, StringComparison.Ordinal);
        Assert.DoesNotContain("planted", shown, StringComparison.Ordinal);

        var dry = await http.PostAsJsonAsync("/api/dead-letters/replay", new { requestIds = new[] { request.RequestId }, dryRun = true });
        Assert.Contains("\"matched\":1", await dry.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        var bad = await http.PostAsJsonAsync("/api/dead-letters/replay", new { });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        var replay = await http.PostAsJsonAsync("/api/dead-letters/replay", new { requestIds = new[] { request.RequestId } });
        Assert.Contains("\"replayed\":1", await replay.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        await Eventually.TrueAsync(() => s.Downstream.Calls.Count == 2, Timeout, "the replayed call");
        // The secret still reaches the downstream: it is redacted only where people and logs see it.
        Assert.All(s.Downstream.Calls, c => Assert.Equal("Bearer planted-secret", c.Headers["Authorization"]));
    }
}
