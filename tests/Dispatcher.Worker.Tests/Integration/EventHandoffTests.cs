using System.Text.Json.Nodes;
using Dispatcher.Contracts;
using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Tests.Infrastructure;
using Npgsql;

namespace Dispatcher.Worker.Tests.Integration;

/// <summary>
/// A worker publishes its own DispatchCompleted events right after the commit (EventHandoff); the outbox rows fall
/// due for the relays only after Outbox:HandoffGrace, as the fallback for a worker that dies first.
/// </summary>
[Collection(IntegrationCollection.Name)]
public sealed class EventHandoffTests(ServicesFixture services)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task The_worker_publishes_its_own_events_before_their_rows_fall_due_for_the_relays()
    {
        await using var s = await Scenario.StartAsync(services, new Dictionary<string, string>
        {
            ["Dispatcher:Outbox:HandoffGrace"] = "00:00:30",
        });
        var requests = Enumerable.Range(0, 200).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        foreach (var r in requests)
            await s.SendAsync(r);
        await Eventually.TrueAsync(() => requests.All(r => s.Bus.EventCount(r.RequestId) >= 1), Timeout, "200 events");
        await Eventually.TrueAsync(async () => await s.ScalarAsync("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0,
            Timeout, "every row marked published");

        // Published (and marked) long before any relay could have taken them: due 30 s after the commit.
        var rows = await s.QueryAsync(
            "SELECT message_id, extract(epoch FROM not_before - created_at), published_at < not_before FROM outbox WHERE kind = 'completed'",
            r => (MessageId: r.GetGuid(0), Grace: r.GetDouble(1), Early: r.GetBoolean(2)));
        Assert.Equal(200, rows.Count);
        // not_before is the completion time + 30 s; created_at is the (slightly later) time its group commit ran.
        Assert.All(rows, r => Assert.InRange(r.Grace, 29.0, 30.01));
        Assert.All(rows, r => Assert.True(r.Early));
        // Each event once, with its row's MessageId.
        var messageIds = rows.Select(r => r.MessageId).ToHashSet();
        Assert.All(requests, r =>
        {
            var e = Assert.Single(s.Bus.Events[r.RequestId]);
            Assert.Contains(e.MessageId!.Value, messageIds);
            Assert.Equal(DispatchOutcome.Succeeded, e.Event.Outcome);
        });
    }

    [Fact]
    public async Task Handed_off_events_reach_MassTransit_subscribers_in_the_envelope_MassTransit_itself_publishes()
    {
        // The worker publishes its own events on an AMQP channel of its own (CompletedEventPublisher); the relays
        // publish with IBus.Publish. A subscriber must not be able to tell them apart: same exchange, content type,
        // message types, source address, host, persistent delivery, MessageId and traceparent in both places.
        await using var s = await Scenario.StartAsync(services, new Dictionary<string, string>
        {
            ["Dispatcher:Outbox:HandoffGrace"] = "00:00:30",
        });
        var requests = Enumerable.Range(0, 20).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        foreach (var r in requests)
            await s.SendAsync(r);
        await Eventually.TrueAsync(() => requests.All(r => s.Bus.EventCount(r.RequestId) >= 1), Timeout, "20 handed-off events");
        Assert.Equal(20, await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'completed' AND published_at < not_before"));

        // Rows due now, as a dead worker leaves them: the relay publishes these through MassTransit.
        var relayed = Enumerable.Range(0, 5).Select(_ => Guid.NewGuid()).ToList();
        await LeaveUnpublishedEventsAsync(s, relayed, DateTimeOffset.UtcNow, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        await Eventually.TrueAsync(() => relayed.All(id => s.Bus.EventCount(id) == 1), Timeout, "5 relayed events");

        var payloads = (await s.QueryAsync("SELECT message_id, payload::text FROM outbox WHERE kind = 'completed'",
            r => (Id: r.GetGuid(0), Payload: r.GetString(1)))).ToDictionary(p => p.Id, p => p.Payload);
        var reference = Assert.Single(s.Bus.Events[relayed[0]]).Envelope!;
        Assert.Equal("application/vnd.masstransit+json", reference.ContentType);
        Assert.Equal("urn:message:Dispatcher.Contracts:DispatchCompleted", reference.MessageTypes);
        Assert.True(reference.Persistent);
        foreach (var r in requests)
        {
            var e = Assert.Single(s.Bus.Events[r.RequestId]);
            var envelope = e.Envelope!;
            Assert.Equal(reference.ContentType, envelope.ContentType);
            Assert.Equal(reference.SourceAddress, envelope.SourceAddress);
            Assert.Equal(reference.DestinationAddress, envelope.DestinationAddress);
            Assert.Equal(reference.MessageTypes, envelope.MessageTypes);
            Assert.Equal(reference.HostProcess, envelope.HostProcess);
            Assert.Equal(reference.HostMassTransitVersion, envelope.HostMassTransitVersion);
            Assert.Equal(reference.Persistent, envelope.Persistent);
            Assert.NotNull(envelope.ConversationId);
            Assert.InRange(envelope.SentTime!.Value, DateTime.UtcNow.AddMinutes(-2), DateTime.UtcNow.AddSeconds(1));
            Assert.Equal(e.MessageId!.Value.ToString(), envelope.TransportMessageId);
            Assert.NotNull(e.TraceParent);
            Assert.Equal(e.TraceParent, envelope.TransportTraceParent);
            Assert.Equal(r.RequestId, e.Event.RequestId);
            Assert.Equal(DispatchOutcome.Succeeded, e.Event.Outcome);
            Assert.Equal(200, e.Event.StatusCode);
            // The whole event as the subscriber read it is the outbox row's payload (jsonb: compared as JSON).
            Assert.True(JsonNode.DeepEquals(JsonNode.Parse(DispatcherJson.Serialize(e.Event)), JsonNode.Parse(payloads[e.MessageId!.Value])),
                $"event {e.MessageId} differs from its outbox row");
        }
        foreach (var id in relayed)
        {
            var e = Assert.Single(s.Bus.Events[id]);
            Assert.Equal(e.MessageId!.Value.ToString(), e.Envelope!.TransportMessageId);
            Assert.Equal("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", e.TraceParent);
            Assert.Equal(e.TraceParent, e.Envelope.TransportTraceParent);
        }
    }

    [Fact]
    public async Task With_HandoffGrace_zero_the_relays_publish_every_event_once_due()
    {
        await using var s = await Scenario.StartAsync(services, new Dictionary<string, string>
        {
            ["Dispatcher:Outbox:HandoffGrace"] = "00:00:00",
        });
        var requests = Enumerable.Range(0, 50).Select(i => s.NewRequest($"/orders/{i}")).ToList();
        foreach (var r in requests)
            await s.SendAsync(r);
        await Eventually.TrueAsync(() => requests.All(r => s.Bus.EventCount(r.RequestId) >= 1), Timeout, "50 events");
        await Eventually.TrueAsync(async () => await s.ScalarAsync("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0,
            Timeout, "every row marked published");

        Assert.Equal(50, await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'completed' AND not_before <= created_at"));
        Assert.Equal(50, await s.ScalarAsync("SELECT count(*) FROM outbox WHERE kind = 'completed' AND published_at >= not_before"));
        Assert.All(requests, r => Assert.Single(s.Bus.Events[r.RequestId]));
    }

    [Fact]
    public async Task Events_a_dead_worker_left_unpublished_are_published_by_a_relay_once_due_and_not_before()
    {
        // What a worker killed between its commit and its own publish leaves behind: committed 'completed' rows due
        // in the future. The commit wakes no relay (the trigger notifies only for due rows and requests); a relay
        // publishes each one when it falls due, and not earlier.
        await using var s = await Scenario.StartAsync(services);
        var due = DateTimeOffset.UtcNow.AddSeconds(2);
        var ids = Enumerable.Range(0, 20).Select(_ => Guid.NewGuid()).ToList();
        await LeaveUnpublishedEventsAsync(s, ids, due, traceParent: null);

        await Eventually.TrueAsync(() => ids.All(id => s.Bus.EventCount(id) == 1), Timeout, "each leftover event to arrive once");
        var early = await s.ScalarAsync("SELECT count(*) FROM outbox WHERE published_at < not_before");
        Assert.Equal(0, early);
    }

    [Fact]
    public async Task The_outbox_trigger_wakes_the_relays_only_for_rows_they_can_publish_now_or_must_schedule()
    {
        await using var s = await Scenario.StartAsync(services, startWorker: false);
        await using var listener = new NpgsqlConnection(s.Postgres);
        await listener.OpenAsync();
        var wakeUps = 0;
        var markers = 0;
        listener.Notification += (_, e) =>
        {
            if (e.Payload == "marker")
                Interlocked.Increment(ref markers);
            else
                Interlocked.Increment(ref wakeUps);
        };
        await using (var listen = new NpgsqlCommand("LISTEN dispatcher_outbox", listener))
            await listen.ExecuteNonQueryAsync();

        async Task<int> InsertAndCountAsync(string kind, string notBefore)
        {
            var before = Volatile.Read(ref wakeUps);
            var markersBefore = Volatile.Read(ref markers);
            await using var connection = new NpgsqlConnection(s.Postgres);
            await connection.OpenAsync();
            await using (var insert = new NpgsqlCommand(
                $"INSERT INTO outbox (message_id, kind, payload, not_before, created_at, publish_attempts) VALUES (gen_random_uuid(), '{kind}', '{{}}', {notBefore}, now(), 0)",
                connection))
            {
                await insert.ExecuteNonQueryAsync();
            }
            // A marker on the same channel, committed after the insert: notifications arrive in commit order, so
            // once the marker is here the insert's own notification (if it sent one) has arrived too.
            await using (var marker = new NpgsqlCommand("SELECT pg_notify('dispatcher_outbox', 'marker')", connection))
                await marker.ExecuteNonQueryAsync();
            while (Volatile.Read(ref markers) == markersBefore)
                Assert.True(await listener.WaitAsync(TimeSpan.FromSeconds(10)), "the marker notification did not arrive");
            return Volatile.Read(ref wakeUps) - before;
        }

        Assert.Equal(0, await InsertAndCountAsync("completed", "now() + interval '5 seconds'"));
        Assert.Equal(1, await InsertAndCountAsync("completed", "now()"));
        Assert.Equal(1, await InsertAndCountAsync("request", "now() + interval '5 seconds'"));
    }

    /// <summary>
    /// What a worker killed between its commit and its own publish leaves behind: committed 'completed' outbox rows,
    /// due at <paramref name="due"/>, for the relays to publish (through MassTransit).
    /// </summary>
    private static async Task LeaveUnpublishedEventsAsync(Scenario s, IEnumerable<Guid> requestIds, DateTimeOffset due, string? traceParent)
    {
        await using var connection = new NpgsqlConnection(s.Postgres);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand("""
            INSERT INTO outbox (message_id, kind, payload, not_before, created_at, publish_attempts, trace_parent)
            SELECT gen_random_uuid(), 'completed', p::jsonb, @due, now(), 0, @trace_parent FROM unnest(@payloads) AS t(p)
            """, connection);
        cmd.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("due", due));
        cmd.Parameters.Add(new NpgsqlParameter<string?>("trace_parent", traceParent));
        cmd.Parameters.Add(new NpgsqlParameter<string[]>("payloads", [.. requestIds.Select(id => DispatcherJson.Serialize(new DispatchCompleted
        {
            RequestId = id,
            Destination = s.Destination,
            Outcome = DispatchOutcome.Succeeded,
            Attempts = 1,
            CompletedAt = due,
        }))]));
        await cmd.ExecuteNonQueryAsync();
    }
}
