using Dispatcher.Contracts;
using Dispatcher.Worker.Admin;
using Dispatcher.Worker.Hosting;
using Dispatcher.Worker.Observability;
using MassTransit;

namespace Dispatcher.Bench;

/// <summary>
/// End-to-end dispatches/s with an instantly answering downstream, next to MassTransit's bare consume rate of
/// the same messages on the same broker, in the same run. Both start from a queue preloaded with the
/// messages and are timed from the consumer's start to the last message; the worker's numbers include its
/// PostgreSQL writes, the HTTP calls and the outbox relay publishing one event per dispatch.
/// </summary>
internal static class ThroughputScenario
{
    private const int Concurrency = 64;

    public static async Task RunAsync(BenchEnvironment env, int count, bool profileAllocations = false)
    {
        Console.Error.WriteLine("throughput: warming up...");
        await BareAsync(env, 2_000);
        await DispatcherAsync(env, 2_000);

        Console.Error.WriteLine($"throughput: bare MassTransit, {count} messages...");
        var (bare, bareSend) = await BareAsync(env, count);
        Console.Error.WriteLine($"throughput: Dispatcher, {count} requests...");
        using var profile = profileAllocations ? new AllocationProfile() : null;
        profile?.Start();
        var (dispatcher, _) = await DispatcherAsync(env, count);
        profile?.Report(count);

        Console.WriteLine();
        Console.WriteLine($"### throughput ({count:N0} messages, concurrency {Concurrency}, {Environment.ProcessorCount} cores)");
        Console.WriteLine();
        Console.WriteLine("| path | msg/s | worker CPU ms/msg | allocated KB/msg |");
        Console.WriteLine("|---|---:|---:|---:|");
        Console.WriteLine($"| bare MassTransit consume (no-op consumer) | {bare.PerSecond:N0} | {bare.CpuMsPerMessage:0.000} | {bare.AllocatedKbPerMessage:0.0} |");
        Console.WriteLine($"| Dispatcher end to end (HTTP call + PostgreSQL + event) | {dispatcher.PerSecond:N0} | {dispatcher.CpuMsPerMessage:0.000} | {dispatcher.AllocatedKbPerMessage:0.0} |");
        Console.WriteLine();
        Console.WriteLine($"Ratio Dispatcher / bare: **{dispatcher.PerSecond / bare.PerSecond:0.00}** (target at least 0.5). " +
            $"Preloading publish rate: {bareSend.PerSecond:N0} msg/s.");
    }

    private static async Task<(Measurement.Result Consume, Measurement.Result Send)> BareAsync(BenchEnvironment env, int count)
    {
        var queue = $"bench-bare-{Guid.NewGuid():N}";
        var send = await PreloadAsync(env, queue, count, _ => new DispatchRequest { RequestId = Guid.NewGuid(), Destination = "bare", Path = "/x", Body = "{\"amount\":1}" });

        var consumed = 0;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var address = RabbitMqAddress.Parse(env.RabbitMq);
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            Host(cfg, address);
            cfg.ReceiveEndpoint(queue, e =>
            {
                e.PrefetchCount = Concurrency;
                e.ConcurrentMessageLimit = Concurrency;
                e.Handler<DispatchRequest>(_ =>
                {
                    if (Interlocked.Increment(ref consumed) == count)
                        done.TrySetResult();
                    return Task.CompletedTask;
                });
            });
        });
        var measurement = Measurement.Start();
        await bus.StartAsync();
        await done.Task;
        var result = measurement.Stop(count);
        await bus.StopAsync();
        return (result, send);
    }

    private static async Task<(Measurement.Result Consume, Measurement.Result Send)> DispatcherAsync(BenchEnvironment env, int count)
    {
        var queue = $"bench-dispatch-{Guid.NewGuid():N}";
        var destination = $"bench{Guid.NewGuid():N}"[..13];
        var postgres = await env.CreateDatabaseAsync();
        var send = await PreloadAsync(env, queue, count, _ => new DispatchRequest
        {
            RequestId = Guid.NewGuid(), Destination = destination, Path = "/x", Body = "{\"amount\":1}",
        });

        string[] overrides =
        [
            $"--ConnectionStrings:Postgres={postgres}",
            $"--ConnectionStrings:RabbitMq={env.RabbitMq}",
            $"--Dispatcher:Worker:QueueName={queue}",
            $"--Dispatcher:Worker:MaxConcurrency={Concurrency}",
            "--Dispatcher:Admin:Urls=http://127.0.0.1:0",
            "--Dispatcher:Logging:Level=Warning",
            "--Dispatcher:Logging:Format=text",
            $"--Dispatcher:Destinations:{destination}:BaseUrl={env.Downstream.BaseUrl}",
            $"--Dispatcher:Destinations:{destination}:MaxConcurrency={Concurrency}",
            $"--Dispatcher:Destinations:{destination}:RateLimit:PermitsPerSecond=1000000",
        ];
        var builder = DispatcherHostBuilder.Create(null, overrides, quietLogs: false);
        builder.AddDispatcherWorker();
        await using var app = builder.Build();
        app.MapAdminEndpoints();

        var succeeded = DispatcherMetrics.Dispatches.WithLabels(destination, nameof(DispatchOutcome.Succeeded), "");
        var measurement = Measurement.Start();
        await app.StartAsync();
        while (succeeded.Value < count)
            await Task.Delay(TimeSpan.FromMilliseconds(5));
        var result = measurement.Stop(count);
        await app.StopAsync();
        return (result, send);
    }

    private static async Task<Measurement.Result> PreloadAsync(BenchEnvironment env, string queue, int count, Func<int, DispatchRequest> make)
    {
        var address = RabbitMqAddress.Parse(env.RabbitMq);
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg => Host(cfg, address));
        await bus.StartAsync();
        var endpoint = await bus.GetSendEndpoint(new Uri($"queue:{queue}"));
        var measurement = Measurement.Start();
        const int window = 256;
        for (var i = 0; i < count; i += window)
            await Task.WhenAll(Enumerable.Range(i, Math.Min(window, count - i)).Select(n => endpoint.Send(make(n))));
        var result = measurement.Stop(count);
        await bus.StopAsync();
        return result;
    }

    private static void Host(IRabbitMqBusFactoryConfigurator cfg, RabbitMqAddress address) =>
        cfg.Host(address.Host, address.Port, address.VirtualHost, h =>
        {
            h.Username(address.Username);
            h.Password(address.Password);
        });
}
