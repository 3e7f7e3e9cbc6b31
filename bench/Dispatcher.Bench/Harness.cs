using System.Diagnostics;
using Dispatcher.Contracts;
using Dispatcher.Worker.Admin;
using Dispatcher.Worker.Hosting;
using MassTransit;
using RabbitMQ.Client;

namespace Dispatcher.Bench;

/// <summary>What the command line asks of a scenario.</summary>
/// <param name="Count">--count N: the scenario's main message count (each scenario says what it counts), or null for its default.</param>
/// <param name="Quick">--quick: smaller counts and shorter durations, for development.</param>
internal sealed record BenchOptions(int? Count, bool Quick, bool ProfileAllocations)
{
    public int CountOr(int normal, int quick) => Count ?? (Quick ? quick : normal);
}

/// <summary>Helpers the scenarios share: buses, preloading, queue cleanup, percentiles, names.</summary>
internal static class Harness
{
    /// <summary>Longest wait for the broker to confirm a send: a send that does not complete fails the scenario.</summary>
    public static readonly TimeSpan SendTimeout = TimeSpan.FromSeconds(30);

    /// <summary>A unique, config-key-safe name: a letter and 12 hex digits.</summary>
    public static string NewName(char prefix) => prefix + Guid.NewGuid().ToString("N")[..12];

    public static IBusControl CreateBus(BenchEnvironment env, Action<IRabbitMqBusFactoryConfigurator>? configure = null)
    {
        var address = RabbitMqAddress.Parse(env.RabbitMq);
        return Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(address.Host, address.Port, address.VirtualHost, h =>
            {
                h.Username(address.Username);
                h.Password(address.Password);
            });
            configure?.Invoke(cfg);
        });
    }

    /// <summary>Sends the requests to the queue as fast as the broker confirms them (256 in flight).</summary>
    public static async Task<Measurement.Result> PreloadAsync(BenchEnvironment env, string queue, IReadOnlyList<DispatchRequest> requests)
    {
        var bus = CreateBus(env);
        await bus.StartAsync();
        try
        {
            var endpoint = await bus.GetSendEndpoint(new Uri($"queue:{queue}"));
            var measurement = Measurement.Start();
            const int window = 256;
            for (var i = 0; i < requests.Count; i += window)
            {
                using var timeout = new CancellationTokenSource(SendTimeout);
                await Task.WhenAll(Enumerable.Range(i, Math.Min(window, requests.Count - i)).Select(n => endpoint.Send(requests[n], timeout.Token)));
            }
            return measurement.Stop(requests.Count);
        }
        finally
        {
            await bus.StopAsync();
        }
    }

    public static DispatchRequest Request(string destination, string path) =>
        new() { RequestId = Guid.NewGuid(), Destination = destination, Path = path, Body = "{\"amount\":1}" };

    /// <summary>Removes queues a run made (and MassTransit's exchanges of the same name), with whatever they still hold.</summary>
    public static async Task DeleteQueuesAsync(BenchEnvironment env, params string[] queues)
    {
        try
        {
            var address = RabbitMqAddress.Parse(env.RabbitMq);
            var factory = new ConnectionFactory
            {
                HostName = address.Host, Port = address.Port, VirtualHost = address.VirtualHost,
                UserName = address.Username, Password = address.Password,
            };
            await using var connection = await factory.CreateConnectionAsync();
            await using var channel = await connection.CreateChannelAsync();
            foreach (var q in queues)
            {
                await channel.QueueDeleteAsync(q);
                await channel.ExchangeDeleteAsync(q);
            }
        }
        catch (Exception ex) when (ex is RabbitMQ.Client.Exceptions.RabbitMQClientException or IOException)
        {
            Console.Error.WriteLine($"(could not delete queues {string.Join(", ", queues)}: {ex.Message})");
        }
    }

    /// <summary>Nearest-rank percentile of sorted values.</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double p)
    {
        if (sorted.Count == 0)
            return double.NaN;
        var rank = (int)Math.Ceiling(p / 100.0 * sorted.Count);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Count - 1)];
    }

    /// <summary>Waits until <paramref name="offset"/> after <paramref name="startTimestamp"/>, on the monotonic clock.</summary>
    public static async Task DelayUntilAsync(long startTimestamp, TimeSpan offset)
    {
        var remaining = offset - Stopwatch.GetElapsedTime(startTimestamp);
        if (remaining > TimeSpan.Zero)
            await Task.Delay(remaining);
    }

    public static string Pass(bool ok) => ok ? "met" : "NOT met";
}

