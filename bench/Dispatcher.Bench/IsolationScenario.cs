using Dispatcher.Contracts;
using Dispatcher.Worker.Observability;
using Dispatcher.Worker.Resilience;

namespace Dispatcher.Bench;

/// <summary>
/// A hanging destination must not slow a healthy one down. One worker (in this process, MaxConcurrency 64) with
/// two destinations: "hanging" (<c>/delay/60000</c>, AttemptTimeout 2 s, MaxConcurrency 16) and "healthy" (answers
/// at once, MaxConcurrency 64). Baseline: the healthy requests alone; then the same number of healthy requests
/// interleaved with a fifth as many hanging ones (one in six messages) in the same queue. A control run interleaves
/// the same number of requests to a second, instant destination instead: on a CPU-bound machine the extra messages
/// cost the healthy destination something whatever they are, and the control shows how much. Each run from a
/// preloaded queue on a fresh database, after an unmeasured warm-up phase, measured as the healthy destination's
/// steady rate (10 %–90 % of its completions); three rounds of the three runs in turn, each round starting one later
/// (one round with --quick), compared by their medians.
/// </summary>
internal static class IsolationScenario
{
    private const int WorkerConcurrency = 64;
    private static readonly TimeSpan PhaseLimit = TimeSpan.FromSeconds(60);

