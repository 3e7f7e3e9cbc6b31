using Dispatcher.Persistence;
using Dispatcher.Persistence.Dispatches;
using Dispatcher.Persistence.Model;
using Dispatcher.Worker.Tests.Infrastructure;
using Npgsql;

namespace Dispatcher.Worker.Tests.Persistence;

[Collection(IntegrationCollection.Name)]
public sealed class DispatchStoreTests(ServicesFixture services)
{
    [Fact]
    public async Task A_batch_holding_the_owner_and_a_fenced_out_completion_of_one_request_applies_and_publishes_only_the_owner()
    {
        var postgres = await services.CreateDatabaseAsync();
        await using var dataSources = new DispatcherDataSources(postgres);
        var store = new DispatchStore(dataSources);
        var now = DateTimeOffset.UtcNow;
        var requestId = Guid.NewGuid();
        var messageId = Guid.NewGuid();
        ClaimCommand Claim(Guid token) => new(requestId, "d", "{}", messageId, token, now.AddMinutes(1), null);
        CompletionCommand Complete(Guid token, Guid eventId) => new()
        {
            RequestId = requestId,
            LeaseToken = token,
            State = DispatchState.Succeeded,
            Cycle = 0,
            Attempt = new AttemptRecord(1, now, 5, "Success", 200, null),
            StatusCode = 200,
            CompletedAt = now,
            Now = now,
            Outbox = new OutboxEntry(eventId, "completed", $"{{\"requestId\":\"{requestId}\"}}", now, null),
        };

        // A first copy claims; a second copy of the same message takes the row over (its token fences the first out).
        var fenced = Guid.NewGuid();
        var owner = Guid.NewGuid();
        Assert.True((await store.ClaimAsync([Claim(fenced)], now, CancellationToken.None))[0].Claimed);
        Assert.True((await store.ClaimAsync([Claim(owner)], now, CancellationToken.None))[0].Claimed);

        // Both finish together and their completions share one batch.
        var ownerEvent = Guid.NewGuid();
        var results = await store.CompleteAsync([Complete(fenced, Guid.NewGuid()), Complete(owner, ownerEvent)], now, CancellationToken.None);

        Assert.False(results[0].Applied);
        Assert.Null(results[0].OutboxId);
        Assert.True(results[1].Applied);
        Assert.NotNull(results[1].OutboxId);
        await using var connection = new NpgsqlConnection(postgres);
        await connection.OpenAsync();
        await using var events = new NpgsqlCommand("SELECT message_id FROM outbox WHERE kind = 'completed'", connection);
        var written = new List<Guid>();
        await using (var reader = await events.ExecuteReaderAsync())
            while (await reader.ReadAsync())
                written.Add(reader.GetGuid(0));
        Assert.Equal([ownerEvent], written);
        // Both calls happened: both are in the history.
        await using var attempts = new NpgsqlCommand("SELECT count(*) FROM dispatch_attempts", connection);
        Assert.Equal(2L, await attempts.ExecuteScalarAsync());
    }
}
