using Dispatcher.Worker.Status;
using Dispatcher.Worker.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed class StatusTests(ServicesFixture services)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Status_shows_per_destination_calls_in_flight_claims_retries_held_back_requests_and_dead_letters()
    {
        await using var flaky = await Downstream.StartAsync();
        await using var s = await Scenario.StartAsync(services, new Dictionary<string, string>
        {
            ["Dispatcher:Destinations:{destination}:MaxConcurrency"] = "1",
            // Queue wait and hold-back delay: a quarter of the attempt timeout, 5 s here (longer than this test looks).
            ["Dispatcher:Destinations:{destination}:AttemptTimeout"] = "00:00:20",
            ["Dispatcher:Destinations:flaky:BaseUrl"] = flaky.BaseUrl.ToString(),
        });
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        s.Downstream.Handler = async context =>
        {
            await release.Task.WaitAsync(context.RequestAborted);
            context.Response.StatusCode = 200;
        };
        flaky.Handler = context =>
        {
            context.Response.StatusCode = 503;
            context.Response.Headers.RetryAfter = "60";
            return Task.CompletedTask;
        };

        try
        {
            // One call in flight, one request waiting in the destination's queue (both claimed), three held back.
            await s.SendAsync(s.NewRequest("/orders/first"));
            await Eventually.TrueAsync(() => s.Downstream.Calls.Count == 1, Timeout, "the first call in flight");
            await s.SendAsync(s.NewRequest("/orders/queued"));
            await Eventually.TrueAsync(async () => await s.ScalarAsync("SELECT count(*) FROM dispatches") == 2, Timeout, "the second request claimed");
            for (var i = 0; i < 3; i++)
                await s.SendAsync(s.NewRequest($"/orders/{i}"));
            // A retry waiting 60 s (503 + Retry-After) and a dead letter (unknown destination).
            await s.SendAsync(s.NewRequest("/flaky") with { Destination = "flaky" });
            await s.SendAsync(s.NewRequest("/nowhere") with { Destination = "nowhere" });

            var reporter = s.Worker!.Services.GetRequiredService<StatusReporter>();
            StatusReport report = null!;
            // Calls in flight come from the workers' heartbeats (every 5 s).
            await Eventually.TrueAsync(async () =>
            {
                report = await reporter.BuildAsync(CancellationToken.None);
                return Find(report, s.Destination) is { InFlight: 1, HeldBack: 3 } && Find(report, "flaky") is { WaitingRetries: 1 }
                    && Find(report, "nowhere") is { DeadLetters: 1 };
            }, Timeout, "the status to show the call in flight, the held-back requests, the retry and the dead letter");

            var mine = Find(report, s.Destination)!;
            Assert.Equal("closed", mine.Breaker);
            Assert.Equal(2, mine.InProgress);
            Assert.Equal(0, mine.WaitingRetries);
            Assert.Equal(0, mine.DeadLetters);
            Assert.Equal(1, mine.Workers);
            // The scheduled retry is a waiting retry, not a held-back request.
            Assert.Equal(0, Find(report, "flaky")!.HeldBack);
            Assert.Equal(1, report.LiveWorkers);
            Assert.True(report.OutboxPending >= 4, $"{report.OutboxPending} pending outbox rows: 3 held back and 1 retry at least");
            Assert.NotNull(report.Queue);
            Assert.Equal(1u, report.Queue!.Consumers);

            // The CLI prints the same report (its numbers move on meanwhile: the queued request parks after 5 s and
            // the held-back ones come back), one row per destination when piped.
            var table = await s.RunCliAsync(["status"]);
            Assert.True(table.Contains("Held back", StringComparison.Ordinal), table);
            Assert.Single(table.Split('\n'), line => line.Contains(s.Destination, StringComparison.Ordinal) && line.Contains("closed", StringComparison.Ordinal));
            var json = await s.RunCliAsync(["status", "--json"]);
            Assert.Contains("\"heldBack\":", json, StringComparison.Ordinal);
        }
        finally
        {
            release.TrySetResult();
        }
    }

    private static DestinationStatus? Find(StatusReport report, string destination) =>
        report.Destinations.FirstOrDefault(d => string.Equals(d.Destination, destination, StringComparison.OrdinalIgnoreCase));
}
