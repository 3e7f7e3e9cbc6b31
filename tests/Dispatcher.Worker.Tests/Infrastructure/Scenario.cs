using Dispatcher.Contracts;
using Dispatcher.Worker.Dispatching;
using Npgsql;

namespace Dispatcher.Worker.Tests.Infrastructure;

/// <summary>
/// Everything one integration test needs, all its own: a database, a request queue, a destination name,
/// a downstream on loopback, a producer/subscriber bus and (unless asked otherwise) an in-process worker.
/// Disposing removes the queues it made; the fixture drops the database.
/// </summary>
public sealed class Scenario : IAsyncDisposable
{
    private readonly ServicesFixture _services;

    private Scenario(ServicesFixture services, string postgres, Downstream downstream, TestBus bus)
    {
        _services = services;
        Postgres = postgres;
        Downstream = downstream;
        Bus = bus;
    }

    public string Postgres { get; }

    public string RabbitMq => _services.RabbitMq;

    public string Queue { get; } = $"dispatch-requests-test-{Guid.NewGuid():N}";

    public string Destination { get; } = $"dest{Guid.NewGuid():N}"[..16];

    public Downstream Downstream { get; }

    public TestBus Bus { get; }

    public InProcessWorker? Worker { get; private set; }

    /// <summary>Worker settings: connection strings, queue, and a generous policy for the test destination.</summary>
    public Dictionary<string, string> Settings { get; } = new();

    public static async Task<Scenario> StartAsync(
        ServicesFixture services, IReadOnlyDictionary<string, string>? settings = null, bool startWorker = true)
    {
        var postgres = await services.CreateDatabaseAsync();
        var downstream = await Downstream.StartAsync();
        var bus = await TestBus.StartAsync(services.RabbitMq);
        var scenario = new Scenario(services, postgres, downstream, bus);
        var d = $"Dispatcher:Destinations:{scenario.Destination}";
        scenario.Settings["ConnectionStrings:Postgres"] = postgres;
        scenario.Settings["ConnectionStrings:RabbitMq"] = services.RabbitMq;
        scenario.Settings["Dispatcher:Worker:QueueName"] = scenario.Queue;
        scenario.Settings[$"{d}:BaseUrl"] = downstream.BaseUrl.ToString();
        scenario.Settings[$"{d}:MaxConcurrency"] = "64";
        scenario.Settings[$"{d}:RateLimit:PermitsPerSecond"] = "100000";
        scenario.Settings[$"{d}:Retry:BaseDelay"] = "00:00:00.100";
        foreach (var (k, v) in settings ?? new Dictionary<string, string>())
            scenario.Settings[k.Replace("{destination}", scenario.Destination, StringComparison.Ordinal)] = v;
        if (startWorker)
            await scenario.StartWorkerAsync();
        return scenario;
    }

    public async Task StartWorkerAsync() =>
        Worker = await InProcessWorker.StartAsync(Postgres, RabbitMq, Queue, Settings);

    public async Task StopWorkerAsync()
    {
        if (Worker is not null)
            await Worker.DisposeAsync();
        Worker = null;
    }

    /// <summary>Runs the worker executable's CLI with this scenario's settings (as environment variables); asserts exit code 0.</summary>
    public async Task<string> RunCliAsync(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Dispatcher.Worker.dll"));
        foreach (var a in args)
            info.ArgumentList.Add(a);
        foreach (var (k, v) in Settings)
            info.Environment[k.Replace(":", "__", StringComparison.Ordinal)] = v;
        foreach (var (k, v) in environment ?? new Dictionary<string, string>())
            info.Environment[k] = v;
        using var process = System.Diagnostics.Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"{string.Join(' ', args)} exited {process.ExitCode}: {await stderr}");
        return await stdout + await stderr;
    }

    public DispatchRequest NewRequest(string path = "/orders", string method = "POST", string? body = "{\"amount\":1}") => new()
    {
        RequestId = Guid.NewGuid(),
        Destination = Destination,
        Method = method,
        Path = path,
        Body = body,
        Metadata = new Dictionary<string, string> { ["test"] = "yes" },
    };

    public Task SendAsync(DispatchRequest request) => Bus.SendEnvelopeAsync(Queue, request);

    public Task PublishPlainJsonAsync(DispatchRequest request, string? messageId = null) =>
        Bus.PublishPlainJsonAsync(Queue, DispatcherJson.Serialize(request), messageId);

    /// <summary>State and reason of each dispatch row, by RequestId.</summary>
    public async Task<Dictionary<Guid, (string State, string? Reason, int Attempts)>> StatesAsync()
    {
        var result = new Dictionary<Guid, (string, string?, int)>();
        await using var connection = new NpgsqlConnection(Postgres);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand("SELECT request_id, state, reason, attempts FROM dispatches", connection);
        await using var reader = await cmd.ExecuteReaderAsync();
        while (await reader.ReadAsync())
            result[reader.GetGuid(0)] = (reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetString(2), reader.GetInt32(3));
        return result;
    }

    public async Task<long> ScalarAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(Postgres);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, connection);
        return Convert.ToInt64(await cmd.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
    }

    public async Task WaitForTerminalAsync(IReadOnlyCollection<Guid> ids, TimeSpan timeout)
    {
        var wanted = ids.ToHashSet();
        await Eventually.TrueAsync(async () =>
        {
            var states = await StatesAsync();
            return wanted.All(id => states.TryGetValue(id, out var s) && s.State is "Succeeded" or "DeadLettered");
        }, timeout, $"{ids.Count} dispatches to reach a terminal state");
    }

    public async ValueTask DisposeAsync()
    {
        await StopWorkerAsync();
        await Bus.DeleteQueuesAsync(Queue, Queue + "_error", Queue + "_skipped");
        await Bus.DisposeAsync();
        await Downstream.DisposeAsync();
    }
}
