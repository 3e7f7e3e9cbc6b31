using Dispatcher.Contracts;
using Dispatcher.Worker.Observability;
using MassTransit;

namespace Dispatcher.Worker.Dispatching;

/// <summary>Consumes <see cref="DispatchRequest"/> from <c>dispatch-requests</c> and hands it to the processor.</summary>
internal sealed class DispatchRequestConsumer(DispatchProcessor processor) : IConsumer<DispatchRequest>
{
    public Task Consume(ConsumeContext<DispatchRequest> context) =>
        processor.ProcessAsync(
            new IncomingDispatch(
                context.Message,
                context.MessageId,
                context.ReceiveContext.Redelivered || context.Headers.TryGetHeader(ErrorQueue.ErrorQueueClient.RequeuedHeader, out _),
                DispatchTracing.ParentOf(context)),
            context.CancellationToken);
}
