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
        ClaimCommand Claim(Guid token, bool redelivered = false) => new(requestId, "d", "{}", messageId, token, now.AddMinutes(1), null, redelivered);
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

        // The message claims; its redelivery (the broker thought its consumer dead) takes the row over, and its token
        // fences the first delivery out.
        var fenced = Guid.NewGuid();
        var owner = Guid.NewGuid();
        Assert.True((await store.ClaimAsync([Claim(fenced)], now, CancellationToken.None))[0].Claimed);
        Assert.True((await store.ClaimAsync([Claim(owner, redelivered: true)], now, CancellationToken.None))[0].Claimed);

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

    [Fact]
    public async Task A_live_claim_is_taken_over_by_its_own_redelivery_or_retry_or_after_its_lease_but_not_by_a_fresh_copy()
    {
        var postgres = await services.CreateDatabaseAsync();
        await using var dataSources = new DispatcherDataSources(postgres);
        var store = new DispatchStore(dataSources);
        var now = DateTimeOffset.UtcNow;
        var messageId = Guid.NewGuid();
        async Task<bool> ClaimAsync(Guid requestId, Guid? message, Guid token, bool redelivered = false, DateTimeOffset? at = null) =>
            (await store.ClaimAsync([new ClaimCommand(requestId, "d", "{}", message, token, (at ?? now).AddSeconds(30), null, redelivered)],
                at ?? now, CancellationToken.None))[0].Claimed;

        var request = Guid.NewGuid();
        var first = Guid.NewGuid();
        Assert.True(await ClaimAsync(request, messageId, first));
        // The same claim retried after its answer was lost: still its own.
        Assert.True(await ClaimAsync(request, messageId, first));
        // A fresh copy of the owning message (published twice): a duplicate while the owner's lease lives.
        Assert.False(await ClaimAsync(request, messageId, Guid.NewGuid()));
        // Another message for the same request: a duplicate.
        Assert.False(await ClaimAsync(request, Guid.NewGuid(), Guid.NewGuid()));
        // The broker's redelivery of the owning message takes over.
        Assert.True(await ClaimAsync(request, messageId, Guid.NewGuid(), redelivered: true));
        // A redelivery without a MessageId takes over too (it cannot prove ownership, and it may be the owner).
        Assert.True(await ClaimAsync(request, null, Guid.NewGuid(), redelivered: true));
        // Past the lease (30 s here), anyone may take over.
        Assert.True(await ClaimAsync(request, Guid.NewGuid(), Guid.NewGuid(), at: now.AddMinutes(2)));
    }
}
