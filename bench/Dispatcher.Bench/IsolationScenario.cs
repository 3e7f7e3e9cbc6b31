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
/// preloaded queue on a fresh database, after an unmeasured warm-up phase, measured as the healthy destination's steady rate (10 %–90 % of its
/// completions).
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
        Console.Error.WriteLine($"isolation: healthy alone, {healthy} requests...");
        var alone = await PhaseAsync(env, healthy, 0);
        Console.Error.WriteLine($"isolation: healthy {healthy} + hanging {hanging}, interleaved...");
        var mixed = await PhaseAsync(env, healthy, hanging);
        Console.Error.WriteLine($"isolation: control, healthy {healthy} + {hanging} to a second instant destination, interleaved...");
        var control = await PhaseAsync(env, healthy, hanging, otherHangs: false);

        Console.WriteLine();
        Console.WriteLine($"### isolation ({healthy:N0} healthy requests, {hanging:N0} hanging; worker MaxConcurrency {WorkerConcurrency}, in the bench process, {Environment.ProcessorCount} cores)");
        Console.WriteLine();
        Console.WriteLine("| run | healthy dispatches/s (steady, 10–90 %) | healthy done | wall s | other destination: attempts (timed out) | other: parked at MaxConcurrency / circuit open | other: dead-lettered | healthy: parked |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        Row("healthy alone (baseline)", alone);
        Row("healthy + hanging interleaved", mixed);
        Row($"control: healthy + {hanging:N0} to a second instant destination, interleaved", control);
        Console.WriteLine();
        var ratio = mixed.Rate / alone.Rate;
        Console.WriteLine($"Healthy rate with the hanging destination loaded / alone: **{ratio:0.00}** (target at least 0.9: {Harness.Pass(ratio >= 0.9)}). " +
            $"With the hanging destination / with the instant one (the hanging destination's own effect): {mixed.Rate / control.Rate:0.00}.");
        if (!alone.Progress.Reached || !mixed.Progress.Reached || !control.Progress.Reached)
            Console.WriteLine($"(stopped at the {PhaseLimit.TotalSeconds:0} s limit before every healthy request was done)");

        static void Row(string name, Phase p) =>
            Console.WriteLine($"| {name} | {p.Rate:N0} | {p.Progress.Final:N0} | {p.Progress.Elapsed.TotalSeconds:0.0} | {p.HangingAttempts:N0} ({p.HangingTimeouts:N0}) | " +
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
