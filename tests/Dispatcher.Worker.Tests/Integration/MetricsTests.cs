using System.Globalization;
using System.Text.RegularExpressions;
using Dispatcher.Worker.Tests.Infrastructure;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed class MetricsTests(ServicesFixture services)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task After_a_known_scenario_metrics_carry_every_spec_metric_with_the_right_values()
    {
        await using var s = await Scenario.StartAsync(services);
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        s.Downstream.Handler = context =>
        {
            var path = context.Request.Path.Value!;
            var n = seen.AddOrUpdate(context.Request.Headers["Idempotency-Key"].ToString(), 1, (_, v) => v + 1);
            context.Response.StatusCode = path switch
            {
                "/bad" => 400,
                "/flaky" when n == 1 => 503,
                _ => 200,
            };
            return Task.CompletedTask;
        };
        var requests = new[] { s.NewRequest("/ok"), s.NewRequest("/ok"), s.NewRequest("/ok"), s.NewRequest("/bad"), s.NewRequest("/flaky") };
        foreach (var r in requests)
            await s.SendAsync(r);
        await s.WaitForTerminalAsync([.. requests.Select(r => r.RequestId)], Timeout);

        using var http = new HttpClient();
        var d = $"destination=\"{s.Destination}\"";
        string text = "";
        // Dead letters and queue depth come from the heartbeat (every 5 s).
        await Eventually.TrueAsync(async () =>
        {
            text = await http.GetStringAsync($"{s.Worker!.AdminUrl}/metrics");
            return Value(text, "dispatcher_dead_letters", d) == 1;
        }, Timeout, "the dead-letter gauge");

        Assert.Equal(4, Value(text, "dispatcher_dispatches_total", d, "outcome=\"Succeeded\"", "reason=\"\""));
        Assert.Equal(1, Value(text, "dispatcher_dispatches_total", d, "outcome=\"DeadLettered\"", "reason=\"NonRetriableStatus\""));
        Assert.Equal(4, Value(text, "dispatcher_attempts_total", d, "result=\"Success\""));
        Assert.Equal(2, Value(text, "dispatcher_attempts_total", d, "result=\"HttpError\""));
        Assert.Equal(6, Value(text, "dispatcher_attempt_duration_seconds_count", d));
        Assert.Equal(5, Value(text, "dispatcher_end_to_end_seconds_count", d));
        Assert.Equal(1, Value(text, "dispatcher_retries_scheduled_total", d));
        Assert.Equal(0, Value(text, "dispatcher_inflight", d));
        Assert.Equal(0, Value(text, "dispatcher_circuit_state", d));
        Assert.NotNull(Value(text, "dispatcher_outbox_pending"));
        Assert.NotNull(Value(text, "dispatcher_queue_depth", $"queue=\"{s.Queue}\""));
        // Latency buckets fit HTTP calls: from 1 ms to 30 s.
        Assert.Contains($"dispatcher_attempt_duration_seconds_bucket{{{d},le=\"0.001\"}}", text, StringComparison.Ordinal);
        Assert.Contains($"dispatcher_attempt_duration_seconds_bucket{{{d},le=\"30\"}}", text, StringComparison.Ordinal);
    }

    /// <summary>The value of the one sample of <paramref name="metric"/> whose labels include all of <paramref name="labels"/>.</summary>
    private static double? Value(string exposition, string metric, params string[] labels)
    {
        foreach (var line in exposition.Split('\n'))
        {
            var match = Regex.Match(line, @"^(?<name>[a-z_]+)(\{(?<labels>[^}]*)\})? (?<value>\S+)$");
            if (!match.Success || match.Groups["name"].Value != metric)
                continue;
            var present = match.Groups["labels"].Value;
            if (labels.All(l => present.Contains(l, StringComparison.Ordinal)))
                return double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture);
        }
        return null;
    }
}
