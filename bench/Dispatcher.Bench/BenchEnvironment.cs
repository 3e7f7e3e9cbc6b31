using Dispatcher.Persistence;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Dispatcher.Bench;

/// <summary>The services of a bench run: a fresh database, the broker, a downstream in a process of its own.</summary>
internal sealed class BenchEnvironment : IAsyncDisposable
{
    private readonly string _admin;
    private readonly List<string> _databases = [];

    private BenchEnvironment(string admin, string rabbitMq, Downstream downstream)
    {
        _admin = admin;
        RabbitMq = rabbitMq;
        Downstream = downstream;
    }

    public string RabbitMq { get; }

    public Downstream Downstream { get; }

    public static async Task<BenchEnvironment> CreateAsync()
    {
        var postgres = Environment.GetEnvironmentVariable("ConnectionStrings__Postgres")
            ?? throw new InvalidOperationException("Run eval \"$(scripts/services.sh)\" first (ConnectionStrings__Postgres is not set).");
        var rabbit = Environment.GetEnvironmentVariable("ConnectionStrings__RabbitMq")
            ?? throw new InvalidOperationException("ConnectionStrings__RabbitMq is not set.");
        var admin = new NpgsqlConnectionStringBuilder(postgres) { Pooling = false }.ConnectionString;
        return new BenchEnvironment(admin, rabbit, await Downstream.StartChildAsync());
    }

    public async Task<string> CreateDatabaseAsync()
    {
        var name = "dispatcher_bench_" + Guid.NewGuid().ToString("N")[..10];
        await ExecuteAsync($"CREATE DATABASE {name}");
        _databases.Add(name);
        var cs = new NpgsqlConnectionStringBuilder(_admin) { Database = name, Pooling = true, MaxPoolSize = 100 }.ConnectionString;
        await using var db = new DispatcherDbContext(new DbContextOptionsBuilder<DispatcherDbContext>().UseNpgsql(cs).Options);
        await db.Database.MigrateAsync();
        return cs;
    }

    private async Task ExecuteAsync(string sql)
    {
        await using var c = new NpgsqlConnection(_admin);
        await c.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, c);
        await cmd.ExecuteNonQueryAsync();
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        foreach (var db in _databases)
            await ExecuteAsync($"DROP DATABASE IF EXISTS {db} WITH (FORCE)");
        await Downstream.DisposeAsync();
    }
}
