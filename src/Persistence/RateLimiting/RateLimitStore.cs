using Npgsql;

namespace Dispatcher.Persistence.RateLimiting;

/// <summary>What a worker got from the shared bucket.</summary>
/// <param name="Granted">Permits now owned by the caller (0 when the bucket is empty).</param>
/// <param name="NextPermitIn">When none was granted: how long until the bucket holds one again.</param>
public readonly record struct RateLimitLease(int Granted, TimeSpan NextPermitIn);

/// <summary>
/// A token bucket per destination in PostgreSQL, so that a limit of P/s holds across all workers together.
/// Workers take small leases of permits (a few tens of milliseconds' worth) and spend them locally.
/// </summary>
public sealed class RateLimitStore(DispatcherDataSources dataSources)
{
    // A new bucket starts empty: the first calls to a destination ramp up at the steady rate instead of spending
    // the burst while cold workers are still slow to get their first calls out (which bunches them).
    // Refill by the time elapsed on the database's clock (one clock for every worker), cap at the capacity,
    // then take up to @want whole permits, all under the row lock. Runs on the relaxed pool: losing an update
    // in a PostgreSQL crash can at worst hand out one lease twice.
    private const string TakeSql = """
        INSERT INTO rate_limit_buckets (destination, tokens, updated_at)
        VALUES (@destination, 0, clock_timestamp())
        ON CONFLICT (destination) DO NOTHING;

        WITH cur AS (
            SELECT c.at, LEAST(@capacity, b.tokens + EXTRACT(EPOCH FROM (c.at - b.updated_at)) * @rate) AS available
            FROM rate_limit_buckets b, (SELECT clock_timestamp() AS at) c
            WHERE b.destination = @destination
            FOR UPDATE OF b
        ), g AS (
            SELECT at, available, GREATEST(0, LEAST(@want, floor(available)))::int AS granted FROM cur
        )
        UPDATE rate_limit_buckets b
        SET tokens = g.available - g.granted, updated_at = g.at
        FROM g
        WHERE b.destination = @destination
        RETURNING g.granted, g.available - g.granted
        """;

    public async Task<RateLimitLease> TakeAsync(string destination, int want, double permitsPerSecond, double capacity, CancellationToken cancellationToken)
    {
        await using var cmd = dataSources.Relaxed.CreateCommand(TakeSql);
        cmd.Parameters.Add(new NpgsqlParameter<string>("destination", destination));
        cmd.Parameters.Add(new NpgsqlParameter<int>("want", want));
        cmd.Parameters.Add(new NpgsqlParameter<double>("rate", permitsPerSecond));
        cmd.Parameters.Add(new NpgsqlParameter<double>("capacity", capacity));
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (!reader.HasRows && await reader.NextResultAsync(cancellationToken))
        {
        }
        await reader.ReadAsync(cancellationToken);
        var granted = reader.GetInt32(0);
        var remaining = reader.GetDouble(1);
        var next = granted > 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(Math.Max(0, 1 - remaining) / permitsPerSecond);
        return new RateLimitLease(granted, next);
    }
}
