using Dispatcher.Persistence.RateLimiting;
using Npgsql;

namespace Dispatcher.Worker.Tests.Infrastructure;

/// <summary>Sets a shared rate-limit bucket's state directly (a new bucket starts empty and fills at its rate).</summary>
public static class Buckets
{
    /// <summary>Creates <paramref name="destination"/>'s bucket (a take of nothing), then fills every bucket to <paramref name="capacity"/>.</summary>
    public static async Task CreateFullAsync(string postgres, RateLimitStore store, string destination, double rate, double capacity)
    {
        await store.TakeAsync(destination, 0, rate, capacity, CancellationToken.None);
        await FillAsync(postgres, capacity);
    }

    /// <summary>Every bucket in the database holds <paramref name="tokens"/> as of now.</summary>
    public static async Task FillAsync(string postgres, double tokens)
    {
        await using var connection = new NpgsqlConnection(postgres);
        await connection.OpenAsync();
        await using var fill = new NpgsqlCommand("UPDATE rate_limit_buckets SET tokens = @tokens, updated_at = clock_timestamp()", connection);
        fill.Parameters.Add(new NpgsqlParameter<double>("tokens", tokens));
        await fill.ExecuteNonQueryAsync();
    }
}
