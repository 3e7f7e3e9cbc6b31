using System.Diagnostics;
using Dispatcher.Contracts;
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
                context.ReceiveContext.Redelivered,
                Activity.Current.TraceParent() ?? context.Headers.Get<string>("traceparent")),
            context.CancellationToken);
}
