using System.Collections.Concurrent;
using System.Text;
using Dispatcher.Contracts;
using Dispatcher.Worker.Hosting;
using MassTransit;
using RabbitMQ.Client;

namespace Dispatcher.Worker.Tests.Infrastructure;

/// <summary>A received DispatchCompleted with its transport MessageId and what a subscriber sees of its envelope.</summary>
public sealed record ReceivedEvent(Guid? MessageId, DispatchCompleted Event, string? TraceParent = null, ReceivedEnvelope? Envelope = null);

/// <summary>The envelope fields a MassTransit subscriber reads from a received event.</summary>
public sealed record ReceivedEnvelope(
    string? ContentType,
    Uri? SourceAddress,
    Uri? DestinationAddress,
    Guid? ConversationId,
    DateTime? SentTime,
    string MessageTypes,
    string? HostProcess,
    string? HostMassTransitVersion,
    string? TransportMessageId,
    string? TransportTraceParent,
    bool Persistent)
{
    public static ReceivedEnvelope Of(ConsumeContext context)
    {
        var transport = context.ReceiveContext.TransportHeaders;
        return new ReceivedEnvelope(
            context.ReceiveContext.ContentType?.MediaType,
            context.SourceAddress,
            context.DestinationAddress,
            context.ConversationId,
            context.SentTime,
            string.Join(",", context.SupportedMessageTypes),
            context.Host?.ProcessName,
            context.Host?.MassTransitVersion,
            transport.Get<string>("MessageId"),
            transport.Get<string>("traceparent"),
            context.ReceiveContext.TryGetPayload<RabbitMqBasicConsumeContext>(out var rabbit)
                && rabbit.Properties.Persistent);
    }
}

/// <summary>
/// The producer's and the subscriber's side of a test: sends requests (MassTransit envelope, plain JSON, raw
/// bytes) and collects every <see cref="DispatchCompleted"/> on a queue of its own.
/// </summary>
public sealed class TestBus : IAsyncDisposable
{
    private readonly IBusControl _bus;
    private readonly ConnectionFactory _factory;
    private IConnection _connection;
    private IChannel _channel;
    private readonly SemaphoreSlim _channelLock = new(1, 1);

    private TestBus(IBusControl bus, ConnectionFactory factory, IConnection connection, IChannel channel)
    {
        _factory = factory;
        _bus = bus;
        _connection = connection;
        _channel = channel;
    }

    public ConcurrentDictionary<Guid, ConcurrentQueue<ReceivedEvent>> Events { get; } = new();

    public static async Task<TestBus> StartAsync(string rabbitMq)
    {
        var address = RabbitMqAddress.Parse(rabbitMq);
        TestBus? self = null;
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(address.Host, address.Port, address.VirtualHost, h =>
            {
                h.Username(address.Username);
                h.Password(address.Password);
            });
            cfg.ReceiveEndpoint($"test-events-{Guid.NewGuid():N}", e =>
            {
                e.AutoDelete = true;
                e.Durable = false;
                e.PrefetchCount = 200;
                e.Handler<DispatchCompleted>(context =>
                {
                    self!.Events.GetOrAdd(context.Message.RequestId, _ => new()).Enqueue(new ReceivedEvent(context.MessageId, context.Message, context.Headers.Get<string>("traceparent"), ReceivedEnvelope.Of(context)));
                    return Task.CompletedTask;
                });
            });
        });
        var factory = new ConnectionFactory
        {
            HostName = address.Host, Port = address.Port, VirtualHost = address.VirtualHost,
            UserName = address.Username, Password = address.Password,
        };
        var connection = await factory.CreateConnectionAsync();
        var channel = await connection.CreateChannelAsync();
        self = new TestBus(bus, factory, connection, channel);
        await bus.StartAsync();
        return self;
    }

    public async Task SendEnvelopeAsync(string queue, DispatchRequest request, string? traceParent = null)
    {
        var endpoint = await _bus.GetSendEndpoint(new Uri($"queue:{queue}"));
        await endpoint.Send(request, context =>
        {
            if (traceParent is not null)
                context.Headers.Set("traceparent", traceParent);
        });
    }

    /// <summary>Publishes the request as plain camelCase JSON, as a non-.NET producer would.</summary>
    public Task PublishPlainJsonAsync(string queue, string json, string? messageId = null, string? traceParent = null) =>
        PublishRawAsync(queue, Encoding.UTF8.GetBytes(json), "application/json", messageId, traceParent);

    public async Task PublishRawAsync(string queue, byte[] body, string? contentType, string? messageId = null, string? traceParent = null)
    {
        var properties = new BasicProperties
        {
            ContentType = contentType,
            MessageId = messageId,
            Persistent = true,
            Headers = traceParent is null ? null : new Dictionary<string, object?> { ["traceparent"] = traceParent },
        };
        await _channelLock.WaitAsync();
        try
        {
            await _channel.BasicPublishAsync("", queue, mandatory: false, properties, body);
        }
        finally
        {
            _channelLock.Release();
        }
    }

    public async Task<uint> MessageCountAsync(string queue)
    {
        await _channelLock.WaitAsync();
        try
        {
            return (await _channel.QueueDeclarePassiveAsync(queue)).MessageCount;
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
        {
            // 404: no such queue (yet). The broker closed the channel: open another.
            await ReopenAsync();
            return 0;
        }
        finally
        {
            _channelLock.Release();
        }
    }

    /// <summary>Removes the queues (and MassTransit's exchanges of the same name) a test made.</summary>
    public async Task DeleteQueuesAsync(params string[] queues)
    {
        await _channelLock.WaitAsync();
        try
        {
            if (!_channel.IsOpen)
                await ReopenAsync();
            foreach (var q in queues)
            {
                await _channel.QueueDeleteAsync(q);
                await _channel.ExchangeDeleteAsync(q);
            }
        }
        finally
        {
            _channelLock.Release();
        }
    }

    /// <summary>A new channel, on a new connection when the broker closed ours (a RabbitMQ restart in a fault test).</summary>
    private async Task ReopenAsync()
    {
        _channel.Dispose();
        if (!_connection.IsOpen)
        {
            _connection.Dispose();
            _connection = await _factory.CreateConnectionAsync();
        }
        _channel = await _connection.CreateChannelAsync();
    }

    public int EventCount(Guid requestId) => Events.TryGetValue(requestId, out var q) ? q.Count : 0;

    public async ValueTask DisposeAsync()
    {
        await _bus.StopAsync();
        if (_channel.IsOpen)
            await _channel.CloseAsync();
        if (_connection.IsOpen)
            await _connection.CloseAsync();
        _channel.Dispose();
        _connection.Dispose();
        _channelLock.Dispose();
    }
}
