using Npgsql;
using NpgsqlTypes;

namespace Dispatcher.Persistence.DeadLetters;

/// <summary>Lists, groups and replays dead letters (dispatches in state DeadLettered).</summary>
public sealed class DeadLetterStore(DispatcherDataSources dataSources)
{
    private const string Where = """
        d.state = 'DeadLettered'
          AND (@ids IS NULL OR d.request_id = ANY(@ids))
          AND (@destination IS NULL OR d.destination = @destination)
          AND (@reason IS NULL OR d.reason = @reason)
          AND (@since IS NULL OR d.completed_at >= @since)
          AND (@until IS NULL OR d.completed_at < @until)
          AND (NOT @replayable_only OR coalesce(d.request->>'requestId', '') NOT IN ('', '00000000-0000-0000-0000-000000000000'))
        """;

    // A replay starts a new cycle: the row goes back to Scheduled with a new owning message, and that message
    // (the stored request) is committed into the outbox in the same statement. FOR UPDATE SKIP LOCKED plus the
    // state check mean two replays running at once never take the same dead letter: the second finds it
    // locked or no longer DeadLettered. The attempt history stays (it is keyed by cycle).
    private const string ReplaySql = $"""
        WITH picked AS (
            SELECT d.request_id FROM dispatches d
            WHERE {Where}
            ORDER BY d.completed_at, d.request_id
            LIMIT @limit
            FOR UPDATE SKIP LOCKED
        ), upd AS (
            UPDATE dispatches d
            SET state = 'Scheduled', cycle = d.cycle + 1, attempts = 0, reason = NULL, message_id = gen_random_uuid(),
                next_attempt_at = @now, completed_at = NULL, first_attempt_at = NULL, lease_token = NULL,
                lease_until = NULL, updated_at = @now
            FROM picked
            WHERE d.request_id = picked.request_id AND d.state = 'DeadLettered'
            RETURNING d.request_id, d.destination, d.cycle, d.message_id, d.request, d.trace_parent
        ), ob AS (
            INSERT INTO outbox (message_id, kind, payload, trace_parent, not_before, created_at, publish_attempts)
            SELECT message_id, 'request', request, trace_parent, @now, @now, 0 FROM upd
        )
        SELECT request_id, destination, cycle FROM upd
        """;

    public async Task<List<DeadLetterSummary>> ListAsync(DeadLetterFilter filter, int limit, CancellationToken cancellationToken)
    {
        await using var cmd = dataSources.Durable.CreateCommand($"""
            SELECT d.request_id, d.destination, d.reason, d.status_code, d.attempts, d.cycle, d.last_error, d.completed_at,
                   coalesce(d.request->>'method', 'POST'), coalesce(d.request->>'path', '')
            FROM dispatches d
            WHERE {Where}
            ORDER BY d.completed_at DESC, d.request_id
            LIMIT @limit
            """);
        AddFilter(cmd, filter);
        cmd.Parameters.Add(new NpgsqlParameter<int>("limit", limit));
        var result = new List<DeadLetterSummary>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            result.Add(new DeadLetterSummary(
                reader.GetGuid(0), reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetString(2),
                reader.IsDBNull(3) ? null : reader.GetInt32(3), reader.GetInt32(4), reader.GetInt32(5),
                reader.IsDBNull(6) ? null : reader.GetString(6),
                reader.IsDBNull(7) ? null : reader.GetFieldValue<DateTimeOffset>(7), reader.GetString(8), reader.GetString(9)));
        }
        return result;
    }

    /// <summary>Counts by destination, reason, status code and error: what failed and why, at a glance.</summary>
    public async Task<List<DeadLetterGroup>> GroupAsync(DeadLetterFilter filter, int limit, CancellationToken cancellationToken)
    {
        await using var cmd = dataSources.Durable.CreateCommand($"""
            SELECT d.destination, d.reason, d.status_code, left(d.last_error, 120) AS error, count(*)
            FROM dispatches d
            WHERE {Where}
            GROUP BY 1, 2, 3, 4
            ORDER BY 5 DESC, 1, 2
            LIMIT @limit
            """);
        AddFilter(cmd, filter);
        cmd.Parameters.Add(new NpgsqlParameter<int>("limit", limit));
        var result = new List<DeadLetterGroup>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            result.Add(new DeadLetterGroup(reader.GetString(0), reader.IsDBNull(1) ? null : reader.GetString(1),
                reader.IsDBNull(2) ? null : reader.GetInt32(2), reader.IsDBNull(3) ? null : reader.GetString(3), reader.GetInt64(4)));
        }
        return result;
    }

    public async Task<long> CountAsync(DeadLetterFilter filter, CancellationToken cancellationToken)
    {
        await using var cmd = dataSources.Durable.CreateCommand($"SELECT count(*) FROM dispatches d WHERE {Where}");
        AddFilter(cmd, filter);
        return (long)(await cmd.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>Replays up to <paramref name="limit"/> matching dead letters; returns those it took.</summary>
    public async Task<List<ReplayedDeadLetter>> ReplayAsync(DeadLetterFilter filter, int limit, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var cmd = dataSources.Durable.CreateCommand(ReplaySql);
        AddFilter(cmd, filter with { ReplayableOnly = true });
        cmd.Parameters.Add(new NpgsqlParameter<int>("limit", limit));
        cmd.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now));
        var result = new List<ReplayedDeadLetter>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            result.Add(new ReplayedDeadLetter(reader.GetGuid(0), reader.GetString(1), reader.GetInt32(2)));
        return result;
    }

    private static void AddFilter(NpgsqlCommand cmd, DeadLetterFilter filter)
    {
        var p = cmd.Parameters;
        p.Add(new NpgsqlParameter("ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { Value = filter.RequestIds?.ToArray() ?? (object)DBNull.Value });
        p.Add(new NpgsqlParameter("destination", NpgsqlDbType.Text) { Value = (object?)filter.Destination ?? DBNull.Value });
        p.Add(new NpgsqlParameter("reason", NpgsqlDbType.Text) { Value = (object?)filter.Reason ?? DBNull.Value });
        p.Add(new NpgsqlParameter("since", NpgsqlDbType.TimestampTz) { Value = (object?)filter.Since?.ToUniversalTime() ?? DBNull.Value });
        p.Add(new NpgsqlParameter("until", NpgsqlDbType.TimestampTz) { Value = (object?)filter.Until?.ToUniversalTime() ?? DBNull.Value });
        p.Add(new NpgsqlParameter<bool>("replayable_only", filter.ReplayableOnly));
    }
}
