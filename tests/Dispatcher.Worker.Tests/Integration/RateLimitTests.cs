using System.Globalization;
using Dispatcher.Worker.Tests.Infrastructure;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed class RateLimitTests(ServicesFixture services)
{
    private const int Rate = 20, Burst = 5;
    private static readonly TimeSpan Measured = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Two_worker_processes_together_never_call_a_destination_faster_than_its_rate_plus_burst_yet_use_most_of_it()
    {
        var run = await RunAsync(warmUp: true);
        var limit = Rate + Burst + run.Allowance;

        // Every 1-second window (one starting at each call) holds at most one second's permits plus the burst, as the
        // downstream saw the calls arrive (give or take what a stall of this process bunched together) and as the
        // workers recorded their start.
        var (arrived, arrivedFrom) = BusiestSecond(run.Arrivals);
        Assert.True(arrived <= limit,
            $"{arrived} calls arrived in the second from {arrivedFrom:HH:mm:ss.fff} (first call {run.Arrivals[0]:HH:mm:ss.fff}); " +
            $"the limit allows {Rate} + {Burst} (+{run.Allowance} for a stall of {run.Stall.TotalMilliseconds:0} ms in this process)");
        // The workers' own record is not bunched by this process's stalls: 1 call of tolerance only.
        var (started, startedFrom) = BusiestSecond(run.Starts);
        Assert.True(started <= Rate + Burst + 1,
            $"{started} attempts started in the second from {startedFrom:HH:mm:ss.fff}; the limit allows {Rate} + {Burst}");
        // And over the whole 15 s: most of the permits were used, and no more than there were.
        Assert.True(run.Arrivals.Count >= 0.9 * Rate * Measured.TotalSeconds && run.Arrivals.Count <= Rate * Measured.TotalSeconds + limit - Rate,
            $"{run.Arrivals.Count} calls in {Measured.TotalSeconds:0} s at {Rate}/s + {Burst} ({run.Arrivals.Count / Measured.TotalSeconds:0.0}/s)");

        // Both workers took their share: the limit held for the two together, not for one doing all the work.
        Assert.True(Math.Min(run.ByFirst, run.BySecond) >= 0.2 * (run.ByFirst + run.BySecond),
            $"the workers made {run.ByFirst} and {run.BySecond} calls");
    }

    [Fact]
    public async Task Freshly_started_worker_processes_facing_a_backlog_do_not_exceed_rate_plus_burst_in_their_first_second()
    {
        var run = await RunAsync(warmUp: false);

        // The first second from the first call, as the workers recorded it (exact) and as the downstream saw it
        // (give or take what a stall of this test process bunched together, as in the test above, and what a cold
        // worker's first calls bunch: they reach the downstream 150-200 ms after they start (its connection and its
        // first use of the HTTP client's code; measured), while the next ones arrive at once, so the downstream's
        // first second holds the calls of more than one second of starts: up to 29 of a limit of 20 + 5 were seen).
        var arrived = run.Arrivals.Count(at => at < run.Arrivals[0].AddSeconds(1));
        var started = run.Starts.Count(at => at < run.Starts[0].AddSeconds(1));
        var firstCallLate = run.Arrivals[0] - run.Starts[0];
        var coldAllowance = firstCallLate > TimeSpan.Zero ? (int)Math.Ceiling(Rate * firstCallLate.TotalSeconds) : 0;
        Assert.True(started <= Rate + Burst,
            $"in the first second {started} attempts started; the limit allows {Rate} + {Burst}");
        Assert.True(arrived <= Rate + Burst + run.Allowance + coldAllowance,
            $"in the first second {arrived} calls arrived; the limit allows {Rate} + {Burst} (+{run.Allowance} at the downstream for a stall " +
            $"of {run.Stall.TotalMilliseconds:0} ms in this process, +{coldAllowance} for the first call arriving {firstCallLate.TotalMilliseconds:0} ms after it started)");
    }

    private sealed record Run(List<DateTimeOffset> Arrivals, List<DateTimeOffset> Starts, double ByFirst, double BySecond, TimeSpan Stall)
    {
        /// <summary>
        /// Calls bunched by timing noise: 1 for clock granularity, plus the permits of the longest stall measured in
        /// this process (its downstream recorded the calls of a stall together, right after it).
        /// </summary>
        public int Allowance => 1 + (int)Math.Ceiling(Rate * Stall.TotalSeconds);
    }

    /// <summary>
    /// Two worker processes, a destination limited to 20/s with a burst of 5, 400 requests; the first
    /// <see cref="Measured"/> of calls from the first one.
    /// </summary>
    private async Task<Run> RunAsync(bool warmUp)
    {
        await using var s = await Scenario.StartAsync(services, new Dictionary<string, string>
        {
            ["Dispatcher:Destinations:{destination}:RateLimit:PermitsPerSecond"] = Rate.ToString(CultureInfo.InvariantCulture),
            ["Dispatcher:Destinations:{destination}:RateLimit:Burst"] = Burst.ToString(CultureInfo.InvariantCulture),
            ["Dispatcher:Destinations:warmup:RateLimit:PermitsPerSecond"] = "100000",
        }, startWorker: false);
        s.Settings["Dispatcher:Destinations:warmup:BaseUrl"] = s.Downstream.BaseUrl.ToString();
        s.Downstream.Handler = context =>
        {
            context.Response.StatusCode = 200;
            return Task.CompletedTask;
        };
        await using var first = await WorkerProcess.StartAsync(s.Settings);
        await using var second = await WorkerProcess.StartAsync(s.Settings);

        // The downstream's own first requests are slow (JIT in this process): not the worker's doing.
        using (var http = new HttpClient())
        {
            for (var i = 0; i < 20; i++)
                (await http.GetAsync(new Uri(s.Downstream.BaseUrl, "/warmup"))).EnsureSuccessStatusCode();
        }
        var warmupIds = new HashSet<Guid>();
        if (warmUp)
        {
            // Both workers' call path, through another destination on the same downstream.
            var warmup = Enumerable.Range(0, 40).Select(i => s.NewRequest($"/warmup/{i}") with { Destination = "warmup" }).ToList();
            foreach (var r in warmup)
                await s.SendAsync(r);
            warmupIds.UnionWith(warmup.Select(r => r.RequestId));
            await s.WaitForTerminalAsync(warmupIds, TimeSpan.FromSeconds(30));
        }

        await using var stalls = StallMeter.Start();
        foreach (var r in Enumerable.Range(0, 400).Select(i => s.NewRequest($"/orders/{i}")))
            await s.SendAsync(r);
        IEnumerable<DateTimeOffset> Limited() =>
            s.Downstream.Calls.Where(c => c.PathAndQuery.StartsWith("/orders/", StringComparison.Ordinal)).Select(c => c.At);
        await Eventually.TrueAsync(() => Limited().Any(), TimeSpan.FromSeconds(30), "a first call");
        var start = Limited().Min();
        await Eventually.TrueAsync(() => Limited().Any(at => at >= start + Measured), TimeSpan.FromSeconds(40),
            $"calls for {Measured.TotalSeconds:0} s after the first");

        var arrivals = Limited().Where(at => at < start + Measured).Order().ToList();
        var starts = (await s.AttemptsAsync())
            .Where(a => !warmupIds.Contains(a.RequestId))
            .Select(a => a.StartedAt).Order().ToList();
        starts = starts.Where(at => at < starts[0] + Measured).ToList();
        return new Run(arrivals, starts, await AttemptsMadeAsync(first, s.Destination), await AttemptsMadeAsync(second, s.Destination), stalls.Worst);
    }

    /// <summary>The most instants in any half-open 1-second window starting at one of them (sorted input).</summary>
    private static (int Count, DateTimeOffset From) BusiestSecond(List<DateTimeOffset> sorted)
    {
        var busiest = (Count: 0, From: DateTimeOffset.MinValue);
        for (int i = 0, j = 0; i < sorted.Count; i++)
        {
            while (j < sorted.Count && sorted[j] < sorted[i].AddSeconds(1))
                j++;
            if (j - i > busiest.Count)
                busiest = (j - i, sorted[i]);
        }
        return busiest;
    }

    /// <summary>dispatcher_attempts_total of one destination, all results, from a worker's /metrics.</summary>
    private static async Task<double> AttemptsMadeAsync(WorkerProcess worker, string destination)
    {
        using var http = new HttpClient();
        var metrics = await http.GetStringAsync(new Uri($"{worker.AdminUrl}/metrics"));
        var prefix = $"dispatcher_attempts_total{{destination=\"{destination}\"";
        return metrics.Split('\n')
            .Where(line => line.StartsWith(prefix, StringComparison.Ordinal))
            .Sum(line => double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
    }
}
