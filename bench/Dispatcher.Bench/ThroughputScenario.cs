using System.Diagnostics;
using Npgsql;
using Dispatcher.Contracts;
using Dispatcher.Worker.Admin;
using Dispatcher.Worker.Hosting;
using Dispatcher.Worker.Observability;
using Dispatcher.Worker.Resilience;
using MassTransit;

namespace Dispatcher.Bench;

/// <summary>
/// End-to-end dispatches/s with an instantly answering downstream, next to MassTransit's bare consume rate of
/// the same messages on the same broker, in the same run. Both start from a queue preloaded with the
/// messages; each consumer (bus or worker host) first serves <see cref="WarmUp"/> of them unmeasured, and is timed
/// from the next one to the last (a warm, running consumer, not its start-up); the worker's numbers include its
/// PostgreSQL writes, the HTTP calls and the outbox relay publishing one event per dispatch. Each pass also reports its
/// steady rate, between its 10 % and 90 % completions (a running worker's rate: no host start, no pipeline filling
/// or draining), as littles-law and isolation do; the ratio is given for both.
/// </summary>
internal static class ThroughputScenario
{
    private const int Concurrency = 64;
    // Each pass first serves this many messages in the same process and host, unmeasured: a worker runs for long,
    // and a pass measured from the host's start also measured its start-up (in the Dispatcher pass, 885 methods
    // compiled by the JIT, 670 ms of compiling, about a tenth of the worker's CPU in the pass).
    private const int WarmUp = 3_000;
    private static readonly TimeSpan PhaseLimit = TimeSpan.FromSeconds(120);

