using System.Net.Mime;
using Dispatcher.Worker.Configuration;
using MassTransit;
using Microsoft.Extensions.Options;

namespace Dispatcher.Worker.Dispatching;

/// <summary>
/// The request endpoint: bounded concurrency (<see cref="WorkerSlots"/>) with a matching prefetch, and both wire formats — the MassTransit
/// envelope (<c>application/vnd.masstransit+json</c>) and plain JSON of the request (<c>application/json</c>,
/// also assumed when a message has no content type).
/// </summary>
internal sealed class DispatchRequestConsumerDefinition : ConsumerDefinition<DispatchRequestConsumer>
{
    private readonly WorkerOptions _worker;
    private readonly int _messageLimit;

    public DispatchRequestConsumerDefinition(IOptions<DispatcherOptions> options)
    {
        _worker = options.Value.Worker;
        EndpointName = _worker.QueueName;
        // The worker's slots plus twice the destinations' caps: see WorkerSlots.
        _messageLimit = WorkerSlots.MessageLimit(options.Value);
        ConcurrentMessageLimit = _messageLimit;
    }

    protected override void ConfigureConsumer(
        IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<DispatchRequestConsumer> consumerConfigurator,
        IRegistrationContext context)
    {
        endpointConfigurator.PrefetchCount = _worker.PrefetchCount > 0 ? _worker.PrefetchCount : _messageLimit;
        endpointConfigurator.UseRawJsonDeserializer(RawSerializerOptions.AnyMessageType, isDefault: true);
        endpointConfigurator.DefaultContentType = new ContentType("application/json");
    }
}
