using System.Text.Json;
using Dispatcher.Contracts;
using Dispatcher.Worker.Hosting;
using Dispatcher.Worker.Observability;
using MassTransit;
using MassTransit.Metadata;
using MassTransit.RabbitMqTransport;
using MassTransit.Serialization;
using RabbitMQ.Client;

namespace Dispatcher.Worker.Outbox;

/// <summary>
/// Publishes the worker's own <see cref="DispatchCompleted"/> events straight on an AMQP channel with publisher
/// confirms, in MassTransit's envelope (<c>application/vnd.masstransit+json</c>) on the exchange MassTransit
/// publishes that type to, so subscribers see what <c>IBus.Publish</c> would have sent: the same exchange, MessageId,
/// message types, <c>traceparent</c> header, source address and host, and the event's JSON as its outbox row holds it.
/// MassTransit's publish pipeline cost about a fifth of the worker's allocations per dispatch (send context, pipe
/// agents, the event serialized a second time, indented, and copied to a new array; docs/benchmarks.md); this
/// writes the envelope once into one buffer. The relays, which publish only what this path did not, keep
/// <c>IBus.Publish</c>; a test compares the two envelopes as a MassTransit subscriber reads them.
/// </summary>
internal sealed class CompletedEventPublisher(IBus bus, IConfiguration configuration, TimeProvider time, ILogger<CompletedEventPublisher> logger) : IAsyncDisposable
{
    public const string ContentType = "application/vnd.masstransit+json";
    private static readonly string MessageType = MessageUrn.ForTypeString<DispatchCompleted>();
    private static readonly TimeSpan RetryOpenAfter = TimeSpan.FromSeconds(1);
    private static readonly JsonSerializerOptions Compact = new(SystemTextJsonMessageSerializer.Options) { WriteIndented = false };
    private static readonly string HostJson = JsonSerializer.Serialize(HostMetadataCache.Host, Compact);

    private readonly SemaphoreSlim _open = new(1, 1);
    private IConnection? _connection;
    private IChannel? _channel;
    private Target? _target;
    private DateTimeOffset _retryOpenAt;
    private bool _disposed;

    private sealed record Target(string Exchange, string DestinationAddress, string SourceAddress);

    /// <summary>
    /// Publishes one event with its stable MessageId; returns when the broker confirmed it, throws when it did not
    /// (or when <paramref name="cancellationToken"/>, the caller's time limit, ends the wait).
    /// </summary>
    public async Task PublishAsync(HandedOffEvent e, CancellationToken cancellationToken)
    {
        var (channel, target) = await OpenAsync(cancellationToken);
        var buffer = new PooledBufferWriter(1024 + e.Payload.Length * 2);
        using (var writer = new Utf8JsonWriter(buffer))
            WriteEnvelope(writer, e, target);

        var properties = new BasicProperties
        {
            MessageId = e.MessageId.ToString(),
            ContentType = ContentType,
            DeliveryMode = DeliveryModes.Persistent,
        };
        if (e.TraceParent is not null)
            properties.Headers = new Dictionary<string, object?> { ["traceparent"] = e.TraceParent };

        // A producer span under the dispatch's trace, as MassTransit's publish would have had (when a tracer listens).
        using var activity = DispatchTracing.StartPublish(e.TraceParent, target.Exchange, properties.MessageId);
        try
        {
            await channel.BasicPublishAsync(target.Exchange, "", mandatory: false, properties, buffer.Written, cancellationToken);
        }
        catch (Exception)
        {
            // The buffer is left to the collector: a publish that failed part way must not see it reused.
            // A closed channel (broker restart, connection loss) is opened again by the next publish.
            if (!channel.IsOpen)
                await ResetAsync(channel);
            throw;
        }
        buffer.Return();
    }

    /// <summary>
    /// MassTransit's envelope (<c>JsonMessageEnvelope</c>, camelCase, nulls left out), with the message written from
    /// the outbox payload as it is: the same camelCase JSON of the event that MassTransit's deserializer reads.
    /// </summary>
    private void WriteEnvelope(Utf8JsonWriter writer, HandedOffEvent e, Target target)
    {
        writer.WriteStartObject();
        writer.WriteString("messageId", e.MessageId);
        writer.WriteString("conversationId", NewId.NextGuid());
        writer.WriteString("sourceAddress", target.SourceAddress);
        writer.WriteString("destinationAddress", target.DestinationAddress);
        writer.WriteStartArray("messageType");
        writer.WriteStringValue(MessageType);
        writer.WriteEndArray();
        writer.WritePropertyName("message");
        writer.WriteRawValue(e.Payload, skipInputValidation: true);
        writer.WriteString("sentTime", time.GetUtcNow().UtcDateTime);
        writer.WriteStartObject("headers");
        if (e.TraceParent is not null)
            writer.WriteString("traceparent", e.TraceParent);
        writer.WriteEndObject();
        writer.WritePropertyName("host");
        writer.WriteRawValue(HostJson, skipInputValidation: true);
        writer.WriteEndObject();
    }

