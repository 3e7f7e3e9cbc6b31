using Npgsql;

namespace Dispatcher.Persistence.Outbox;

/// <summary>A due outbox row, claimed for publishing.</summary>
public sealed record PendingOutboxMessage(long Id, Guid MessageId, string Kind, string Payload, string? TraceParent, int PublishAttempts);

/// <summary>
/// Reads and settles the outbox for the relays. Several relays (one per worker) share the table: each claims
/// a batch of due rows with <c>FOR UPDATE SKIP LOCKED</c> inside a transaction that stays open while it
/// publishes, so no two relays publish the same row at once, and a relay that dies releases its rows.
/// </summary>
public sealed class OutboxStore(DispatcherDataSources dataSources)
{
    public const string NotifyChannel = "dispatcher_outbox";

    private const string ClaimSql = """
        SELECT id, message_id, kind, payload::text, trace_parent, publish_attempts
        FROM outbox
        WHERE published_at IS NULL AND not_before <= @now
        ORDER BY not_before
        LIMIT @limit
        FOR UPDATE SKIP LOCKED
        """;

    /// <summary>Opens a transaction holding up to <paramref name="limit"/> due rows.</summary>
    public async Task<OutboxBatch> ClaimDueAsync(int limit, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var connection = await dataSources.Durable.OpenConnectionAsync(cancellationToken);
        try
        {
            var transaction = await connection.BeginTransactionAsync(cancellationToken);
            var rows = new List<PendingOutboxMessage>();
            await using (var cmd = new NpgsqlCommand(ClaimSql, connection, transaction))
            {
                cmd.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now));
                cmd.Parameters.Add(new NpgsqlParameter<int>("limit", limit));
                await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
                while (await reader.ReadAsync(cancellationToken))
                {
                    rows.Add(new PendingOutboxMessage(
                        reader.GetInt64(0), reader.GetGuid(1), reader.GetString(2), reader.GetString(3),
                        reader.IsDBNull(4) ? null : reader.GetString(4), reader.GetInt32(5)));
                }
            }
            return new OutboxBatch(connection, transaction, rows);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Writes messages into the outbox on their own, durably, in one statement: requests held back before they were
    /// claimed (see DispatchProcessor), to be sent again when due. Their trigger NOTIFY wakes the relays.
    /// </summary>
    public async Task InsertAsync(IReadOnlyList<Dispatches.OutboxEntry> entries, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var cmd = dataSources.Durable.CreateCommand("""
            INSERT INTO outbox (message_id, kind, payload, trace_parent, not_before, created_at, publish_attempts, held_for)
            SELECT o.message_id, o.kind, o.payload::jsonb, o.trace_parent, o.not_before, @now, 0, o.held_for
            FROM unnest(@message_ids, @kinds, @payloads, @trace_parents, @not_befores, @held_fors)
                 AS o(message_id, kind, payload, trace_parent, not_before, held_for)
            """);
        cmd.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now));
        cmd.AddArray("message_ids", entries, e => e.MessageId);
        cmd.AddArray("kinds", entries, e => e.Kind);
        cmd.AddArray("payloads", entries, e => e.Payload);
        cmd.AddArray("trace_parents", entries, e => e.TraceParent);
        cmd.AddArray("not_befores", entries, e => e.NotBefore);
        cmd.AddArray("held_fors", entries, e => e.HeldFor);
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// Marks rows that a worker published itself, right after the commit that wrote them (still pending ones only:
    /// a relay may have published one too). Runs with <c>synchronous_commit = off</c>: a mark lost in a crash only
    /// means that a relay publishes the event once more, with the same MessageId, when the row falls due.
    /// </summary>
    public async Task MarkPublishedAsync(IReadOnlyList<long> ids, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var cmd = dataSources.Relaxed.CreateCommand(
            "UPDATE outbox SET published_at = @now WHERE id = ANY(@ids) AND published_at IS NULL");
        cmd.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now));
        cmd.Parameters.Add(new NpgsqlParameter<long[]>("ids", [.. ids]));
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// Brings forward the requests for <paramref name="destination"/> that were sent back for
    /// <paramref name="heldFor"/> (its breaker: "circuit open") and are due after <paramref name="latest"/>: due
    /// instead at random over the time the destination takes them at <paramref name="perSecond"/> (the fleet's pace for
    /// it), at least <paramref name="shortest"/> and at most <paramref name="longest"/> from now. For a destination
    /// that recovered after a long outage, whose returns were spread over it; a claimed request's Scheduled row
    /// (<paramref name="destination"/> as configured) shows its new time. Returns how many were brought forward.
    /// </summary>
    public async Task<int> ExpediteAsync(
        string destination, string heldFor, DateTimeOffset now, DateTimeOffset latest, double perSecond, TimeSpan shortest, TimeSpan longest,
        CancellationToken cancellationToken)
    {
        // Through the pending rows' index (not_before), then by the request's destination (names are matched without
        // regard to case, as the worker matches them).
        await using var cmd = dataSources.Durable.CreateCommand("""
            WITH held AS (
                SELECT id FROM outbox
                WHERE published_at IS NULL AND not_before > @latest AND kind = 'request' AND held_for = @held_for
                  AND lower(payload->>'destination') = lower(@destination)
            ), spread AS (
                SELECT LEAST(@longest, GREATEST(@shortest, make_interval(secs => count(*) / @per_second))) AS span FROM held
            ), moved AS (
                UPDATE outbox o SET not_before = @now + random() * spread.span
                FROM held, spread
                WHERE o.id = held.id AND o.published_at IS NULL
                RETURNING o.message_id, o.not_before
            ), shown AS (
                -- The claimed ones' Scheduled rows say when they come back (dispatches show): the row a message owns.
                UPDATE dispatches d SET next_attempt_at = moved.not_before
                FROM moved
                WHERE d.state = 'Scheduled' AND d.destination = @destination AND d.message_id = moved.message_id
            )
            SELECT count(*)::int FROM moved
            """);
        cmd.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now));
        cmd.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("latest", latest));
        cmd.Parameters.Add(new NpgsqlParameter<double>("per_second", double.IsFinite(perSecond) && perSecond > 0 ? perSecond : double.MaxValue));
        cmd.Parameters.Add(new NpgsqlParameter<TimeSpan>("shortest", shortest));
        cmd.Parameters.Add(new NpgsqlParameter<TimeSpan>("longest", longest));
        cmd.Parameters.Add(new NpgsqlParameter<string>("held_for", heldFor));
        cmd.Parameters.Add(new NpgsqlParameter<string>("destination", destination));
        return (int)(await cmd.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>When the earliest pending row falls due (null: nothing pending).</summary>
    public async Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken)
    {
        await using var cmd = dataSources.Durable.CreateCommand("SELECT min(not_before) FROM outbox WHERE published_at IS NULL");
        var value = await cmd.ExecuteScalarAsync(cancellationToken);
        return value is DateTime dt ? new DateTimeOffset(DateTime.SpecifyKind(dt, DateTimeKind.Utc)) : null;
    }

    /// <summary>Rows not yet published, and how many of them are due now.</summary>
    public async Task<(long Pending, long Due)> CountPendingAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var cmd = dataSources.Durable.CreateCommand(
            "SELECT count(*), count(*) FILTER (WHERE not_before <= @now) FROM outbox WHERE published_at IS NULL");
        cmd.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now));
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    /// <summary>Deletes published rows older than <paramref name="cutoff"/>, a bounded batch at a time.</summary>
    public async Task<int> PruneAsync(DateTimeOffset cutoff, int batchSize, CancellationToken cancellationToken)
    {
        await using var cmd = dataSources.Durable.CreateCommand("""
            DELETE FROM outbox WHERE id IN (
                SELECT id FROM outbox WHERE published_at < @cutoff LIMIT @limit FOR UPDATE SKIP LOCKED)
            """);
        cmd.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("cutoff", cutoff));
        cmd.Parameters.Add(new NpgsqlParameter<int>("limit", batchSize));
        return await cmd.ExecuteNonQueryAsync(cancellationToken);
    }
}
