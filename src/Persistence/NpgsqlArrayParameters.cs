using Npgsql;

namespace Dispatcher.Persistence;

internal static class NpgsqlArrayParameters
{
    /// <summary>Adds one array parameter built from a column of <paramref name="rows"/> (for <c>unnest</c>).</summary>
    public static void AddArray<TRow, TValue>(this NpgsqlCommand command, string name, IReadOnlyList<TRow> rows, Func<TRow, TValue> column)
    {
        var values = new TValue[rows.Count];
        for (var i = 0; i < values.Length; i++)
            values[i] = column(rows[i]);
        command.Parameters.Add(new NpgsqlParameter<TValue[]>(name, values));
    }
}