    public static async Task RunAsync(BenchEnvironment env, BenchOptions options)
    {
        var healthy = options.CountOr(10_000, 2_500);
        var hanging = healthy / 5;

        // The worker runs in this process: the first phase would also pay for JIT compilation and warm-up.
        Console.Error.WriteLine("isolation: warm-up (not measured)...");
        await PhaseAsync(env, healthy / 5, hanging / 5);
        // Rounds of the three phases in turn, compared by their medians: a single phase's rate here swings by a
        // quarter from one run to the next (the alone baseline measured 1,849 and 2,581/s in two runs of the same
        // code), so a ratio of two single phases said more about the noise than about the hanging destination.
        var rounds = options.Quick ? 1 : 3;
        var alone = new List<Phase>();
        var mixed = new List<Phase>();
        var control = new List<Phase>();
        for (var round = 1; round <= rounds; round++)
        {
            // In turn, starting one later each round: no run always has the same place (a drift over the rounds, such
            // as PostgreSQL's checkpoints or autovacuum, would otherwise favour one of them).
            for (var i = 0; i < 3; i++)
            {
                switch ((round - 1 + i) % 3)
                {
                    case 0:
                        Console.Error.WriteLine($"isolation: round {round} of {rounds}: healthy alone, {healthy} requests...");
                        alone.Add(await PhaseAsync(env, healthy, 0));
                        break;
                    case 1:
                        Console.Error.WriteLine($"isolation: round {round} of {rounds}: healthy {healthy} + hanging {hanging}, interleaved...");
                        mixed.Add(await PhaseAsync(env, healthy, hanging));
                        break;
                    default:
                        Console.Error.WriteLine($"isolation: round {round} of {rounds}: control, healthy {healthy} + {hanging} to a second instant destination, interleaved...");
                        control.Add(await PhaseAsync(env, healthy, hanging, otherHangs: false));
                        break;
                }
            }
        }

        Console.WriteLine();
        Console.WriteLine($"### isolation ({healthy:N0} healthy requests, {hanging:N0} hanging; worker MaxConcurrency {WorkerConcurrency}, in the bench process, {rounds} round(s) of the three runs in turn, {Environment.ProcessorCount} cores)");
        Console.WriteLine();
        Console.WriteLine("| run | round | healthy dispatches/s (steady, 10–90 %) | healthy done | wall s | other destination: attempts (timed out) | other: parked at MaxConcurrency / circuit open | other: dead-lettered | healthy: parked |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (var i = 0; i < rounds; i++)
        {
            Row("healthy alone (baseline)", i + 1, alone[i]);
            Row("healthy + hanging interleaved", i + 1, mixed[i]);
            Row($"control: healthy + {hanging:N0} to a second instant destination, interleaved", i + 1, control[i]);
        }
        Console.WriteLine();
        var aloneRate = Median(alone);
        var mixedRate = Median(mixed);
        var controlRate = Median(control);
        var ratio = aloneRate > 0 ? mixedRate / aloneRate : 0;
        Console.WriteLine($"Medians: alone {aloneRate:N0}, with the hanging destination {mixedRate:N0}, with the instant one {controlRate:N0} healthy dispatches/s. " +
            $"Healthy rate with the hanging destination loaded / alone: **{ratio:0.00}** (target at least 0.9: {Harness.Pass(ratio >= 0.9)}; " +
            $"round by round {string.Join(", ", alone.Select((a, i) => (mixed[i].Rate / a.Rate).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture)))}). " +
            $"With the hanging destination / with the instant one (the hanging destination's own effect): {mixedRate / controlRate:0.00}.");
        if (alone.Concat(mixed).Concat(control).Any(p => !p.Progress.Reached))
            Console.WriteLine($"(a run stopped at the {PhaseLimit.TotalSeconds:0} s limit before every healthy request was done)");

        static double Median(List<Phase> phases)
        {
            var rates = phases.Select(p => p.Rate).Order().ToList();
            return rates.Count % 2 == 1 ? rates[rates.Count / 2] : (rates[rates.Count / 2 - 1] + rates[rates.Count / 2]) / 2;
        }

        static void Row(string name, int round, Phase p) =>
            Console.WriteLine($"| {name} | {round} | {p.Rate:N0} | {p.Progress.Final:N0} | {p.Progress.Elapsed.TotalSeconds:0.0} | {p.HangingAttempts:N0} ({p.HangingTimeouts:N0}) | " +
                $"{p.ParkedAtCap:N0} / {p.ParkedOpen:N0} | {p.HangingDeadLettered:N0} | {p.HealthyParked:N0} |");
    }

    private sealed record Phase(double Rate, Progress Progress, double HangingAttempts, double HangingTimeouts, double ParkedAtCap, double ParkedOpen, double HangingDeadLettered, double HealthyParked);

    private static async Task<Phase> PhaseAsync(BenchEnvironment env, int healthyCount, int hangingCount, bool otherHangs = true)
    {
        var queue = $"bench-iso-{Guid.NewGuid():N}";
        var healthy = Harness.NewName('h');
        var hanging = Harness.NewName('x');
        var postgres = await env.CreateDatabaseAsync();
        var requests = new List<DispatchRequest>(healthyCount + hangingCount);
        for (int h = 0, x = 0; h < healthyCount || x < hangingCount;)
        {
            // One hanging request after every five healthy ones, while both last.
            if (x < hangingCount && (requests.Count % 6 == 5 || h >= healthyCount))
            {
                requests.Add(Harness.Request(hanging, otherHangs ? "/delay/60000" : "/x"));
                x++;
            }
            else
            {
                requests.Add(Harness.Request(healthy, "/x"));
                h++;
            }
        }
        await Harness.PreloadAsync(env, queue, requests);

        var succeeded = DispatcherMetrics.Dispatches.WithLabels(healthy, nameof(DispatchOutcome.Succeeded), "");
        await using var worker = await InProcessWorker.StartAsync(env, postgres, queue, WorkerConcurrency,
            InProcessWorker.Destination(healthy, env.Downstream.BaseUrl,
                    ("MaxConcurrency", $"{WorkerConcurrency}"), ("RateLimit:PermitsPerSecond", "1000000"))
                .Concat(otherHangs
                    ? InProcessWorker.Destination(hanging, env.Downstream.BaseUrl,
                        ("MaxConcurrency", "16"), ("AttemptTimeout", "00:00:02"), ("RateLimit:PermitsPerSecond", "1000000"))
                    : InProcessWorker.Destination(hanging, env.Downstream.BaseUrl,
                        ("MaxConcurrency", $"{WorkerConcurrency}"), ("RateLimit:PermitsPerSecond", "1000000"))));
        var progress = await Progress.WaitAsync(() => succeeded.Value, healthyCount, PhaseLimit);
        await worker.StopAsync();
        await Harness.DeleteQueuesAsync(env, queue);

        var attempts = DispatcherMetrics.Attempts;
        return new Phase(
            progress.SteadyRate(),
            progress,
            new[] { "Success", "HttpError", "Timeout", "ConnectionError" }.Sum(r => attempts.WithLabels(hanging, r).Value),
            attempts.WithLabels(hanging, "Timeout").Value,
            DispatcherMetrics.Parked.WithLabels(hanging, "MaxConcurrency reached").Value,
            DispatcherMetrics.Parked.WithLabels(hanging, "circuit open").Value,
            new[] { "RetriesExhausted", "DeadlineExceeded" }.Sum(r => DispatcherMetrics.Dispatches.WithLabels(hanging, nameof(DispatchOutcome.DeadLettered), r).Value),
            DispatcherMetrics.Parked.WithLabels(healthy, DestinationPolicy.AtCapacity).Value + DispatcherMetrics.Parked.WithLabels(healthy, DestinationPolicy.CircuitOpen).Value);
    }
}
