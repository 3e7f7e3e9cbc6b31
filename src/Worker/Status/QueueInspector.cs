using Dispatcher.Worker.Hosting;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Dispatcher.Worker.Status;

/// <summary>A queue's ready messages and consumers.</summary>
public sealed record QueueInfo(string Queue, uint Messages, uint Consumers);

/// <summary>Depth and consumers of a queue, and access to the error queue, over a plain AMQP connection of its own.</summary>
internal sealed class QueueInspector(IConfiguration configuration) : IAsyncDisposable
{
    private readonly SemaphoreSlim _lock = new(1, 1);
    private IConnection? _connection;
    private IChannel? _channel;

    /// <summary>The queue's depth, or null when it does not exist.</summary>
    public async Task<QueueInfo?> InspectAsync(string queue, CancellationToken cancellationToken)
    {
        await _lock.WaitAsync(cancellationToken);
        try
        {
            var channel = await ChannelAsync(cancellationToken);
            var ok = await channel.QueueDeclarePassiveAsync(queue, cancellationToken);
            return new QueueInfo(queue, ok.MessageCount, ok.ConsumerCount);
        }
        catch (OperationInterruptedException)
        {
            // 404: the queue does not exist (the channel is closed by the broker; open a new one next time).
            await ResetChannelAsync();
            return null;
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>Runs <paramref name="action"/> on the shared channel, serialised.</summary>
    public async Task<T> WithChannelAsync<T>(Func<IChannel, Task<T>> action, CancellationToken cancellationToken)
    {
        await _lock.WaitAsync(cancellationToken);
        try
        {
            return await action(await ChannelAsync(cancellationToken));
        }
        finally
        {
            _lock.Release();
        }
    }

    private async Task<IChannel> ChannelAsync(CancellationToken cancellationToken)
    {
        if (_channel is { IsOpen: true })
            return _channel;
        if (_connection is not { IsOpen: true })
        {
            var factory = RabbitMqAddress.Parse(configuration.GetConnectionString("RabbitMq")).ConnectionFactory("dispatcher-inspector");
            _connection = await factory.CreateConnectionAsync(cancellationToken);
        }
        _channel = await _connection.CreateChannelAsync(cancellationToken: cancellationToken);
        return _channel;
    }

    private async Task ResetChannelAsync()
    {
        if (_channel is not null)
        {
            await _channel.DisposeAsync();
            _channel = null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await ResetChannelAsync();
        if (_connection is not null)
            await _connection.DisposeAsync();
        _lock.Dispose();
    }
}
