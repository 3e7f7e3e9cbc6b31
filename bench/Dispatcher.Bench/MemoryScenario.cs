using Dispatcher.Contracts;
using Dispatcher.Worker.Observability;

namespace Dispatcher.Bench;

/// <summary>
/// Memory under a steady offered load of 2,000 requests/s for 30 s (instant downstream). The worker is a child
/// process (<c>dotnet Dispatcher.Worker.dll run</c>, default Worker:MaxConcurrency 64); the bench process publishes,
/// paced, and samples the worker's resident set (<c>/proc/{pid}/status</c> VmRSS every 250 ms, and VmHWM, the
/// kernel's peak) and its metrics (dispatches, and bytes allocated from the runtime's
/// <c>dotnet.gc.heap.total_allocated</c>). The worker's RSS right after start, idle, is the baseline. A second,
/// in-process pass over a preloaded queue samples which types are allocated (AllocationProfile).
/// </summary>
internal static class MemoryScenario
{
    private const int PerSecond = 2_000;
    private const double LimitMb = 150;

    public static async Task RunAsync(BenchEnvironment env, BenchOptions options)
    {
        var seconds = options.Quick ? 10 : 30;
        var profileCount = options.CountOr(5_000, 1_500);

        Console.Error.WriteLine($"memory: worker process, {PerSecond}/s for {seconds} s...");
        var load = await LoadAsync(env, seconds);
        Console.Error.WriteLine($"memory: in-process allocation profile, {profileCount} requests...");
        using var profile = new AllocationProfile();
        var (inProcess, profiled) = await ProfileAsync(env, profileCount, profile);

        const double mb = 1024.0 * 1024;
        Console.WriteLine();
        Console.WriteLine($"### memory ({PerSecond:N0} requests/s offered for {seconds} s, paced from the bench process; worker in a child process; {Environment.ProcessorCount} cores)");
        Console.WriteLine();
        Console.WriteLine("| measurement | value |");
        Console.WriteLine("|---|---:|");
        Console.WriteLine($"| worker RSS, started and idle (baseline) | {load.IdleRss / mb:0.0} MB |");
        Console.WriteLine($"| worker RSS, highest sample under load (every 250 ms) | {load.MaxSampledRss / mb:0.0} MB |");
        Console.WriteLine($"| worker peak RSS over its life (VmHWM) | **{load.Peak / mb:0.0} MB** |");
        Console.WriteLine($"| worker RSS growth under load (highest sample − idle) | {(load.MaxSampledRss - load.IdleRss) / mb:0.0} MB |");
        Console.WriteLine($"| worker at the end: anonymous (heaps, JIT, runtime) / shared clean file pages (DLLs) / PSS | " +
            $"{load.End.Anonymous / mb:0.0} / {load.End.SharedFile / mb:0.0} / {load.End.Pss / mb:0.0} MB |");
        Console.WriteLine($"| worker managed heap at the end (GC.GetTotalMemory) / GC committed at the last collection | {load.ManagedEnd / mb:0.0} / {load.GcCommitted / mb:0.0} MB |");
        Console.WriteLine($"| publish rate achieved (bench process → RabbitMQ) | {load.Published / load.PublishSeconds:N0}/s ({load.Published:N0}) |");
        Console.WriteLine($"| dispatches completed during the load | {load.Dispatched:N0} ({load.Dispatched / load.PublishSeconds:N0}/s) |");
        Console.WriteLine($"| allocated per dispatch, worker process (runtime counter, whole process) | {load.Allocated / Math.Max(1, load.Dispatched) / 1024:0.0} KB |");
        Console.WriteLine($"| allocated per dispatch, in-process pass ({profileCount:N0} preloaded, includes the bench process's own activity) | {inProcess.AllocatedKbPerMessage:0.0} KB |");
        Console.WriteLine();
        var peakMb = load.Peak / mb;
        Console.WriteLine($"Peak RSS **{peakMb:0} MB** (target at most {LimitMb:0} MB: {Harness.Pass(peakMb <= LimitMb)}). " +
            (load.Dispatched < load.Published * 0.95
                ? $"The worker did not keep up with the offered rate on this machine: the rest waited in RabbitMQ (not in the worker: prefetch bounds what it holds)."
                : "The worker kept up with the offered rate."));
        if (profiled)
            profile.Report(profileCount, top: 15);
    }

