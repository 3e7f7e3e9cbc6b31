using System.Globalization;

namespace Dispatcher.Bench;

/// <summary>
/// The fleet-wide rate limit, from the partner's side: three worker processes (<c>dotnet Dispatcher.Worker.dll run</c>)
/// share one destination limited to 200/s with Burst 5, so the token bucket allows at most 205 calls in any
/// 1-second window and 200 × D + 5 in any D seconds. (With Burst 10 the bucket's own bound would be 1.05 × the limit,
/// the target itself, leaving no room for the spread between a permit's grant and the call's arrival.) The queue is preloaded with more than they may send; the
/// downstream child records the arrival time of every call. The measurement window is D seconds starting 2 s after
/// the first call (three cold workers ramping up are not what is measured; the bound holds for any window).
/// Reported: the busiest 1-second sliding window over the limit (searched over every call, warm-up included) and
/// the calls in the window over what the bucket permits; the bound itself is the baseline.
/// </summary>
internal static class RateAccuracyScenario
{
    private const int Workers = 3;
    private const double Rate = 200;
    private const int Burst = 5;

    public static async Task RunAsync(BenchEnvironment env, BenchOptions options)
    {
        var seconds = options.Quick ? 8 : 20;
        const double warmup = 2_000;
        var count = Math.Max(options.CountOr(6_000, 2_500), (int)(Rate * (seconds + 2) * 1.3));
        var queue = $"bench-rate-{Guid.NewGuid():N}";
        var destination = Harness.NewName('r');
        var postgres = await env.CreateDatabaseAsync();
        var settings = new Dictionary<string, string>
        {
            [$"Dispatcher:Destinations:{destination}:BaseUrl"] = env.Downstream.BaseUrl.ToString(),
            [$"Dispatcher:Destinations:{destination}:RateLimit:PermitsPerSecond"] = Rate.ToString(CultureInfo.InvariantCulture),
            [$"Dispatcher:Destinations:{destination}:RateLimit:Burst"] = Burst.ToString(CultureInfo.InvariantCulture),
        };

        Console.Error.WriteLine($"rate-accuracy: starting {Workers} worker processes...");
        var workers = new List<WorkerChild>();
        try
        {
            // One at a time: three runtimes starting at once on two cores take long enough to hit the ready timeout.
            for (var i = 0; i < Workers; i++)
                workers.Add(await WorkerChild.StartAsync(env, postgres, queue, settings));
            Console.Error.WriteLine($"rate-accuracy: preloading {count} requests, then {seconds} s of calls...");
            var path = $"/record/{destination}";
            await Harness.PreloadAsync(env, queue, Enumerable.Range(0, count).Select(_ => Harness.Request(destination, path)).ToList());

            // Wait for the first call, then for the window to pass (the child's clock decides).
            Downstream.Stats stats;
            var waited = 0;
            while ((stats = await env.Downstream.GetStatsAsync(destination, withTimes: false)).Count == 0 && waited++ < 300)
                await Task.Delay(100);
            if (stats.Count == 0)
                throw new InvalidOperationException($"No call reached the downstream within 30 s. Worker output:\n{workers[0].Output}");
            var first = (await env.Downstream.GetStatsAsync(destination)).Times[0];
            var begin = first + warmup;
            var end = begin + (seconds * 1000.0);
            var remaining = end - stats.Now + 500;
            if (remaining > 0)
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(remaining, (seconds + 8) * 1000.0)));
            stats = await env.Downstream.GetStatsAsync(destination);
            var scrapes = await Task.WhenAll(workers.Select(w => w.ScrapeAsync()));

            var all = stats.Times.Where(t => t < end).ToArray();
            var times = all.Where(t => t >= begin).ToArray();
            var (busiest, busiestAt) = BusiestWindow(all, 1000);
            var (windowBusiest, _) = BusiestWindow(times, 1000);
            var permitted = (Rate * seconds) + Burst;
            var perSecond = Enumerable.Range(0, seconds).Select(s => times.Count(t => t >= begin + (s * 1000.0) && t < begin + ((s + 1) * 1000.0)));
            var warmupCalls = all.Length - times.Length;

