using System.Diagnostics;
using System.Net;
using Dispatcher.Contracts;
using Dispatcher.Worker.Observability;
using Dispatcher.Worker.Resilience;
using MassTransit;

namespace Dispatcher.Bench;

/// <summary>
/// Latency hiding: with a downstream that answers after 100 ms and 256 calls allowed in flight (worker and
/// destination MaxConcurrency 256), Little's law allows 256 / 0.1 s = 2,560 dispatches/s. Measured from a preloaded
/// queue, after the first 3,000 messages (a warm bus or host), as the steady rate (between 10 % and 90 % of the
/// completions that follow), next to a bare MassTransit consumer
/// that makes the same HTTP call with the same concurrency (what the broker, the client and this machine allow
/// without any of the Dispatcher's work), in the same run.
/// </summary>
internal static class LittlesLawScenario
{
    private const int Concurrency = 256;
    private const int LatencyMs = 100;
    private const int WarmUp = 3_000;
    private static readonly TimeSpan PhaseLimit = TimeSpan.FromSeconds(60);

    public static async Task RunAsync(BenchEnvironment env, BenchOptions options)
    {
        var count = options.CountOr(15_000, 3_000);
        var ideal = Concurrency / (LatencyMs / 1000.0);

        // A first, unmeasured pass of each: the measured passes then find the code they share compiled and tiered up
        // (as in a worker that has been running), rather than paying for the JIT on a machine whose CPU is the limit.
        // Each pass also serves WarmUp messages in its own bus or host before it is measured: what a new host
        // compiles for itself (654-862 methods in the Dispatcher pass, 0.7-1.3 s of compiling, with only the first
        // pass as a warm-up, even one of 7,500 requests) is its start-up, not its rate.
        Console.Error.WriteLine("littles-law: warming up...");
        await BareAsync(env, count / 5);
        await DispatcherAsync(env, count / 5);

        Console.Error.WriteLine($"littles-law: bare MassTransit + HttpClient, {count} messages...");
        var bare = await BareAsync(env, count);
        Console.Error.WriteLine($"littles-law: Dispatcher, {count} requests...");
        var dispatcher = await DispatcherAsync(env, count);

        Console.WriteLine();
        Console.WriteLine($"### littles-law ({count:N0} requests, downstream latency {LatencyMs} ms, concurrency {Concurrency}, {Environment.ProcessorCount} cores)");
        Console.WriteLine();
        Console.WriteLine("| path | dispatches/s (steady, 10–90 %) | over 256 / 0.1 s | downstream max in flight | downstream mean in flight (measured pass) | downstream mean ms per call (measured pass) | bench process CPU ms/msg | wall s | parked at the destination's cap |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        Console.WriteLine($"| Little's law bound: {Concurrency} in flight / {LatencyMs / 1000.0:0.0} s | {ideal:N0} | 1.00 | {Concurrency} | {Concurrency} | {LatencyMs} | | | |");
        Row("bare MassTransit consumer calling /delay/100 (HttpClient, 256 connections)", bare);
        Row("Dispatcher end to end (claim, call, commit, event)", dispatcher);
        Console.WriteLine();
        var ratio = dispatcher.Rate / ideal;
        Console.WriteLine($"Ratio Dispatcher / Little's law bound: **{ratio:0.00}** (target at least 0.9: {Harness.Pass(ratio >= 0.9)}). " +
            $"Dispatcher / bare consumer: {dispatcher.Rate / bare.Rate:0.00}. CPU includes the bench's own bus and sampling; " +
            "RabbitMQ, PostgreSQL and the downstream run in other processes on the same cores. " +
            $"Each pass measured after {WarmUp:N0} unmeasured messages in the same bus or host (and after a first pass of each, {count / 5:N0}); " +
            $"methods compiled by the JIT during the measured Dispatcher pass: {dispatcher.JitMethods:N0} ({dispatcher.JitMs:N0} ms of compiling).");
        if (!dispatcher.Progress.Reached || !bare.Progress.Reached)
            Console.WriteLine($"(stopped at the {PhaseLimit.TotalSeconds:0} s limit: bare {bare.Progress.Final:N0}, Dispatcher {dispatcher.Progress.Final:N0} of {count:N0})");

        void Row(string name, Run run) =>
            Console.WriteLine($"| {name} | {run.Rate:N0} | {run.Rate / ideal:0.00} | {run.MaxInFlight} | {run.MeanInFlight:0} | {run.MeanServedMs:0.0} | {run.Measured.CpuMsPerMessage:0.000} | {run.Measured.Wall.TotalSeconds:0.0} | {(run.Parked is { } p ? p.ToString("N0", System.Globalization.CultureInfo.InvariantCulture) : "")} |");
    }

    private sealed record Run(double Rate, Progress Progress, Measurement.Result Measured, int MaxInFlight, double MeanInFlight, double MeanServedMs, double? Parked = null, long JitMethods = 0, double JitMs = 0);

    private static async Task<Run> BareAsync(BenchEnvironment env, int count)
    {
        var queue = $"bench-ll-bare-{Guid.NewGuid():N}";
        var key = Harness.NewName('b');
        var path = $"/record/{key}/delay/{LatencyMs}";
        await Harness.PreloadAsync(env, queue, Enumerable.Range(0, WarmUp + count).Select(_ => Harness.Request("bare", path)).ToList());

        using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = Concurrency, UseProxy = false, UseCookies = false };
        using var http = new HttpClient(handler) { BaseAddress = env.Downstream.BaseUrl, Timeout = TimeSpan.FromSeconds(30) };
        var done = new long[1];
        var bus = Harness.CreateBus(env, cfg => cfg.ReceiveEndpoint(queue, e =>
        {
            e.PrefetchCount = Concurrency;
            e.ConcurrentMessageLimit = Concurrency;
            e.Handler<DispatchRequest>(async context =>
            {
                using var response = await http.GetAsync(context.Message.Path, context.CancellationToken);
                if (response.StatusCode == HttpStatusCode.OK)
                    Interlocked.Increment(ref done[0]);
            });
        }));
        await bus.StartAsync();
        Downstream.Stats? first = null, last = null;
        var (progress, measured, _, _) = await WarmedPass.MeasureAsync("littles-law", () => Interlocked.Read(ref done[0]), WarmUp, count, PhaseLimit,
            async () => first = await env.Downstream.GetStatsAsync(key, withTimes: false),
            async () => last = await env.Downstream.GetStatsAsync(key, withTimes: false));
        await bus.StopAsync();
        await Harness.DeleteQueuesAsync(env, queue);
        return new Run(progress.SteadyRate(), progress, measured, last!.MaxInFlight, last.MeanInFlightSince(first!), last.MeanServedMsSince(first!));
    }

