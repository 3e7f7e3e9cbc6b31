using Npgsql;

namespace Dispatcher.Worker.Tests.Infrastructure;

/// <summary>One row of <c>dispatch_attempts</c>: one downstream call as the worker recorded it.</summary>
public sealed record AttemptRow(
    Guid RequestId, int Cycle, int Number, DateTimeOffset StartedAt, double DurationMs, string Result, int? StatusCode, string? Error);

/// <summary>Reads of a scenario's database beyond <see cref="Scenario.StatesAsync"/> and <see cref="Scenario.ScalarAsync"/>.</summary>
public static class ScenarioQueries
{
    /// <summary>The whole attempt history, ordered by request, cycle and number.</summary>
    public static Task<List<AttemptRow>> AttemptsAsync(this Scenario scenario) =>
        scenario.QueryAsync(
            "SELECT request_id, cycle, number, started_at, duration_ms, result, status_code, error FROM dispatch_attempts ORDER BY request_id, cycle, number",
            r => new AttemptRow(
                r.GetGuid(0), r.GetInt32(1), r.GetInt32(2), r.GetFieldValue<DateTimeOffset>(3), r.GetDouble(4), r.GetString(5),
                r.IsDBNull(6) ? null : r.GetInt32(6), r.IsDBNull(7) ? null : r.GetString(7)));

    /// <summary>Runs <paramref name="sql"/> on the scenario's database and maps each row.</summary>
    public static async Task<List<T>> QueryAsync<T>(this Scenario scenario, string sql, Func<NpgsqlDataReader, T> map)
    {
        var rows = new List<T>();
        await using var connection = new NpgsqlConnection(scenario.Postgres);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, connection);
        await using var reader = await cmd.ExecuteReaderAsync();
        while (await reader.ReadAsync())
            rows.Add(map(reader));
        return rows;
    }

    /// <summary>The downstream's calls of one request (by its Idempotency-Key), in arrival order.</summary>
    public static List<RecordedCall> CallsOf(this Downstream downstream, Guid requestId)
    {
        var key = requestId.ToString();
        return [.. downstream.Calls.Where(c => c.IdempotencyKey == key).OrderBy(c => c.At)];
    }
}
