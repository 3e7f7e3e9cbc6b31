using Dispatcher.Persistence;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using Testcontainers.PostgreSql;
using Testcontainers.RabbitMq;

namespace Dispatcher.Worker.Tests.Infrastructure;

/// <summary>
/// The real RabbitMQ and PostgreSQL the integration tests run against: the ones named by
/// <c>ConnectionStrings__Postgres</c> / <c>ConnectionStrings__RabbitMq</c> (what <c>scripts/services.sh</c>
/// prints), or else containers started through Testcontainers when a Docker engine answers.
/// Each test gets a database of its own, copied from a migrated template.
/// </summary>
public sealed class ServicesFixture : IAsyncLifetime
{
    private readonly string _template = "dispatcher_test_template_" + Guid.NewGuid().ToString("N")[..8];
    private readonly List<string> _databases = [];
    private PostgreSqlContainer? _postgresContainer;
    private RabbitMqContainer? _rabbitContainer;
    private string _adminConnectionString = "";

    public string RabbitMq { get; private set; } = "";

    public async Task InitializeAsync()
    {
        var postgres = Environment.GetEnvironmentVariable("ConnectionStrings__Postgres");
        var rabbit = Environment.GetEnvironmentVariable("ConnectionStrings__RabbitMq");
        if (string.IsNullOrEmpty(postgres) || string.IsNullOrEmpty(rabbit))
        {
            try
            {
                _postgresContainer = new PostgreSqlBuilder("postgres:15-alpine").Build();
                _rabbitContainer = new RabbitMqBuilder("rabbitmq:3.13-management-alpine").Build();
                await Task.WhenAll(_postgresContainer.StartAsync(), _rabbitContainer.StartAsync());
            }
            catch (Exception ex)
            {
                throw new InvalidOperationException(
                    "Integration tests need RabbitMQ and PostgreSQL: run `eval \"$(scripts/services.sh)\"` first " +
                    "(it exports ConnectionStrings__Postgres and ConnectionStrings__RabbitMq), or start a Docker engine.", ex);
            }
            postgres = _postgresContainer.GetConnectionString();
            rabbit = _rabbitContainer.GetConnectionString();
        }
        RabbitMq = rabbit;
        _adminConnectionString = new NpgsqlConnectionStringBuilder(postgres) { Pooling = false }.ConnectionString;

        await ExecuteAsync($"CREATE DATABASE {_template}");
        var options = new DbContextOptionsBuilder<DispatcherDbContext>().UseNpgsql(ConnectionStringFor(_template)).Options;
        await using var db = new DispatcherDbContext(options);
        await db.Database.MigrateAsync();
        NpgsqlConnection.ClearAllPools();
    }

    /// <summary>A new, migrated database for one test.</summary>
    public Task<string> CreateDatabaseAsync() => NewDatabaseAsync($"TEMPLATE {_template}");

    /// <summary>A new database with no schema at all (never migrated).</summary>
    public Task<string> CreateEmptyDatabaseAsync() => NewDatabaseAsync("");

    private async Task<string> NewDatabaseAsync(string options)
    {
        var name = "dispatcher_test_" + Guid.NewGuid().ToString("N")[..12];
        await ExecuteAsync($"CREATE DATABASE {name} {options}");
        lock (_databases)
            _databases.Add(name);
        return ConnectionStringFor(name);
    }

    public string ConnectionStringFor(string database) =>
        new NpgsqlConnectionStringBuilder(_adminConnectionString) { Database = database, Pooling = true, MaxPoolSize = 100 }.ConnectionString;

    private async Task ExecuteAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(_adminConnectionString);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, connection);
        await cmd.ExecuteNonQueryAsync();
    }

    public async Task DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        foreach (var db in _databases.Append(_template))
            await ExecuteAsync($"DROP DATABASE IF EXISTS {db} WITH (FORCE)");
        if (_postgresContainer is not null)
            await _postgresContainer.DisposeAsync();
        if (_rabbitContainer is not null)
            await _rabbitContainer.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class IntegrationCollection : ICollectionFixture<ServicesFixture>
{
    public const string Name = "integration";
}
