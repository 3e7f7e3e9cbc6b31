using Npgsql;

namespace Dispatcher.Persistence;

/// <summary>
/// Which migration a database has reached, read without EF Core: a worker checks it at start, and loading EF Core's
/// model and query pipeline just for that cost it ~10 MB of resident memory for its whole life (docs/benchmarks.md).
/// </summary>
public static class SchemaVersion
{
    /// <summary>The newest migration of this build (a test keeps it equal to the last one EF Core knows).</summary>
    public const string Latest = "20261128125815_OutboxHeldFor";

    /// <summary>The newest migration applied to the database; null when none is (no history table yet).</summary>
    public static async Task<string?> LatestAppliedAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using (var exists = new NpgsqlCommand("""SELECT to_regclass('"__EFMigrationsHistory"') IS NOT NULL""", connection))
        {
            if (await exists.ExecuteScalarAsync(cancellationToken) is not true)
                return null;
        }
        await using var latest = new NpgsqlCommand("""SELECT max("MigrationId") FROM "__EFMigrationsHistory" """, connection);
        return await latest.ExecuteScalarAsync(cancellationToken) as string;
    }
}
