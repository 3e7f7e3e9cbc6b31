using Npgsql;

namespace Dispatcher.Persistence.Status;

/// <summary>Per destination: dispatches by state (all workers together) and what live workers report.</summary>
/// <param name="HeldBack">
/// Requests written back into the outbox unclaimed (their destination was at its cap with its queue full, or its
/// breaker open), waiting to come back: pending request rows that are not the message of a Scheduled dispatch.
/// </param>
public sealed record DestinationCounts(string Destination, long InProgress, long Scheduled, long DeadLetters, long SucceededLastHour, long HeldBack = 0);

public sealed record HeartbeatRow(string WorkerId, string Destination, int CircuitState, int InFlight, double PermitsPerSecond, DateTimeOffset UpdatedAt);

/// <summary>Reads and writes what <c>status</c> shows.</summary>
public sealed class StatusStore(DispatcherDataSources dataSources)
{
    public async Task BeatAsync(IReadOnlyList<HeartbeatRow> rows, CancellationToken cancellationToken)
    {
        if (rows.Count == 0)
            return;
        await using var cmd = dataSources.Relaxed.CreateCommand("""
            INSERT INTO worker_heartbeats (worker_id, destination, circuit_state, in_flight, permits_per_second, updated_at)
            SELECT * FROM unnest(@workers, @destinations, @states, @in_flight, @permits, @at)
            ON CONFLICT (worker_id, destination) DO UPDATE
            SET circuit_state = EXCLUDED.circuit_state, in_flight = EXCLUDED.in_flight,
                permits_per_second = EXCLUDED.permits_per_second, updated_at = EXCLUDED.updated_at
            """);
        cmd.AddArray("workers", rows, r => r.WorkerId);
        cmd.AddArray("destinations", rows, r => r.Destination);
        cmd.AddArray("states", rows, r => r.CircuitState);
        cmd.AddArray("in_flight", rows, r => r.InFlight);
        cmd.AddArray("permits", rows, r => r.PermitsPerSecond);
        cmd.AddArray("at", rows, r => r.UpdatedAt);
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Heartbeats newer than <paramref name="since"/>; older ones are pruned.</summary>
    public async Task<List<HeartbeatRow>> LiveHeartbeatsAsync(DateTimeOffset since, CancellationToken cancellationToken)
    {
        await using var batch = dataSources.Durable.CreateBatch();
        var prune = new NpgsqlBatchCommand("DELETE FROM worker_heartbeats WHERE updated_at < @cutoff");
        prune.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("cutoff", since - TimeSpan.FromHours(1)));
        var read = new NpgsqlBatchCommand("""
            SELECT worker_id, destination, circuit_state, in_flight, permits_per_second, updated_at
            FROM worker_heartbeats WHERE updated_at >= @since ORDER BY destination, worker_id
            """);
        read.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("since", since));
        batch.BatchCommands.Add(prune);
        batch.BatchCommands.Add(read);
        var result = new List<HeartbeatRow>();
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            result.Add(new HeartbeatRow(reader.GetString(0), reader.GetString(1), reader.GetInt32(2), reader.GetInt32(3),
                reader.GetDouble(4), reader.GetFieldValue<DateTimeOffset>(5)));
        }
        return result;
    }

    public async Task<List<DestinationCounts>> CountsAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var cmd = dataSources.Durable.CreateCommand("""
            SELECT destination,
                   count(*) FILTER (WHERE state = 'InProgress'),
                   count(*) FILTER (WHERE state = 'Scheduled'),
                   count(*) FILTER (WHERE state = 'DeadLettered'),
                   count(*) FILTER (WHERE state = 'Succeeded' AND completed_at >= @hour_ago)
            FROM dispatches
            WHERE state <> 'Succeeded' OR completed_at >= @hour_ago
            GROUP BY destination
            ORDER BY destination
            """);
        cmd.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("hour_ago", now - TimeSpan.FromHours(1)));
        // Held-back rows name the destination as the request spelled it; configured names match case-insensitively.
        var result = new Dictionary<string, DestinationCounts>(StringComparer.OrdinalIgnoreCase);
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
                result[reader.GetString(0)] = new DestinationCounts(reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3), reader.GetInt64(4));
        }

        // Pending request rows that are not the message of a Scheduled dispatch (a retry, park or replay, counted
        // above) are held-back requests.
        await using var held = dataSources.Durable.CreateCommand("""
            SELECT o.payload->>'destination', count(*)
            FROM outbox o
            WHERE o.kind = 'request' AND o.published_at IS NULL AND o.payload->>'destination' IS NOT NULL
              AND NOT EXISTS (
                  SELECT 1 FROM dispatches d
                  WHERE d.request_id = CASE WHEN o.payload->>'requestId' ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
                                            THEN (o.payload->>'requestId')::uuid END
                    AND d.state = 'Scheduled' AND d.message_id = o.message_id)
            GROUP BY 1
            """);
        await using (var reader = await held.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                var name = reader.GetString(0);
                var counts = result.GetValueOrDefault(name) ?? new DestinationCounts(name, 0, 0, 0, 0);
                result[counts.Destination] = counts with { HeldBack = counts.HeldBack + reader.GetInt64(1) };
            }
        }
        return [.. result.Values.OrderBy(c => c.Destination, StringComparer.OrdinalIgnoreCase)];
    }
}
