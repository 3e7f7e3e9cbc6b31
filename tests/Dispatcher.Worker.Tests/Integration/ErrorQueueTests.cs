using System.Text;
using Dispatcher.Worker.ErrorQueue;
using Dispatcher.Worker.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed class ErrorQueueTests(ServicesFixture services)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Unreadable_messages_are_listed_with_their_fault_and_can_be_requeued()
    {
        await using var s = await Scenario.StartAsync(services);
        await s.Bus.PublishRawAsync(s.Queue, Encoding.UTF8.GetBytes("<xml>not json</xml>"), "application/json", "m-1");
        await s.Bus.PublishRawAsync(s.Queue, Encoding.UTF8.GetBytes("{\"truncated\":"), "application/json", "m-2");
        await Eventually.TrueAsync(async () => await s.Bus.MessageCountAsync(s.Queue + "_error") == 2, Timeout, "two messages in the error queue");

        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:RabbitMq"] = s.RabbitMq,
            ["Dispatcher:Worker:QueueName"] = s.Queue,
        }).Build();
        await using var client = new ErrorQueueClient(configuration);

        var listed = await client.ListAsync(10, CancellationToken.None);
        Assert.Equal(["m-1", "m-2"], listed.Select(m => m.MessageId).Order());
        Assert.All(listed, m => Assert.False(string.IsNullOrEmpty(m.FaultExceptionType)));
        Assert.Contains(listed, m => m.BodyPreview.StartsWith("<xml>", StringComparison.Ordinal));
        // Listing takes nothing away.
        await Eventually.TrueAsync(async () => await client.CountAsync(CancellationToken.None) == 2, Timeout, "both still in the error queue");

        // Requeued, they are consumed again (and, still unreadable, fault back into the error queue).
        var moved = await client.RequeueAsync(int.MaxValue, null, CancellationToken.None);
        Assert.Equal(2, moved);
        await Eventually.TrueAsync(async () => await client.CountAsync(CancellationToken.None) == 2
            && await s.Bus.MessageCountAsync(s.Queue) == 0, Timeout, "the requeued messages consumed again");
        var again = await client.ListAsync(10, CancellationToken.None);
        Assert.Equal(["m-1", "m-2"], again.Select(m => m.MessageId).Order());
        Assert.Empty(s.Downstream.Calls);
    }

    [Fact]
    public async Task A_requeued_message_takes_over_the_claim_its_faulted_delivery_left_but_a_fresh_copy_does_not()
    {
        await using var s = await Scenario.StartAsync(services);
        // MassTransit creates the error queue on the first fault.
        await s.Bus.PublishRawAsync(s.Queue, Encoding.UTF8.GetBytes("not json"), "application/json", Guid.NewGuid().ToString());
        await Eventually.TrueAsync(async () => await s.Bus.MessageCountAsync(s.Queue + "_error") == 1, Timeout, "the error queue");

        // What a delivery that claimed its request and then faulted leaves behind: the row InProgress under its
        // MessageId with a live lease, and the message in the error queue.
        var request = s.NewRequest("/orders/faulted");
        var messageId = Guid.NewGuid();
        await s.ScalarAsync($"""
            INSERT INTO dispatches (request_id, destination, state, attempts, cycle, request, message_id, lease_token, lease_until, created_at, updated_at)
            VALUES ('{request.RequestId}', '{s.Destination}', 'InProgress', 0, 0, jsonb_build_object(), '{messageId}', gen_random_uuid(), now() + interval '10 minutes', now(), now())
            RETURNING 1
            """);
        var json = Worker.Dispatching.DispatcherJson.Serialize(request);

        // A fresh copy of that message (published twice) is a duplicate while the claim lives: no call.
        var duplicates = Worker.Observability.DispatcherMetrics.Duplicates.WithLabels(s.Destination);
        var before = duplicates.Value;
        await s.Bus.PublishPlainJsonAsync(s.Queue, json, messageId.ToString());
        await Eventually.TrueAsync(() => duplicates.Value > before, Timeout, "the fresh copy taken for a duplicate");
        Assert.Equal("InProgress", (await s.StatesAsync())[request.RequestId].State);
        Assert.Empty(s.Downstream.CallsOf(request.RequestId));

        // Requeued from the error queue, it takes the claim over and the request completes.
        await s.Bus.PublishPlainJsonAsync(s.Queue + "_error", json, messageId.ToString());
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:RabbitMq"] = s.RabbitMq,
            ["Dispatcher:Worker:QueueName"] = s.Queue,
        }).Build();
        await using var client = new ErrorQueueClient(configuration);
        await Eventually.TrueAsync(async () => await client.CountAsync(CancellationToken.None) == 2, Timeout, "both in the error queue");
        Assert.Equal(2, await client.RequeueAsync(int.MaxValue, null, CancellationToken.None));
        await s.WaitForTerminalAsync([request.RequestId], Timeout);
        Assert.Equal(("Succeeded", (string?)null, 1), (await s.StatesAsync())[request.RequestId]);
        Assert.Single(s.Downstream.CallsOf(request.RequestId));
    }
}