    private sealed record Load(long IdleRss, long MaxSampledRss, long Peak, (long Pss, long Anonymous, long SharedFile) End, double ManagedEnd, double GcCommitted, int Published, double PublishSeconds, double Dispatched, double Allocated);

    private static async Task<Load> LoadAsync(BenchEnvironment env, int seconds)
    {
        var queue = $"bench-mem-{Guid.NewGuid():N}";
        var destination = Harness.NewName('m');
        var postgres = await env.CreateDatabaseAsync();
        var d = $"destination=\"{destination}\"";
        var publisher = Harness.CreateBus(env);
        await publisher.StartAsync();
        try
        {
            await using var worker = await WorkerChild.StartAsync(env, postgres, queue, new Dictionary<string, string>
            {
                [$"Dispatcher:Destinations:{destination}:BaseUrl"] = env.Downstream.BaseUrl.ToString(),
                [$"Dispatcher:Destinations:{destination}:MaxConcurrency"] = "64",
                [$"Dispatcher:Destinations:{destination}:RateLimit:PermitsPerSecond"] = "1000000",
            });
            await Task.Delay(TimeSpan.FromSeconds(2));
            var idle = worker.ReadMemory().Rss;
            var before = await worker.ScrapeAsync();

            var maxRss = idle;
            using var sampling = new CancellationTokenSource();
            var sampler = Task.Run(async () =>
            {
                while (!sampling.IsCancellationRequested)
                {
                    maxRss = Math.Max(maxRss, worker.ReadMemory().Rss);
                    await Task.Delay(250, sampling.Token).ContinueWith(_ => { }, TaskScheduler.Default);
                }
            });
            var endpoint = await publisher.GetSendEndpoint(new Uri($"queue:{queue}"));
            var sent = await PacedPublisher.RunAsync(endpoint, _ => Harness.Request(destination, "/x"),
                PerSecond, PerSecond * seconds, TimeSpan.FromSeconds(seconds), maxOutstanding: 2_000);
            var after = await worker.ScrapeAsync();
            await sampling.CancelAsync();
            await sampler;
            var memory = worker.ReadMemory();
            var kinds = worker.ReadMemoryKinds();
            maxRss = Math.Max(maxRss, memory.Rss);

            const string succeeded = "outcome=\"Succeeded\"";
            const string allocated = "system_runtime_dotnet_gc_heap_total_allocated";
            return new Load(idle, maxRss, memory.Peak, kinds, after.Sum("dotnet_total_memory_bytes"),
                after.Sum("system_runtime_dotnet_gc_last_collection_memory_committed_size"), sent.Sent.Count, sent.Elapsed.TotalSeconds,
                after.Sum("dispatcher_dispatches_total", d, succeeded) - before.Sum("dispatcher_dispatches_total", d, succeeded),
                after.Sum(allocated) - before.Sum(allocated));
        }
        finally
        {
            await publisher.StopAsync();
            await Harness.DeleteQueuesAsync(env, queue);
        }
    }

    private static async Task<(Measurement.Result Result, bool Profiled)> ProfileAsync(BenchEnvironment env, int count, AllocationProfile profile)
    {
        var queue = $"bench-memp-{Guid.NewGuid():N}";
        var destination = Harness.NewName('p');
        var postgres = await env.CreateDatabaseAsync();
        await Harness.PreloadAsync(env, queue, Enumerable.Range(0, count).Select(_ => Harness.Request(destination, "/x")).ToList());
        var succeeded = DispatcherMetrics.Dispatches.WithLabels(destination, nameof(DispatchOutcome.Succeeded), "");
        try
        {
            await using var worker = await InProcessWorker.StartAsync(env, postgres, queue, 64,
                InProcessWorker.Destination(destination, env.Downstream.BaseUrl, ("MaxConcurrency", "64"), ("RateLimit:PermitsPerSecond", "1000000")));
            profile.Start();
            var measurement = Measurement.Start();
            var progress = await Progress.WaitAsync(() => succeeded.Value, count, TimeSpan.FromSeconds(60));
            profile.Stop();
            return (measurement.Stop((int)Math.Max(1, progress.Final)), progress.Final > 0);
        }
        finally
        {
            await Harness.DeleteQueuesAsync(env, queue);
        }
    }
}