            Console.WriteLine();
            Console.WriteLine($"### rate-accuracy ({Workers} worker processes, limit {Rate:0}/s with Burst {Burst}, {seconds} s after a {warmup / 1000:0} s warm-up, " +
                $"{count:N0} requests preloaded, {Environment.ProcessorCount} cores)");
            Console.WriteLine();
            Console.WriteLine("| | busiest 1-s window | over the limit (200/s) | calls in the window | over permitted |");
            Console.WriteLine("|---|---:|---:|---:|---:|");
            Console.WriteLine($"| permitted by the token bucket (baseline): rate + burst; rate × {seconds} s + burst | {Rate + Burst:0} | {(Rate + Burst) / Rate:0.00} | {permitted:N0} | 1.00 |");
            Console.WriteLine($"| measured at the downstream, {Workers} workers, every call from the first | {busiest} (at +{busiestAt / 1000:0.0} s) | **{busiest / Rate:0.00}** | {times.Length:N0} | **{times.Length / permitted:0.00}** |");
            Console.WriteLine($"| measured, the {seconds} s window only | {windowBusiest} | {windowBusiest / Rate:0.00} | | |");
            Console.WriteLine();
            Console.WriteLine($"Calls per second of the window: {string.Join(", ", perSecond)} (and {warmupCalls} in the {warmup / 1000:0} s warm-up before it). " +
                $"Burst {Burst} makes the bucket's own bound for a 1-s window {Rate + Burst:0}, that is {(Rate + Burst) / Rate:0.00} × the limit.");
            Console.WriteLine();
            Console.WriteLine("| worker | successful attempts (whole run) | permits leased | of those unused | parked: rate limit | parked: MaxConcurrency | peak RSS MB |");
            Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
            for (var i = 0; i < workers.Count; i++)
            {
                var d = $"destination=\"{destination}\"";
                Console.WriteLine($"| {i + 1} | {scrapes[i].Sum("dispatcher_attempts_total", d, "result=\"Success\""):N0} | " +
                    $"{scrapes[i].Sum("dispatcher_rate_limit_permits_total", d, "fate=\"leased\""):N0} | " +
                    $"{scrapes[i].Sum("dispatcher_rate_limit_permits_total", d, "fate=\"unused\""):N0} | " +
                    $"{scrapes[i].Sum("dispatcher_parked_total", d, "reason=\"rate limit\""):N0} | " +
                    $"{scrapes[i].Sum("dispatcher_parked_total", d, "reason=\"MaxConcurrency reached\""):N0} | " +
                    $"{workers[i].ReadMemory().Peak / 1048576.0:0} |");
            }
            Console.WriteLine();
            Console.WriteLine($"Busiest window over the limit: **{busiest / Rate:0.00}** (target at most 1.05: {Harness.Pass(busiest / Rate <= 1.05)}); " +
                $"calls over permitted: **{times.Length / permitted:0.00}** (target at least 0.95: {Harness.Pass(times.Length / permitted >= 0.95)}). " +
                $"Peak calls in flight at the downstream: {stats.MaxInFlight}.");
        }
        finally
        {
            await Task.WhenAll(workers.Select(w => w.DisposeAsync().AsTask()));
            await Harness.DeleteQueuesAsync(env, queue);
        }
    }

    /// <summary>The most calls in any window of <paramref name="width"/> ms (sorted times), and where it starts relative to the first.</summary>
    private static (int Count, double Start) BusiestWindow(double[] times, double width)
    {
        var best = 0;
        var at = 0.0;
        for (int i = 0, j = 0; i < times.Length; i++)
        {
            while (j < times.Length && times[j] < times[i] + width)
                j++;
            if (j - i > best)
            {
                best = j - i;
                at = times[i] - times[0];
            }
        }
        return (best, at);
    }
}