    private async ValueTask<(IChannel, Target)> OpenAsync(CancellationToken cancellationToken)
    {
        if (_channel is { IsOpen: true } open && _target is { } known)
            return (open, known);
        await _open.WaitAsync(cancellationToken);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var target = _target ??= ResolveTarget();
            if (_channel is { IsOpen: true } again)
                return (again, target);
            // While the broker is away, the publishes of a batch fail at once instead of each trying to connect.
            if (time.GetUtcNow() < _retryOpenAt)
                throw new InvalidOperationException("The events connection failed a moment ago; the relays publish these events when due.");
            try
            {
                _channel = await OpenChannelAsync(target.Exchange, cancellationToken);
                return (_channel, target);
            }
            catch (Exception) when (!cancellationToken.IsCancellationRequested)
            {
                _retryOpenAt = time.GetUtcNow() + RetryOpenAfter;
                throw;
            }
        }
        finally
        {
            _open.Release();
        }
    }

    /// <summary>
    /// Replaces the closed channel with a confirming one, on the events connection (opened again when it was lost),
    /// with the exchange declared as MassTransit declares it (durable fanout), so that a first publish on a fresh
    /// broker finds it. Called under <see cref="_open"/>.
    /// </summary>
    private async Task<IChannel> OpenChannelAsync(string exchange, CancellationToken cancellationToken)
    {
        if (_channel is not null)
        {
            await _channel.DisposeAsync();
            _channel = null;
        }
        if (_connection is not { IsOpen: true })
        {
            if (_connection is not null)
                await _connection.DisposeAsync();
            _connection = null;
            var factory = RabbitMqAddress.Parse(configuration.GetConnectionString("RabbitMq")).ConnectionFactory("dispatcher-events");
            _connection = await factory.CreateConnectionAsync(cancellationToken);
        }
        var channel = await _connection.CreateChannelAsync(
            new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true),
            cancellationToken);
        try
        {
            await channel.ExchangeDeclareAsync(exchange, ExchangeType.Fanout, durable: true, autoDelete: false, cancellationToken: cancellationToken);
            return channel;
        }
        catch
        {
            await channel.DisposeAsync();
            throw;
        }
    }

    private Target ResolveTarget()
    {
        var hostAddress = HostAddressOf(bus.Address);
        if (!bus.Topology.Publish<DispatchCompleted>().TryGetPublishAddress(hostAddress, out var destination))
            throw new InvalidOperationException("MassTransit has no publish address for DispatchCompleted.");
        var address = new RabbitMqEndpointAddress(hostAddress, destination);
        Log.EventPublisherTarget(logger, address.Name);
        return new Target(address.Name, destination.ToString(), bus.Address.ToString());
    }

    /// <summary>
    /// The host address (with its virtual host) of a bus address, which is that plus the bus's own queue and its
    /// query: what the publish topology resolves message exchanges against.
    /// </summary>
    internal static Uri HostAddressOf(Uri busAddress)
    {
        var host = new UriBuilder(busAddress) { Query = "" };
        host.Path = host.Path[..(host.Path.LastIndexOf('/') + 1)];
        return host.Uri;
    }

    private async Task ResetAsync(IChannel failed)
    {
        await _open.WaitAsync(CancellationToken.None);
        try
        {
            // Many publishes of a batch fail together: the first one to get here disposes the channel.
            if (!ReferenceEquals(_channel, failed))
                return;
            _channel = null;
            await failed.DisposeAsync();
        }
        finally
        {
            _open.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _open.WaitAsync(CancellationToken.None);
        try
        {
            _disposed = true;
            if (_channel is not null)
                await _channel.DisposeAsync();
            if (_connection is not null)
                await _connection.DisposeAsync();
            _channel = null;
            _connection = null;
        }
        finally
        {
            _open.Release();
        }
    }
}