/// <summary>
/// A worker hosted in this process exactly as <c>dispatcher run</c> builds it (DispatcherHostBuilder.Create +
/// AddDispatcherWorker), on its own queue and database; logs go to stderr at Warning.
/// </summary>
internal sealed class InProcessWorker : IAsyncDisposable
{
    private readonly WebApplication _app;
    private bool _stopped;

    private InProcessWorker(WebApplication app) => _app = app;

    public static async Task<InProcessWorker> StartAsync(
        BenchEnvironment env, string postgres, string queue, int concurrency, IEnumerable<string> overrides)
    {
        string[] all =
        [
            $"--ConnectionStrings:Postgres={postgres}",
            $"--ConnectionStrings:RabbitMq={env.RabbitMq}",
            $"--Dispatcher:Worker:QueueName={queue}",
            $"--Dispatcher:Worker:MaxConcurrency={concurrency}",
            "--Dispatcher:Worker:ShutdownTimeout=00:00:05",
            "--Dispatcher:Admin:Urls=http://127.0.0.1:0",
            "--Dispatcher:Logging:Level=Warning",
            "--Dispatcher:Logging:Format=text",
            .. overrides,
        ];
        var builder = DispatcherHostBuilder.Create(null, all, quietLogs: true);
        builder.AddDispatcherWorker();
        var app = builder.Build();
        app.MapAdminEndpoints();
        await app.StartAsync();
        return new InProcessWorker(app);
    }

    /// <summary>Destination settings as overrides.</summary>
    public static IEnumerable<string> Destination(string name, Uri baseUrl, params (string Key, string Value)[] settings)
    {
        yield return $"--Dispatcher:Destinations:{name}:BaseUrl={baseUrl}";
        foreach (var (key, value) in settings)
            yield return $"--Dispatcher:Destinations:{name}:{key}={value}";
    }

