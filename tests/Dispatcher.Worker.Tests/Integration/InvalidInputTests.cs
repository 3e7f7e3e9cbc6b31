using System.Text;
using Dispatcher.Contracts;
using Dispatcher.Worker.Tests.Infrastructure;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed class InvalidInputTests(ServicesFixture services)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Invalid_requests_become_dead_letters_without_a_call_and_unreadable_bytes_go_to_the_error_queue()
    {
        await using var s = await Scenario.StartAsync(services);
        var expected = new Dictionary<Guid, string>();
        async Task Send(DispatchRequest request, string reason)
        {
            expected[request.RequestId] = reason;
            await s.SendAsync(request);
        }

        await Send(s.NewRequest() with { Destination = "nowhere" }, "UnknownDestination");
        await Send(s.NewRequest("//evil.example/x"), "InvalidRequest");
        await Send(s.NewRequest("http://169.254.169.254/"), "InvalidRequest");
        await Send(s.NewRequest("..\\..\\"), "InvalidRequest");
        await Send(s.NewRequest("/a\r\nHost: evil.example"), "InvalidRequest");
        await Send(s.NewRequest() with { Method = "BREW" }, "InvalidRequest");
        await Send(s.NewRequest() with { Headers = new Dictionary<string, string> { ["X-Injected"] = "a\r\nHost: evil" } }, "InvalidRequest");
        // Plain JSON without a RequestId: a dead letter keyed by the message's MessageId.
        var messageId = Guid.NewGuid();
        expected[messageId] = "InvalidRequest";
        await s.Bus.PublishPlainJsonAsync(s.Queue, $$"""{"destination":"{{s.Destination}}","path":"/orders"}""", messageId.ToString());
        // Bytes that are not JSON at all.
        await s.Bus.PublishRawAsync(s.Queue, Encoding.UTF8.GetBytes("this is not json {"), "application/json");

        await s.WaitForTerminalAsync(expected.Keys, Timeout);
        var states = await s.StatesAsync();
        foreach (var (id, reason) in expected)
            Assert.Equal(("DeadLettered", (string?)reason, 0), states[id]);
        Assert.Empty(s.Downstream.Calls);
        await Eventually.TrueAsync(() => expected.Keys.All(id => s.Bus.EventCount(id) == 1), Timeout, "a DeadLettered event for each");
        Assert.All(expected, kv =>
        {
            var e = s.Bus.Events[kv.Key].Single().Event;
            Assert.Equal(DispatchOutcome.DeadLettered, e.Outcome);
            Assert.Equal(kv.Value, e.Reason.ToString());
            Assert.False(string.IsNullOrWhiteSpace(e.Error));
        });
        await Eventually.TrueAsync(async () => await s.Bus.MessageCountAsync(s.Queue + "_error") == 1, Timeout, "the unreadable message in the error queue");

        // The worker carries on.
        var valid = s.NewRequest();
        await s.SendAsync(valid);
        await s.WaitForTerminalAsync([valid.RequestId], Timeout);
        Assert.Equal("Succeeded", (await s.StatesAsync())[valid.RequestId].State);
        Assert.Single(s.Downstream.Calls);
    }

    [Fact]
    public async Task A_redelivered_invalid_message_records_one_dead_letter()
    {
        await using var s = await Scenario.StartAsync(services);
        var request = s.NewRequest() with { Destination = "nowhere" };

        await s.SendAsync(request);
        await s.SendAsync(request);
        await s.WaitForTerminalAsync([request.RequestId], Timeout);
        await Eventually.TrueAsync(async () => await s.Bus.MessageCountAsync(s.Queue) == 0
            && await s.ScalarAsync("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0, Timeout, "both messages consumed");

        Assert.Equal(1, await s.ScalarAsync("SELECT count(*) FROM outbox"));
        Assert.Equal(1, await s.ScalarAsync("SELECT count(*) FROM dispatches"));
    }
}
