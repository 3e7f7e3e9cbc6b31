using Npgsql;

namespace Dispatcher.Persistence.Outbox;

/// <summary>Claimed outbox rows and the transaction that locks them until <see cref="CommitAsync"/>.</summary>
public sealed class OutboxBatch(NpgsqlConnection connection, NpgsqlTransaction transaction, IReadOnlyList<PendingOutboxMessage> messages)
    : IAsyncDisposable
{
    public IReadOnlyList<PendingOutboxMessage> Messages { get; } = messages;

    /// <summary>Marks the published rows, and pushes the failed ones back by their retry delay, then commits.</summary>
    public async Task CommitAsync(
        IReadOnlyList<long> published,
        IReadOnlyList<(long Id, string Error, DateTimeOffset RetryAt)> failed,
        DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch(connection, transaction);
        await using (batch)
        {
            if (published.Count > 0)
            {
                var markPublished = new NpgsqlBatchCommand("UPDATE outbox SET published_at = @now WHERE id = ANY(@ids)");
                markPublished.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now));
                markPublished.Parameters.Add(new NpgsqlParameter<long[]>("ids", [.. published]));
                batch.BatchCommands.Add(markPublished);
            }
            if (failed.Count > 0)
            {
                var markFailed = new NpgsqlBatchCommand("""
                    UPDATE outbox o SET publish_attempts = o.publish_attempts + 1, last_error = f.error, not_before = f.retry_at
                    FROM unnest(@ids, @errors, @retry_ats) AS f(id, error, retry_at)
                    WHERE o.id = f.id
                    """);
                markFailed.Parameters.Add(new NpgsqlParameter<long[]>("ids", [.. failed.Select(f => f.Id)]));
                markFailed.Parameters.Add(new NpgsqlParameter<string[]>("errors", [.. failed.Select(f => f.Error)]));
                markFailed.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("retry_ats", [.. failed.Select(f => f.RetryAt)]));
                batch.BatchCommands.Add(markFailed);
            }
            if (batch.BatchCommands.Count > 0)
                await batch.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        await transaction.DisposeAsync();
        await connection.DisposeAsync();
    }
}
