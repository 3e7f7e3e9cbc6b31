using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Observability;
using Dispatcher.Worker.Outbox;
using Dispatcher.Worker.Tests.Infrastructure;
using Npgsql;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed class OutboxRelayTests(ServicesFixture services)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Requests_sent_back_for_later_do_not_wake_the_relay_one_commit_at_a_time_and_each_is_sent_when_due()
    {
        await using var s = await Scenario.StartAsync(services);
        var requests = Enumerable.Range(0, 100).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        var ids = requests.Select(r => r.RequestId).ToList();
        var claims = DispatcherMetrics.OutboxRelayClaims;

        // A hundred requests sent back for later, each in its own commit (as held-back and parked requests are when
        // they come one at a time), due 6-7 s from now.
        var firstDue = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(6);
        var before = claims.Value;
        var writing = System.Diagnostics.Stopwatch.StartNew();
        await using (var connection = new NpgsqlConnection(s.Postgres))
        {
            await connection.OpenAsync();
            for (var i = 0; i < requests.Count; i++)
            {
                await using var insert = new NpgsqlCommand("""
                    INSERT INTO outbox (message_id, kind, payload, not_before, created_at, publish_attempts)
                    VALUES (@id, 'request', @payload::jsonb, @due, now(), 0)
                    """, connection);
                insert.Parameters.AddWithValue("id", Guid.NewGuid());
                insert.Parameters.AddWithValue("payload", DispatcherJson.Serialize(requests[i]));
                insert.Parameters.AddWithValue("due", firstDue + TimeSpan.FromMilliseconds(10 * i));
                await insert.ExecuteNonQueryAsync();
            }
        }
        var whileWriting = claims.Value - before;
        var seconds = writing.Elapsed.TotalSeconds;
        Assert.True(DateTimeOffset.UtcNow < firstDue, "the rows were written before any fell due");
        // Each commit notified the relays, with when its row falls due: later than the relay's next look (its idle
        // poll, once a second), so none woke it (before, each did: a claim transaction and a query per commit; 91 of
        // the 100 in a run).
        Assert.True(whileWriting <= Math.Ceiling(seconds) + 2,
            $"the relay looked {whileWriting} times while 100 rows due later were written in {seconds:0.0} s (its idle poll: once a second)");

        await s.WaitForTerminalAsync(ids, Timeout);
        var states = await s.StatesAsync();
        Assert.All(ids, id => Assert.Equal("Succeeded", states[id].State));
        // None was sent before it was due.
        Assert.Equal(0, await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'request' AND (published_at IS NULL OR published_at < not_before)"));
        Assert.Equal(100, await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'request'"));
    }

    [Theory]
    [InlineData("", long.MinValue)]
    [InlineData("soon", long.MinValue)]
    [InlineData("-5", long.MinValue)]
    [InlineData("1795996800000000", 639315936000000000)] // 2026-11-30T00:00:00Z
    public void A_notification_announces_when_its_rows_fall_due_and_anything_else_means_now(string payload, long ticks)
    {
        Assert.Equal(ticks, OutboxRelay.AnnouncedDue(payload));
    }
}
