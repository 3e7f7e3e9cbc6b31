using Npgsql;

namespace Dispatcher.Persistence.RateLimiting;

/// <summary>What a worker got from the shared bucket.</summary>
/// <param name="Granted">Permits now owned by the caller (0 when the bucket is empty).</param>
/// <param name="NextPermitIn">When none was granted: how long until the bucket holds one again.</param>
/// <param name="Slot">The window slot the grant was recorded in (what <see cref="RateLimitStore.GiveBackAsync"/> takes back).</param>
/// <param name="Room">After the grant: how many more the bucket could grant at once (its whole tokens and the window's room, whichever is fewer).</param>
public readonly record struct RateLimitLease(int Granted, TimeSpan NextPermitIn, long Slot = 0, double Room = 0);

/// <summary>
/// A token bucket per destination in PostgreSQL, so that a limit of P/s holds across all workers together, with a
/// sliding 1-second window on top: the bucket paces the grants (Burst at once at most), the window makes sure that
/// no 1-second window ever holds more than ceil(P) grants, whatever the Burst. (A token bucket alone allows P + Burst
/// in a window, so a Burst large enough to ride out workers that were late to ask, on a busy machine, broke the
/// limit; with the window it cannot.) Workers take small leases of permits (a few tens of milliseconds' worth) and
/// spend them locally.
/// </summary>
public sealed class RateLimitStore(DispatcherDataSources dataSources)
{
    /// <summary>Width of one slot of the sliding window.</summary>
    public static readonly TimeSpan SlotWidth = TimeSpan.FromMilliseconds(10);

    // A new bucket starts empty: the first calls to a destination ramp up at the steady rate instead of spending
    // the burst while cold workers are still slow to get their first calls out (which bunches them).
    // Refill by the time elapsed on the database's clock (one clock for every worker), cap at the capacity, then
    // take up to @want whole permits, all under the row lock, within what the window leaves: the grants of the last
    // 101 slots of 10 ms (every 1-second window that ends now lies within them, so the window holds exactly).
    // Runs on the relaxed pool: losing an update in a PostgreSQL crash can at worst hand out one lease twice.
    // The bucket is created (CreateSql) only when the take finds none: a statement per lease fewer than creating it
    // every time (measured in the overhead bench: 1,327 inserts that did nothing in 20 s at 100 requests/s).
    private const string CreateSql = """
        INSERT INTO rate_limit_buckets (destination, tokens, updated_at)
        VALUES (@destination, 0, clock_timestamp())
        ON CONFLICT (destination) DO NOTHING
        """;

    private const string TakeSql = """
        WITH locked AS (
            SELECT b.tokens, b.updated_at, b.window_slots, b.window_counts
            FROM rate_limit_buckets b
            WHERE b.destination = @destination
            FOR UPDATE OF b
        ), cur AS (
            -- The clock is read once the row is locked (a caller that waited for the lock must not refill or record
            -- its grant as of before the previous holder's update).
            SELECT c.at, floor(EXTRACT(EPOCH FROM c.at) * 100)::bigint AS slot,
                   LEAST(@capacity, l.tokens + EXTRACT(EPOCH FROM (c.at - l.updated_at)) * @rate) AS available,
                   l.window_slots, l.window_counts
            FROM locked l, LATERAL (SELECT GREATEST(clock_timestamp(), l.updated_at) AS at) c
        ), w AS (
            SELECT cur.at, cur.slot, cur.available, x.slots, x.counts, COALESCE(x.used, 0)::int AS used, x.oldest
            FROM cur, LATERAL (
                SELECT array_agg(u.s ORDER BY u.s) AS slots, array_agg(u.n ORDER BY u.s) AS counts,
                       -- A slot handed back to 0 frees nothing when it leaves: the oldest that counts has grants.
                       sum(u.n) AS used, min(u.s) FILTER (WHERE u.n > 0) AS oldest
                FROM unnest(cur.window_slots, cur.window_counts) AS u(s, n)
                WHERE u.s > cur.slot - 101
            ) x
        ), g AS (
            SELECT w.*, GREATEST(0, LEAST(@want, floor(w.available), @window_limit - w.used))::int AS granted,
                   cardinality(w.slots) AS n
            FROM w
        )
        UPDATE rate_limit_buckets b
        SET tokens = g.available - g.granted,
            updated_at = g.at,
            window_slots = CASE WHEN g.granted = 0 THEN COALESCE(g.slots, '{}')
                                WHEN g.slots[g.n] = g.slot THEN g.slots
                                ELSE COALESCE(g.slots, '{}') || g.slot END,
            window_counts = CASE WHEN g.granted = 0 THEN COALESCE(g.counts, '{}')
                                 WHEN g.slots[g.n] = g.slot THEN g.counts[1:g.n - 1] || (g.counts[g.n] + g.granted)
                                 ELSE COALESCE(g.counts, '{}') || g.granted END
        FROM g
        WHERE b.destination = @destination
        RETURNING g.granted, g.available - g.granted,
                  -- Window full: when its oldest slot leaves it.
                  CASE WHEN g.used + g.granted >= @window_limit AND g.oldest IS NOT NULL
                       THEN GREATEST(0, (g.oldest + 101) / 100.0 - EXTRACT(EPOCH FROM g.at))::float8 ELSE 0 END,
                  g.slot,
                  GREATEST(0, LEAST(floor(g.available - g.granted), @window_limit - g.used - g.granted))::float8
        """;

