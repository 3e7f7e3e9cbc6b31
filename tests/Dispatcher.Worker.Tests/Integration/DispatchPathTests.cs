using Dispatcher.Contracts;
using Dispatcher.Worker.Observability;
using Dispatcher.Worker.Tests.Infrastructure;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed class DispatchPathTests(ServicesFixture services)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    [Fact]
    public async Task Thousand_requests_in_both_wire_formats_are_each_called_once_and_announced_once()
    {
        await using var s = await Scenario.StartAsync(services, new Dictionary<string, string>
        {
            ["Dispatcher:Destinations:{destination}:Headers:Authorization"] = "Bearer static-secret",
        });
        var requests = Enumerable.Range(0, 1000)
            .Select(i => s.NewRequest($"/orders/{i}?source=test", body: $$"""{"order":{{i}}}"""))
            .ToList();

        for (var i = 0; i < requests.Count; i++)
        {
            if (i % 2 == 0)
                await s.SendAsync(requests[i]);
            else
                await s.PublishPlainJsonAsync(requests[i]);
        }
        await Eventually.TrueAsync(() => requests.All(r => s.Bus.EventCount(r.RequestId) >= 1), Timeout, "1000 DispatchCompleted events");

        var calls = s.Downstream.Calls.ToList();
        Assert.Equal(1000, calls.Count);
        Assert.Equal(requests.Select(r => r.RequestId.ToString()).Order(), calls.Select(c => c.IdempotencyKey).Order());
        var sample = calls.Single(c => c.IdempotencyKey == requests[7].RequestId.ToString());
        Assert.Equal("POST", sample.Method);
        Assert.Equal("/orders/7?source=test", sample.PathAndQuery);
        Assert.Equal("""{"order":7}""", sample.Body);
        Assert.Equal("Bearer static-secret", sample.Headers["Authorization"]);
        Assert.StartsWith("application/json", sample.Headers["Content-Type"], StringComparison.Ordinal);

        var states = await s.StatesAsync();
        Assert.All(requests, r => Assert.Equal(("Succeeded", (string?)null, 1), states[r.RequestId]));
        Assert.All(requests, r =>
        {
            var e = Assert.Single(s.Bus.Events[r.RequestId]).Event;
            Assert.Equal(DispatchOutcome.Succeeded, e.Outcome);
            Assert.Equal(200, e.StatusCode);
            Assert.Equal(1, e.Attempts);
            Assert.Equal("yes", e.Metadata!["test"]);
        });

        // The same 100 requests again, in both formats: no new call, no new event.
        foreach (var (r, i) in requests.Take(100).Select((r, i) => (r, i)))
        {
            if (i % 2 == 0)
                await s.SendAsync(r);
            else
                await s.PublishPlainJsonAsync(r);
        }
        await Eventually.TrueAsync(() => DispatcherMetrics.Duplicates.WithLabels(s.Destination).Value >= 100, Timeout, "100 duplicates acknowledged");
        Assert.Equal(1000, s.Downstream.Calls.Count);
        Assert.Equal(1000, await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'completed'"));
        await Eventually.TrueAsync(async () => await s.ScalarAsync("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0, Timeout, "the outbox to drain");
        Assert.All(requests, r => Assert.Single(s.Bus.Events[r.RequestId]));
    }

    [Fact]
    public async Task A_10_MB_response_is_stored_capped_and_never_buffered_whole()
    {
        var chunk = new byte[64 * 1024];
        Array.Fill(chunk, (byte)'x');
        await using var s = await Scenario.StartAsync(services);
        s.Downstream.Handler = async context =>
        {
            context.Response.ContentType = "text/plain";
            context.Response.ContentLength = 160 * chunk.Length;
            for (var i = 0; i < 160; i++)
                await context.Response.Body.WriteAsync(chunk);
        };
        var requests = Enumerable.Range(0, 20).Select(_ => s.NewRequest("/big", "GET", body: null)).ToList();

        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        foreach (var r in requests)
            await s.SendAsync(r);
        await s.WaitForTerminalAsync(requests.Select(r => r.RequestId).ToList(), Timeout);
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;

        Assert.All((await s.StatesAsync()).Values, st => Assert.Equal("Succeeded", st.State));
        Assert.Equal(64 * 1024, await s.ScalarAsync("SELECT max(length(response_body)) FROM dispatches"));
        Assert.Equal(64 * 1024, await s.ScalarAsync("SELECT min(length(response_body)) FROM dispatches"));
        // 20 responses of 10 MB went by; buffering any of them whole would allocate at least 200 MB.
        Assert.True(allocated < 100L * 1024 * 1024, $"allocated {allocated / (1024 * 1024)} MB while receiving 200 MB of responses");
    }
}