    public async Task StopAsync()
    {
        if (_stopped)
            return;
        _stopped = true;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _app.StopAsync(cts.Token);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>
/// Samples a growing count (a Prometheus counter of this process) every few milliseconds until it reaches a
/// target or a time limit, and gives the rate between two fractions of the target: the steady rate, without
/// the start (connections, first JIT, prefetch filling) and the tail.
/// </summary>
internal sealed class Progress
{
    private readonly List<(double Seconds, double Count)> _samples = [];

    public double Target { get; private init; }

    public bool Reached { get; private set; }

    public double Final => _samples.Count == 0 ? 0 : _samples[^1].Count;

    public TimeSpan Elapsed => TimeSpan.FromSeconds(_samples.Count == 0 ? 0 : _samples[^1].Seconds);

    public static async Task<Progress> WaitAsync(Func<double> read, double target, TimeSpan timeout)
    {
        var progress = new Progress { Target = target };
        var start = Stopwatch.GetTimestamp();
        while (true)
        {
            var count = read();
            var elapsed = Stopwatch.GetElapsedTime(start);
            progress._samples.Add((elapsed.TotalSeconds, count));
            if (count >= target)
            {
                progress.Reached = true;
                return progress;
            }
            if (elapsed > timeout)
                return progress;
            await Task.Delay(TimeSpan.FromMilliseconds(5));
        }
    }

    /// <summary>Seconds from the start until <paramref name="fraction"/> of the target was seen (the whole wait if never).</summary>
    public double SecondsTo(double fraction)
    {
        var i = _samples.FindIndex(s => s.Count >= fraction * Target);
        return i < 0 ? Elapsed.TotalSeconds : _samples[i].Seconds;
    }

    /// <summary>Completions per second between <paramref name="from"/> and <paramref name="to"/> of the target.</summary>
    public double SteadyRate(double from = 0.1, double to = 0.9)
    {
        var a = _samples.FindIndex(s => s.Count >= from * Target);
        var b = _samples.FindIndex(s => s.Count >= to * Target);
        if (a < 0)
            return 0;
        if (b < 0 || b <= a)
            b = _samples.Count - 1;
        var dt = _samples[b].Seconds - _samples[a].Seconds;
        return dt <= 0 ? 0 : (_samples[b].Count - _samples[a].Count) / dt;
    }
}

/// <summary>
/// Sends requests at a fixed rate: every 10 ms, the ones due by then (so 100/s is one every 10 ms, 2,000/s twenty),
/// without waiting for the previous confirms (at most <c>maxOutstanding</c> unconfirmed; beyond that it falls
/// behind, which the achieved rate shows). Stops after <c>count</c> requests or <c>duration</c>, whichever first.
/// </summary>
internal static class PacedPublisher
{
    public sealed record Sent(Guid RequestId, long Timestamp, DateTime Utc);

    public sealed record Result(IReadOnlyList<Sent> Sent, TimeSpan Elapsed)
    {
        public double PerSecond => Sent.Count / Elapsed.TotalSeconds;
    }

    public static async Task<Result> RunAsync(
        ISendEndpoint endpoint, Func<int, DispatchRequest> make, double perSecond, int count, TimeSpan duration, int maxOutstanding = 1_000)
    {
        var sent = new List<Sent>(Math.Min(count, 1_000_000));
        var pending = new List<Task>();
        using var outstanding = new SemaphoreSlim(maxOutstanding, maxOutstanding);
        var start = Stopwatch.GetTimestamp();
        var tick = TimeSpan.FromMilliseconds(10);
        for (var k = 0; sent.Count < count; k++)
        {
            var at = tick * k;
            if (at >= duration)
                break;
            await Harness.DelayUntilAsync(start, at);
            var due = Math.Min(count, (int)Math.Floor((k + 1) * tick.TotalSeconds * perSecond));
            while (sent.Count < due)
            {
                await outstanding.WaitAsync();
                var request = make(sent.Count);
                sent.Add(new Sent(request.RequestId, Stopwatch.GetTimestamp(), DateTime.UtcNow));
                pending.Add(SendAsync(endpoint, request, outstanding));
            }
            if (pending.Count > 4_096)
                pending.RemoveAll(t => t.IsCompletedSuccessfully);
        }
        var elapsed = Stopwatch.GetElapsedTime(start);
        await Task.WhenAll(pending);
        return new Result(sent, elapsed);

        static async Task SendAsync(ISendEndpoint endpoint, DispatchRequest request, SemaphoreSlim outstanding)
        {
            try
            {
                using var timeout = new CancellationTokenSource(Harness.SendTimeout);
                await endpoint.Send(request, timeout.Token);
            }
            finally
            {
                outstanding.Release();
            }
        }
    }
}

/// <summary>
/// A pass measured on a warm consumer (bus or worker host): it first serves a number of messages unmeasured, since a
/// new host compiles its own code (DI resolvers, MassTransit pipelines) at first use, then the rest of those preloaded
/// are measured: the steady rate (10 %–90 % of them), the process's CPU and allocations, and the JIT's work meanwhile.
/// </summary>
internal static class WarmedPass
{
    public sealed record Result(Progress Progress, Measurement.Result Measured, long JitMethods, double JitMs);

    /// <param name="completed">Completions so far, warm-up included.</param>
    /// <param name="atStart">Run as the measured part starts (snapshots, counters).</param>
    /// <param name="atEnd">Run as it ends.</param>
    public static async Task<Result> MeasureAsync(
        string scenario, Func<double> completed, int warmUp, int count, TimeSpan limit, Func<Task> atStart, Func<Task> atEnd)
    {
        var warmUntil = Stopwatch.GetTimestamp() + (long)(limit.TotalSeconds * Stopwatch.Frequency);
        while (completed() < warmUp)
        {
            if (Stopwatch.GetTimestamp() > warmUntil)
                throw new TimeoutException($"{scenario}: the {warmUp:N0} warm-up messages were not done within {limit.TotalSeconds:0} s ({completed():N0})");
            await Task.Delay(TimeSpan.FromMilliseconds(5));
        }
        await atStart();
        var measurement = Measurement.Start();
        var jitted = System.Runtime.JitInfo.GetCompiledMethodCount();
        var jitTime = System.Runtime.JitInfo.GetCompilationTime();
        // A few past the warm-up may have completed before this look: the pass measures those still to come.
        var from = completed();
        var progress = await Progress.WaitAsync(() => completed() - from, warmUp + count - from, limit);
        var measured = measurement.Stop((int)Math.Max(1, progress.Final));
        await atEnd();
        return new Result(progress, measured, System.Runtime.JitInfo.GetCompiledMethodCount() - jitted,
            (System.Runtime.JitInfo.GetCompilationTime() - jitTime).TotalMilliseconds);
    }
}