    // Permits granted and never spent, handed back: the bucket gets its tokens back (never above its capacity) and
    // each grant's slot its count, if the slot is still in the window. Afterwards the bucket is as if they had never
    // been granted, so every bound holds as before, for the permits actually spent.
    private const string GiveBackSql = """
        WITH r AS (
            SELECT r.s, sum(r.n)::int AS n FROM unnest(@slots, @counts) AS r(s, n) GROUP BY r.s
        )
        UPDATE rate_limit_buckets b
        SET tokens = LEAST(@capacity, b.tokens + (SELECT COALESCE(sum(r.n), 0) FROM r)),
            window_counts = COALESCE((
                SELECT array_agg(GREATEST(0, u.n - COALESCE(r.n, 0)) ORDER BY u.i)
                FROM unnest(b.window_slots, b.window_counts) WITH ORDINALITY AS u(s, n, i)
                LEFT JOIN r ON r.s = u.s), '{}')
        WHERE b.destination = @destination
        """;

    public async Task<RateLimitLease> TakeAsync(string destination, int want, double permitsPerSecond, double capacity, CancellationToken cancellationToken)
    {
        for (var tries = 1; ; tries++)
        {
            if (await TakeOnceAsync(destination, want, permitsPerSecond, capacity, cancellationToken) is { } lease)
                return lease;
            if (tries == 3)
                throw new InvalidOperationException($"The rate-limit bucket of destination '{destination}' could not be created.");
            // No bucket yet: create it (empty) and take again. Two workers may both create it: the second insert does
            // nothing (and its take, if it ran before the first insert committed, sees the row the next time).
            await using var create = dataSources.RelaxedByKey.CreateCommand(CreateSql);
            create.Parameters.Add(new NpgsqlParameter<string>("destination", destination));
            await create.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    private async Task<RateLimitLease?> TakeOnceAsync(string destination, int want, double permitsPerSecond, double capacity, CancellationToken cancellationToken)
    {
        await using var cmd = dataSources.RelaxedByKey.CreateCommand(TakeSql);
        cmd.Parameters.Add(new NpgsqlParameter<string>("destination", destination));
        cmd.Parameters.Add(new NpgsqlParameter<int>("want", want));
        cmd.Parameters.Add(new NpgsqlParameter<double>("rate", permitsPerSecond));
        cmd.Parameters.Add(new NpgsqlParameter<double>("capacity", capacity));
        cmd.Parameters.Add(new NpgsqlParameter<int>("window_limit", WindowLimit(permitsPerSecond)));
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
            return null;
        var granted = reader.GetInt32(0);
        var remaining = reader.GetDouble(1);
        var windowWait = reader.GetDouble(2);
        var slot = reader.GetInt64(3);
        var room = reader.GetDouble(4);
        var next = granted > 0
            ? TimeSpan.Zero
            : TimeSpan.FromSeconds(Math.Max(Math.Max(0, 1 - remaining) / permitsPerSecond, windowWait));
        return new RateLimitLease(granted, next, slot, room);
    }

    /// <summary>
    /// Hands back permits that were granted and will never be spent (a lease's life ran out first):
    /// <paramref name="counts"/>[i] of those granted in <paramref name="slots"/>[i].
    /// </summary>
    public async Task GiveBackAsync(string destination, long[] slots, int[] counts, double capacity, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(slots);
        ArgumentNullException.ThrowIfNull(counts);
        if (slots.Length != counts.Length)
            throw new ArgumentException("One count per slot.", nameof(counts));
        if (slots.Length == 0)
            return;
        await using var cmd = dataSources.RelaxedByKey.CreateCommand(GiveBackSql);
        cmd.Parameters.Add(new NpgsqlParameter<string>("destination", destination));
        cmd.Parameters.Add(new NpgsqlParameter<long[]>("slots", slots));
        cmd.Parameters.Add(new NpgsqlParameter<int[]>("counts", counts));
        cmd.Parameters.Add(new NpgsqlParameter<double>("capacity", capacity));
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Grants allowed in any 1-second window: the rate, rounded up (at least 1).</summary>
    public static int WindowLimit(double permitsPerSecond) => (int)Math.Clamp(Math.Ceiling(permitsPerSecond), 1, int.MaxValue);
}
