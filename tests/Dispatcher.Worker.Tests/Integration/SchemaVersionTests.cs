using Dispatcher.Persistence;
using Dispatcher.Worker.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Dispatcher.Worker.Tests.Integration;

/// <summary>The worker's start-up schema check (plain SQL, without EF Core; see SchemaVersion).</summary>
[Collection(IntegrationCollection.Name)]
public sealed class SchemaVersionTests(ServicesFixture services)
{
    [Fact]
    public void The_version_a_worker_requires_is_the_last_migration_EF_Core_knows()
    {
        var options = new DbContextOptionsBuilder<DispatcherDbContext>().UseNpgsql("Host=127.0.0.1;Database=unused").Options;
        using var db = new DispatcherDbContext(options);
        Assert.Equal(SchemaVersion.Latest, db.Database.GetMigrations().Last());
    }

    [Fact]
    public async Task A_migrated_database_is_at_the_latest_version_and_an_empty_one_at_none()
    {
        await using (var migrated = NpgsqlDataSource.Create(await services.CreateDatabaseAsync()))
            Assert.Equal(SchemaVersion.Latest, await SchemaVersion.LatestAppliedAsync(migrated, CancellationToken.None));
        await using var empty = NpgsqlDataSource.Create(await services.CreateEmptyDatabaseAsync());
        Assert.Null(await SchemaVersion.LatestAppliedAsync(empty, CancellationToken.None));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_worker_refuses_to_start_on_a_database_that_is_not_migrated_or_is_behind(bool behind)
    {
        var postgres = behind ? await services.CreateDatabaseAsync() : await services.CreateEmptyDatabaseAsync();
        if (behind)
        {
            // As if the newest migration had not been applied yet.
            await using var connection = new NpgsqlConnection(postgres);
            await connection.OpenAsync();
            await using var cmd = new NpgsqlCommand("""DELETE FROM "__EFMigrationsHistory" WHERE "MigrationId" = @id""", connection);
            cmd.Parameters.AddWithValue("id", SchemaVersion.Latest);
            Assert.Equal(1, await cmd.ExecuteNonQueryAsync());
        }

        var error = await Assert.ThrowsAnyAsync<Exception>(() => InProcessWorker.StartAsync(
            postgres, services.RabbitMq, $"schema-test-{Guid.NewGuid():N}",
            new Dictionary<string, string> { ["Dispatcher:Destinations:partner:BaseUrl"] = "http://127.0.0.1:9/" }));
        Assert.Contains("not up to date", error.Message, StringComparison.Ordinal);
        Assert.Contains(SchemaVersion.Latest, error.Message, StringComparison.Ordinal);
        Assert.Contains("'migrate'", error.Message, StringComparison.Ordinal);
    }
}
