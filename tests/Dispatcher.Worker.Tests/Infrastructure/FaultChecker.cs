using Npgsql;

namespace Dispatcher.Worker.Tests.Infrastructure;

/// <summary>
/// What a fault-injection run did to the requests, in the manner of Jepsen's queue checkers: counted from
/// the database (the record of truth) and the downstream's own log of calls.
/// </summary>
public sealed record FaultReport(
    string Case,
    int Attempted,
    int Terminal,
    int Succeeded,
    int DeadLettered,
    int Lost,
    int DuplicateTerminalResults,
    int DuplicateSuccessfulCalls,
    int DuplicatesWithoutSameKey,
    int RecordedDuplicateSuccesses,
    int Recovered)
{
    public override string ToString() =>
        $"| {Case} | {Attempted} | {Terminal} ({Succeeded} ok, {DeadLettered} dead) | {Lost} | {DuplicateTerminalResults} | " +
        $"{DuplicateSuccessfulCalls} ({RecordedDuplicateSuccesses} seen by the worker) | {Recovered} |";

    public const string Header =
        "| case | attempted | acknowledged (terminal) | lost | duplicate terminal results | duplicate successful calls | recovered |\n" +
        "|---|---:|---:|---:|---:|---:|---:|";
}

public static class FaultChecker
{
    /// <param name="faultAt">When the fault struck: requests with a call before and a terminal state after it recovered.</param>
    public static async Task<FaultReport> CheckAsync(string name, Scenario s, IReadOnlyCollection<Guid> attempted, DateTimeOffset faultAt)
    {
        var ids = attempted.ToHashSet();
        var states = await s.StatesAsync();
        var terminal = ids.Where(id => states.TryGetValue(id, out var st) && st.State is "Succeeded" or "DeadLettered").ToList();

        // One terminal result = one 'completed' outbox row (each has its own stable MessageId), per cycle.
        var completedRows = new Dictionary<Guid, int>();
        await using (var connection = new NpgsqlConnection(s.Postgres))
        {
            await connection.OpenAsync();
            await using var cmd = new NpgsqlCommand("SELECT (payload->>'requestId')::uuid, count(*) FROM outbox WHERE kind = 'completed' GROUP BY 1", connection);
            await using var reader = await cmd.ExecuteReaderAsync();
            while (await reader.ReadAsync())
                completedRows[reader.GetGuid(0)] = (int)reader.GetInt64(1);
        }

        var calls = s.Downstream.Calls.ToList();
        var successfulCalls = calls.Where(c => c.Status is >= 200 and < 300).GroupBy(c => c.IdempotencyKey).ToList();
        var completedAt = await CompletedAtAsync(s);
        // Successes the worker itself recorded twice for one request and cycle: it knew of a success and called again.
        long recordedDuplicates;
        await using (var connection = new NpgsqlConnection(s.Postgres))
        {
            await connection.OpenAsync();
            await using var cmd = new NpgsqlCommand(
                "SELECT count(*) FROM (SELECT request_id FROM dispatch_attempts WHERE result = 'Success' " +
                "GROUP BY request_id, cycle HAVING count(*) > 1) d", connection);
            recordedDuplicates = (long)(await cmd.ExecuteScalarAsync())!;
        }
        var recovered = calls.Where(c => c.At < faultAt).Select(c => c.IdempotencyKey).Distinct()
            .Count(k => k is not null && Guid.TryParse(k, out var id) && completedAt.TryGetValue(id, out var at) && at > faultAt);

        return new FaultReport(
            name,
            ids.Count,
            terminal.Count,
            terminal.Count(id => states[id].State == "Succeeded"),
            terminal.Count(id => states[id].State == "DeadLettered"),
            ids.Count - terminal.Count,
            ids.Count(id => completedRows.GetValueOrDefault(id) > 1),
            successfulCalls.Count(g => g.Count() > 1),
            // Every call of a request carries its RequestId as Idempotency-Key: a call without it would be here.
            calls.Count(c => c.IdempotencyKey is null || !Guid.TryParse(c.IdempotencyKey, out _)),
            (int)recordedDuplicates,
            recovered);
    }

    /// <summary>For a few requests with more than one successful call: their calls and recorded attempts.</summary>
    public static async Task<List<string>> ExplainDuplicatesAsync(Scenario s, int max)
    {
        var lines = new List<string>();
        var duplicates = s.Downstream.Calls.Where(c => c.Status is >= 200 and < 300).GroupBy(c => c.IdempotencyKey)
            .Where(g => g.Count() > 1).Take(max).Select(g => g.Key!).ToList();
        await using var connection = new NpgsqlConnection(s.Postgres);
        await connection.OpenAsync();
        foreach (var key in duplicates)
        {
            lines.Add($"request {key}: calls " + string.Join(", ", s.Downstream.Calls.Where(c => c.IdempotencyKey == key)
                .Select(c => $"{c.At:HH:mm:ss.fff}={c.Status}")));
            await using var cmd = new NpgsqlCommand(
                "SELECT cycle, number, started_at, duration_ms, result, status_code, error FROM dispatch_attempts WHERE request_id = @id ORDER BY id", connection);
            cmd.Parameters.AddWithValue("id", Guid.Parse(key));
            await using var reader = await cmd.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                lines.Add($"  attempt {reader.GetInt32(0)}/{reader.GetInt32(1)} at {reader.GetFieldValue<DateTimeOffset>(2):HH:mm:ss.fff} " +
                    $"{reader.GetDouble(3):0} ms {reader.GetString(4)} {(reader.IsDBNull(5) ? "" : reader.GetInt32(5))} {(reader.IsDBNull(6) ? "" : reader.GetString(6))}");
            }
        }
        return lines;
    }

    private static async Task<Dictionary<Guid, DateTimeOffset>> CompletedAtAsync(Scenario s)
    {
        var result = new Dictionary<Guid, DateTimeOffset>();
        await using var connection = new NpgsqlConnection(s.Postgres);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand("SELECT request_id, completed_at FROM dispatches WHERE completed_at IS NOT NULL", connection);
        await using var reader = await cmd.ExecuteReaderAsync();
        while (await reader.ReadAsync())
            result[reader.GetGuid(0)] = reader.GetFieldValue<DateTimeOffset>(1);
        return result;
    }
}
