using System.Diagnostics;
using Dispatcher.Contracts;
using Dispatcher.Worker.Observability;
using Dispatcher.Worker.Resilience;
using Npgsql;

namespace Dispatcher.Bench;

/// <summary>
/// What a backlog at a destination that stays down costs the machine. One worker (in this process, MaxConcurrency 64)
/// and one destination answering 503 to every call (MaxConcurrency 16, breaker at the defaults but a 5-s break,
/// retries that never run out), a preloaded backlog for it, watched in 10-s windows: how many requests a second the
/// worker sends back (held back or parked: each a receive, an outbox row and a publish), how many calls it makes,
/// and the CPU of the whole box (worker, PostgreSQL, RabbitMQ). Then the destination recovers (answers 200), and the
/// scenario times how long the whole backlog takes to succeed. Not one of the issue's targets: the breaker's returns
/// are spread over as long as the destination has been down (docs/design.md), so the churn should fall as the outage
/// lasts, where a fixed line would keep the backlog going round once a break and a line; and once the breaker closes
/// the backlog is brought forward at the destination's pace.
/// </summary>
internal static class OutageScenario
{
    private const int WorkerConcurrency = 64;
    private static readonly TimeSpan Window = TimeSpan.FromSeconds(10);

    public static async Task RunAsync(BenchEnvironment env, BenchOptions options)
    {
        var count = options.CountOr(20_000, 5_000);
        var duration = options.Quick ? TimeSpan.FromSeconds(30) : TimeSpan.FromSeconds(120);
        var queue = $"bench-outage-{Guid.NewGuid():N}";
        var down = Harness.NewName('d');
        var postgres = await env.CreateDatabaseAsync();
        Console.Error.WriteLine($"outage: preloading {count:N0} requests for a destination answering 503...");
        await Harness.PreloadAsync(env, queue, Enumerable.Range(0, count).Select(_ => Harness.Request(down, $"/down-until-up/{down}")).ToList());
        var succeeded = DispatcherMetrics.Dispatches.WithLabels(down, nameof(DispatchOutcome.Succeeded), "");
        Progress? drained = null;
        double closedAfter = double.NaN;

        var windows = new List<(double Seconds, double Breaker, double Cap, double Calls, double Retries, double CpuPercent, string CpuSplit, long OutboxPending)>();
        await using (var worker = await InProcessWorker.StartAsync(env, postgres, queue, WorkerConcurrency,
            InProcessWorker.Destination(down, env.Downstream.BaseUrl,
                ("MaxConcurrency", "16"), ("RateLimit:PermitsPerSecond", "1000000"),
                ("CircuitBreaker:BreakDuration", "00:00:05"),
                ("Retry:MaxAttempts", "100000"), ("Retry:BaseDelay", "00:00:00.100"), ("Retry:MaxDelay", "00:00:02"))))
        {
            Console.Error.WriteLine($"outage: watching for {duration.TotalSeconds:0} s...");
            var start = Stopwatch.GetTimestamp();
            var last = Read(down);
            while (Stopwatch.GetElapsedTime(start) < duration)
            {
                var cpu = SystemCpu.Start();
                var from = Stopwatch.GetTimestamp();
                await Task.Delay(Window);
                var seconds = Stopwatch.GetElapsedTime(from).TotalSeconds;
                var now = Read(down);
                var groups = cpu.Stop();
                var used = groups.Values.Sum();
                var split = string.Join(", ", groups.OrderByDescending(g => g.Value)
                    .Select(g => $"{g.Key.Split(' ')[0]} {100 * g.Value / seconds / Environment.ProcessorCount:0}"));
                windows.Add((Stopwatch.GetElapsedTime(start).TotalSeconds,
                    (now.Breaker - last.Breaker) / seconds, (now.Cap - last.Cap) / seconds, (now.Calls - last.Calls) / seconds,
                    (now.Retries - last.Retries) / seconds, 100 * used / seconds / Environment.ProcessorCount, split,
                    await PendingAsync(postgres)));
                last = now;
            }

            Console.Error.WriteLine("outage: the destination recovers...");
            await env.Downstream.BringUpAsync(down);
            var recovered = Stopwatch.GetTimestamp();
            var circuit = DispatcherMetrics.CircuitState.WithLabels(down);
            drained = await Progress.WaitAsync(() =>
            {
                if (double.IsNaN(closedAfter) && circuit.Value == 0)
                    closedAfter = Stopwatch.GetElapsedTime(recovered).TotalSeconds;
                return succeeded.Value;
            }, count, TimeSpan.FromSeconds(150));
            await worker.StopAsync();
        }
        await Harness.DeleteQueuesAsync(env, queue);

        Console.WriteLine();
        Console.WriteLine($"### outage ({count:N0} requests for a destination answering 503 to every call, break 5 s, watched for {duration.TotalSeconds:0} s; worker MaxConcurrency {WorkerConcurrency}, in the bench process, {Environment.ProcessorCount} cores)");
        Console.WriteLine();
        Console.WriteLine("| window ending at s | sent back by the breaker /s | sent back at the cap /s | calls /s | retries scheduled /s | CPU of the box (worker, PostgreSQL, RabbitMQ, downstream) | of which, % of the box | outbox rows pending at the end |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---|---:|");
        foreach (var w in windows)
            Console.WriteLine($"| {w.Seconds:0} | {w.Breaker:N0} | {w.Cap:N0} | {w.Calls:N1} | {w.Retries:N1} | {w.CpuPercent:0} % | {w.CpuSplit} | {w.OutboxPending:N0} |");
        Console.WriteLine();
        if (drained is not null)
        {
            Console.WriteLine($"Recovery: the breaker closed {closedAfter:0.0} s after the destination did; {drained.Final:N0} of {count:N0} requests " +
                $"had succeeded {drained.Elapsed.TotalSeconds:0.0} s after it ({(drained.Reached ? "all" : "stopped at the limit")}; half by {drained.SecondsTo(0.5):0.0} s, " +
                $"90 % by {drained.SecondsTo(0.9):0.0} s). Without bringing the backlog forward, what was sent back last would come back up to " +
                $"{DestinationPolicy.MaxOutageSpread.TotalSeconds:0} s later.");
            Console.WriteLine();
        }
        if (windows.Count >= 3)
        {
            var early = windows[1];
            var late = windows[^1];
            Console.WriteLine($"Requests sent back a second, second window against the last: {early.Breaker + early.Cap:N0} against {late.Breaker + late.Cap:N0}; " +
                $"CPU of the box {early.CpuPercent:0} % against {late.CpuPercent:0} %.");
        }
    }

    private static (double Breaker, double Cap, double Calls, double Retries) Read(string destination) =>
    (
        DispatcherMetrics.Parked.WithLabels(destination, DestinationPolicy.CircuitOpen).Value,
        DispatcherMetrics.Parked.WithLabels(destination, DestinationPolicy.AtCapacity).Value,
        new[] { "Success", "HttpError", "Timeout", "ConnectionError" }.Sum(r => DispatcherMetrics.Attempts.WithLabels(destination, r).Value),
        DispatcherMetrics.RetriesScheduled.WithLabels(destination).Value
    );

    private static async Task<long> PendingAsync(string postgres)
    {
        await using var connection = new NpgsqlConnection(postgres);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand("SELECT count(*) FROM outbox WHERE published_at IS NULL", connection);
        return Convert.ToInt64(await cmd.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
