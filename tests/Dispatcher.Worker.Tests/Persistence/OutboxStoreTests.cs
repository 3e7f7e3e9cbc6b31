using Dispatcher.Persistence;
using Dispatcher.Persistence.Dispatches;
using Dispatcher.Persistence.Model;
using Dispatcher.Persistence.Outbox;
using Dispatcher.Worker.Tests.Infrastructure;
using Npgsql;

namespace Dispatcher.Worker.Tests.Persistence;

[Collection(IntegrationCollection.Name)]
public sealed class OutboxStoreTests(ServicesFixture services)
{
    [Fact]
    public async Task Bringing_a_recovered_destinations_backlog_forward_moves_only_what_its_breaker_sent_back_for_later()
    {
        var postgres = await services.CreateDatabaseAsync();
        await using var dataSources = new DispatcherDataSources(postgres);
        var store = new OutboxStore(dataSources);
        var now = DateTimeOffset.UtcNow;
        var later = now.AddMinutes(3);
        OutboxEntry Row(string destination, DateTimeOffset due, string? heldFor) =>
            new(Guid.NewGuid(), OutboxKinds.Request, $"{{\"destination\":\"{destination}\"}}", due, null, heldFor);
        var moved = new[] { Row("pay", later, "circuit open"), Row("PAY", later, "circuit open") };
        var kept = new[]
        {
            Row("pay", later, null), // a retry (a Retry-After, say): its time is the partner's
            Row("pay", later, "MaxConcurrency reached"),
            Row("other", later, "circuit open"),
            Row("pay", now.AddSeconds(5), "circuit open"), // due within the line already
        };
        await store.InsertAsync([.. moved, .. kept], now, CancellationToken.None);
        // The first was a claimed request, parked: its Scheduled row (owned by the outbox row's message) says when.
        await using (var connection = new NpgsqlConnection(postgres))
        {
            await connection.OpenAsync();
            await using var scheduled = new NpgsqlCommand("""
                INSERT INTO dispatches (request_id, destination, state, attempts, cycle, request, message_id, next_attempt_at, created_at, updated_at)
                VALUES (gen_random_uuid(), 'Pay', 'Scheduled', 1, 0, '{}', @message_id, @due, now(), now())
                """, connection);
            scheduled.Parameters.AddWithValue("message_id", moved[0].MessageId);
            scheduled.Parameters.AddWithValue("due", later);
            await scheduled.ExecuteNonQueryAsync();
        }

        var count = await store.ExpediteAsync("Pay", "circuit open", now, now.AddSeconds(10), perSecond: 1000,
            TimeSpan.FromSeconds(10), TimeSpan.FromMinutes(5), CancellationToken.None);

        Assert.Equal(2, count);
        var due = await DueTimesAsync(postgres);
        Assert.All(moved, m => Assert.InRange(due[m.MessageId], now.AddMilliseconds(-1), now.AddSeconds(10)));
        Assert.Equal(due[moved[0].MessageId], await NextAttemptAsync(postgres, moved[0].MessageId));
        Assert.All(kept, k => Assert.Equal(k.NotBefore.UtcTicks / 10, due[k.MessageId].UtcTicks / 10)); // (PostgreSQL keeps microseconds)
        // A second worker whose breaker closes too finds nothing due that late.
        Assert.Equal(0, await store.ExpediteAsync("pay", "circuit open", now, now.AddSeconds(10), perSecond: 1000,
            TimeSpan.FromSeconds(10), TimeSpan.FromMinutes(5), CancellationToken.None));
    }

    [Fact]
    public async Task A_backlog_brought_forward_is_spread_over_the_time_the_destination_takes_it_within_the_longest_spread()
    {
        var postgres = await services.CreateDatabaseAsync();
        await using var dataSources = new DispatcherDataSources(postgres);
        var store = new OutboxStore(dataSources);
        var now = DateTimeOffset.UtcNow;
        var rows = Enumerable.Range(0, 200).Select(_ => new OutboxEntry(
            Guid.NewGuid(), OutboxKinds.Request, "{\"destination\":\"slow\"}", now.AddMinutes(4), null, "circuit open")).ToList();
        await store.InsertAsync(rows, now, CancellationToken.None);

        // 200 requests at 2 a second: over 100 s, not the 10-s line (they would go round the cap again).
        Assert.Equal(200, await store.ExpediteAsync("slow", "circuit open", now, now.AddSeconds(10), perSecond: 2,
            TimeSpan.FromSeconds(10), TimeSpan.FromMinutes(5), CancellationToken.None));
        var due = (await DueTimesAsync(postgres)).Values.ToList();
        Assert.All(due, d => Assert.InRange(d, now.AddMilliseconds(-1), now.AddSeconds(100)));
        Assert.Contains(due, d => d > now.AddSeconds(60));

        // At 0.1 a second they would take 2,000 s: at most the longest spread. An unknown pace: the line.
        await using (var connection = new NpgsqlConnection(postgres))
        {
            await connection.OpenAsync();
            await using var reset = new NpgsqlCommand("UPDATE outbox SET not_before = now() + interval '4 minutes'", connection);
            await reset.ExecuteNonQueryAsync();
        }
        Assert.Equal(200, await store.ExpediteAsync("slow", "circuit open", now, now.AddSeconds(10), perSecond: 0.1,
            TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30), CancellationToken.None));
        Assert.All((await DueTimesAsync(postgres)).Values, d => Assert.InRange(d, now.AddMilliseconds(-1), now.AddSeconds(30)));
    }

    private static async Task<DateTimeOffset> NextAttemptAsync(string postgres, Guid messageId)
    {
        await using var connection = new NpgsqlConnection(postgres);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand("SELECT next_attempt_at FROM dispatches WHERE message_id = @m", connection);
        cmd.Parameters.AddWithValue("m", messageId);
        await using var reader = await cmd.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        return reader.GetFieldValue<DateTimeOffset>(0);
    }

    private static async Task<Dictionary<Guid, DateTimeOffset>> DueTimesAsync(string postgres)
    {
        await using var connection = new NpgsqlConnection(postgres);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand("SELECT message_id, not_before FROM outbox", connection);
        await using var reader = await cmd.ExecuteReaderAsync();
        var result = new Dictionary<Guid, DateTimeOffset>();
        while (await reader.ReadAsync())
            result[reader.GetGuid(0)] = reader.GetFieldValue<DateTimeOffset>(1);
        return result;
    }
}