    private static async Task<Run> DispatcherAsync(BenchEnvironment env, int count)
    {
        var queue = $"bench-ll-{Guid.NewGuid():N}";
        var destination = Harness.NewName('l');
        var path = $"/record/{destination}/delay/{LatencyMs}";
        var postgres = await env.CreateDatabaseAsync();
        await Harness.PreloadAsync(env, queue, Enumerable.Range(0, WarmUp + count).Select(_ => Harness.Request(destination, path)).ToList());

        var succeeded = DispatcherMetrics.Dispatches.WithLabels(destination, nameof(DispatchOutcome.Succeeded), "");
        var parked = DispatcherMetrics.Parked.WithLabels(destination, DestinationPolicy.AtCapacity);
        await using (var worker = await InProcessWorker.StartAsync(env, postgres, queue, Concurrency,
            InProcessWorker.Destination(destination, env.Downstream.BaseUrl,
                ("MaxConcurrency", $"{Concurrency}"), ("RateLimit:PermitsPerSecond", "1000000"))))
        {
            var parkedBefore = 0.0;
            Downstream.Stats? first = null, last = null;
            var (progress, measured, jitMethods, jitMs) = await WarmedPass.MeasureAsync("littles-law", () => succeeded.Value, WarmUp, count, PhaseLimit,
                async () =>
                {
                    parkedBefore = parked.Value;
                    first = await env.Downstream.GetStatsAsync(destination, withTimes: false);
                },
                async () => last = await env.Downstream.GetStatsAsync(destination, withTimes: false));
            await worker.StopAsync();
            await Harness.DeleteQueuesAsync(env, queue);
            return new Run(progress.SteadyRate(), progress, measured, last!.MaxInFlight, last.MeanInFlightSince(first!), last.MeanServedMsSince(first!),
                parked.Value - parkedBefore, jitMethods, jitMs);
        }
    }
}