    public static async Task RunAsync(BenchEnvironment env, int count, bool profileAllocations = false)
    {
        // A first pass of each, unmeasured: the code both share with the measured pass is compiled, and tiered up, then.
        Console.Error.WriteLine("throughput: warming up...");
        await BareAsync(env, 2_000);
        await DispatcherAsync(env, 2_000);

        Console.Error.WriteLine($"throughput: bare MassTransit, {WarmUp} + {count} messages...");
        var (bare, bareSend, bareSteady) = await BareAsync(env, count);
        Console.Error.WriteLine($"throughput: Dispatcher, {WarmUp} + {count} requests...");
        using var profile = profileAllocations ? new AllocationProfile() : null;
        profile?.Start();
        var (dispatcher, _, dispatcherSteady, timeline, system, statements, tables) = await DispatcherAsync(env, count);
        profile?.Report(count);

        Console.WriteLine();
        Console.WriteLine($"### throughput ({count:N0} messages, concurrency {Concurrency}, each pass after {WarmUp:N0} unmeasured in the same process and host, {Environment.ProcessorCount} cores)");
        Console.WriteLine();
        Console.WriteLine("| path | msg/s (whole pass) | msg/s (steady, 10–90 %) | worker CPU ms/msg | allocated KB/msg |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        Console.WriteLine($"| bare MassTransit consume (no-op consumer) | {bare.PerSecond:N0} | {bareSteady:N0} | {bare.CpuMsPerMessage:0.000} | {bare.AllocatedKbPerMessage:0.0} |");
        Console.WriteLine($"| Dispatcher end to end (HTTP call + PostgreSQL + event) | {dispatcher.PerSecond:N0} | {dispatcherSteady:N0} | {dispatcher.CpuMsPerMessage:0.000} | {dispatcher.AllocatedKbPerMessage:0.0} |");
        Console.WriteLine();
        Console.WriteLine($"Ratio Dispatcher / bare: **{dispatcher.PerSecond / bare.PerSecond:0.00}** over the whole pass, **{dispatcherSteady / bareSteady:0.00}** steady " +
            $"(target at least 0.5). Preloading publish rate: {bareSend.PerSecond:N0} msg/s.");
        Console.WriteLine();
        Console.WriteLine($"The Dispatcher pass: {timeline}.");

        if (system.Count > 0)
        {
            Console.WriteLine();
            Console.WriteLine($"Where the machine's CPU went during the Dispatcher pass ({dispatcher.Wall.TotalSeconds:0.0} s, {Environment.ProcessorCount} cores):");
            Console.WriteLine();
            Console.WriteLine("| process | cores busy | CPU ms per dispatch |");
            Console.WriteLine("|---|---:|---:|");
            foreach (var (group, seconds) in system.OrderByDescending(kv => kv.Value))
                Console.WriteLine($"| {group} | {seconds / dispatcher.Wall.TotalSeconds:0.00} | {seconds * 1000 / dispatcher.Messages:0.000} |");
            var total = system.Values.Sum();
            Console.WriteLine($"| all of them | {total / dispatcher.Wall.TotalSeconds:0.00} | {total * 1000 / dispatcher.Messages:0.000} |");
        }
        Console.WriteLine();
        if (statements is null)
        {
            Console.WriteLine("PostgreSQL statements: pg_stat_statements is not loaded (scripts/services.sh loads it; restart PostgreSQL after upgrading).");
            return;
        }
        Console.WriteLine("PostgreSQL statements during the Dispatcher pass (pg_stat_statements: execution and, with pg_stat_statements.track_planning on, planning time in the server):");
        Console.WriteLine();
        Console.WriteLine("| statement | calls | rows per call | exec ms total | exec µs per dispatch | planning µs per dispatch |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        foreach (var st in statements)
        {
            Console.WriteLine($"| `{st.Query}` | {st.Calls:N0} | {(st.Calls == 0 ? 0 : (double)st.Rows / st.Calls):0.0} | " +
                $"{st.TotalMs:N0} | {st.TotalMs * 1000 / dispatcher.Messages:0.0} | {st.PlanMs * 1000 / dispatcher.Messages:0.0} |");
        }
        Console.WriteLine();
        Console.WriteLine("| table (whole run) | seq scans | rows read by seq scans | index scans | inserted | updated | of which HOT |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
        foreach (var row in tables!)
            Console.WriteLine(row);
    }

    private sealed record StatementCost(string Query, long Calls, long Rows, double TotalMs, double PlanMs);

    private static async Task<List<string>> TableScansAsync(string postgres)
    {
        await using var connection = new NpgsqlConnection(postgres);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand(
            "SELECT relname, seq_scan, seq_tup_read, idx_scan, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables ORDER BY relname", connection);
        var rows = new List<string>();
        await using var reader = await cmd.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            rows.Add($"| {reader.GetString(0)} | {reader.GetInt64(1):N0} | {reader.GetInt64(2):N0} | {(reader.IsDBNull(3) ? 0 : reader.GetInt64(3)):N0} | " +
                $"{reader.GetInt64(4):N0} | {reader.GetInt64(5):N0} | {reader.GetInt64(6):N0} |");
        }
        return rows;
    }

    /// <summary>Resets pg_stat_statements for the bench database; false when the extension is not loaded.</summary>
    private static async Task<bool> ResetStatementsAsync(string postgres)
    {
        try
        {
            await using var connection = new NpgsqlConnection(postgres);
            await connection.OpenAsync();
            await using var cmd = new NpgsqlCommand(
                "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset();", connection);
            await cmd.ExecuteNonQueryAsync();
            return true;
        }
        catch (PostgresException)
        {
            return false;
        }
    }

    private static async Task<List<StatementCost>> StatementsAsync(string postgres)
    {
        await using var connection = new NpgsqlConnection(postgres);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand("""
            SELECT regexp_replace(left(query, 400), '\s+', ' ', 'g'), calls, rows, total_exec_time, total_plan_time
            FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            ORDER BY total_exec_time + total_plan_time DESC
            LIMIT 10
            """, connection);
        var result = new List<StatementCost>();
        await using var reader = await cmd.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            var query = reader.GetString(0);
            result.Add(new StatementCost(query.Length > 90 ? query[..90] + "…" : query, reader.GetInt64(1), reader.GetInt64(2), reader.GetDouble(3), reader.GetDouble(4)));
        }
        return result;
    }

    /// <summary>Messages per second between the 10 % and the 90 % completions (Stopwatch timestamps).</summary>
    private static double Steady(int count, long at10, long at90) =>
        at10 == 0 || at90 <= at10 ? double.NaN : (count * 0.8) / Stopwatch.GetElapsedTime(at10, at90).TotalSeconds;

    private static async Task<(Measurement.Result Consume, Measurement.Result Send, double Steady)> BareAsync(BenchEnvironment env, int count)
    {
        var queue = $"bench-bare-{Guid.NewGuid():N}";
        var send = await PreloadAsync(env, queue, WarmUp + count, _ => new DispatchRequest { RequestId = Guid.NewGuid(), Destination = "bare", Path = "/x", Body = "{\"amount\":1}" });

        var consumed = 0;
        long at10 = 0, at90 = 0;
        Measurement? measurement = null;
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
                    var n = Interlocked.Increment(ref consumed) - WarmUp;
                    if (n == 0)
                        Volatile.Write(ref measurement, Measurement.Start());
                    if (n == count / 10)
                        at10 = Stopwatch.GetTimestamp();
                    if (n == count * 9 / 10)
                        at90 = Stopwatch.GetTimestamp();
                    if (n == count)
                        done.TrySetResult();
                    return Task.CompletedTask;
                });
            });
        });
        await bus.StartAsync();
        await done.Task.WaitAsync(PhaseLimit);
        SpinWait.SpinUntil(() => Volatile.Read(ref measurement) is not null); // its handler may still be on its way
        var result = Volatile.Read(ref measurement)!.Stop(count);
        await bus.StopAsync();
        await Harness.DeleteQueuesAsync(env, queue);
        return (result, send, Steady(count, at10, at90));
    }

    private static async Task<(Measurement.Result Consume, Measurement.Result Send, double Steady, string Timeline, IReadOnlyDictionary<string, double> System, List<StatementCost>? Statements, List<string>? Tables)> DispatcherAsync(
        BenchEnvironment env, int count)
    {
        var queue = $"bench-dispatch-{Guid.NewGuid():N}";
        var destination = $"bench{Guid.NewGuid():N}"[..13];
        var postgres = await env.CreateDatabaseAsync();
        var send = await PreloadAsync(env, queue, WarmUp + count, _ => new DispatchRequest
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
        var builder = DispatcherHostBuilder.Create(null, overrides, quietLogs: true);
        builder.AddDispatcherWorker();
        await using var app = builder.Build();
        app.MapAdminEndpoints();

        var succeeded = DispatcherMetrics.Dispatches.WithLabels(destination, nameof(DispatchOutcome.Succeeded), "");
        var t0 = Stopwatch.GetTimestamp();
        await app.StartAsync();
        var tStarted = Stopwatch.GetTimestamp();
        // The measured pass: the completions after the warm-up's, with the host warm and requests already in hand.
        var parkedBefore = 0.0;
        var statementsOn = false;
        long tWarm = 0;
        SystemCpu? system = null;
        var pass = await WarmedPass.MeasureAsync("throughput", () => succeeded.Value, WarmUp, count, PhaseLimit,
            async () =>
            {
                tWarm = Stopwatch.GetTimestamp();
                parkedBefore = DispatcherMetrics.Parked.WithLabels(destination, DestinationPolicy.AtCapacity).Value;
                statementsOn = await ResetStatementsAsync(postgres);
                system = SystemCpu.Start();
            },
            () => Task.CompletedTask);
        if (!pass.Progress.Reached)
            throw new TimeoutException($"throughput: {pass.Progress.Final:N0} of {pass.Progress.Target:N0} requests succeeded within {PhaseLimit.TotalSeconds:0} s");
        var result = pass.Measured;
        var unpublished = await UnpublishedEventsAsync(postgres);
        var timeline = $"host started in {Stopwatch.GetElapsedTime(t0, tStarted).TotalSeconds:0.00} s, its {WarmUp:N0} warm-up requests done at " +
            $"{Stopwatch.GetElapsedTime(t0, tWarm).TotalSeconds:0.00} s; then 10 % of the measured ones after {pass.Progress.SecondsTo(0.1):0.00} s, " +
            $"90 % after {pass.Progress.SecondsTo(0.9):0.00} s, all after {result.Wall.TotalSeconds:0.00} s; " +
            $"parked at the destination's cap {DispatcherMetrics.Parked.WithLabels(destination, DestinationPolicy.AtCapacity).Value - parkedBefore:N0}; " +
            $"methods compiled by the JIT meanwhile {pass.JitMethods:N0} ({pass.JitMs:N0} ms of compiling); " +
            $"`DispatchCompleted` events not yet published when the last request succeeded (the clock stops there): {unpublished:N0}";
        var cpu = system!.Stop();
        await app.StopAsync();
        await Harness.DeleteQueuesAsync(env, queue);
        return (result, send, pass.Progress.SteadyRate(), timeline, cpu, statementsOn ? await StatementsAsync(postgres) : null, await TableScansAsync(postgres));
    }

    private static async Task<long> UnpublishedEventsAsync(string postgres)
    {
        await using var connection = new NpgsqlConnection(postgres);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand("SELECT count(*) FROM outbox WHERE kind = 'completed' AND published_at IS NULL", connection);
        return (long)(await cmd.ExecuteScalarAsync())!;
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
