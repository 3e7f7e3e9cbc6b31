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
}
