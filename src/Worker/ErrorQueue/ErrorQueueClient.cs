using System.Text;
using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Hosting;
using RabbitMQ.Client;

namespace Dispatcher.Worker.ErrorQueue;

/// <summary>A message MassTransit moved to the error queue, with the fault it recorded in the headers.</summary>
public sealed record ErrorQueueMessage(
    string? MessageId, string? ContentType, string? FaultExceptionType, string? FaultMessage, string? Reason,
    DateTimeOffset? FaultedAt, string BodyPreview, int BodyBytes);

/// <summary>
/// <c>dispatch-requests_error</c>: messages that could not be read at all (not JSON, not a request). Lists them
/// without taking them, and requeues them to the request queue (after a fix, say) with publisher confirms,
/// acknowledging each only once the broker confirmed its copy.
/// </summary>
internal sealed class ErrorQueueClient(IConfiguration configuration) : IAsyncDisposable
{
    private IConnection? _connection;

    private string RequestQueue =>
        configuration[$"{DispatcherOptions.SectionName}:Worker:QueueName"] ?? DispatcherDefaults.QueueName;

    public string ErrorQueueName => RequestQueue + "_error";

    /// <summary>Peeks at up to <paramref name="limit"/> messages: taken unacknowledged, then all returned to the queue.</summary>
    public async Task<List<ErrorQueueMessage>> ListAsync(int limit, CancellationToken cancellationToken)
    {
        await using var channel = await (await ConnectAsync(cancellationToken)).CreateChannelAsync(cancellationToken: cancellationToken);
        var result = new List<ErrorQueueMessage>();
        ulong lastTag = 0;
        while (result.Count < limit && await channel.BasicGetAsync(ErrorQueueName, autoAck: false, cancellationToken) is { } got)
        {
            result.Add(Describe(got));
            lastTag = got.DeliveryTag;
        }
        if (lastTag > 0)
            await channel.BasicNackAsync(lastTag, multiple: true, requeue: true, cancellationToken);
        return result;
    }

    /// <summary>
    /// Set on a requeued message: like a broker redelivery, it may take over the claim its first delivery left
    /// behind when it faulted (a fresh copy of a message may not: see DispatchStore.ClaimSql).
    /// </summary>
    public const string RequeuedHeader = "Dispatcher-Requeued";

    /// <summary>
    /// Moves up to <paramref name="limit"/> of the messages there now back to the request queue (not those that
    /// fault again meanwhile: no loop); returns how many moved.
    /// </summary>
    public async Task<int> RequeueAsync(int limit, Action<int>? progress, CancellationToken cancellationToken)
    {
        limit = (int)Math.Min(limit, await CountAsync(cancellationToken));
        var connection = await ConnectAsync(cancellationToken);
        await using var channel = await connection.CreateChannelAsync(
            new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true), cancellationToken);
        var moved = 0;
        while (moved < limit && await channel.BasicGetAsync(ErrorQueueName, autoAck: false, cancellationToken) is { } got)
        {
            var headers = (got.BasicProperties.Headers ?? new Dictionary<string, object?>())
                .Where(h => !h.Key.StartsWith("MT-Fault", StringComparison.OrdinalIgnoreCase) && h.Key != "MT-Reason")
                .ToDictionary(h => h.Key, h => h.Value);
            headers[RequeuedHeader] = "true";
            var properties = new BasicProperties(got.BasicProperties) { Headers = headers };
            // Confirmed before the error-queue copy is acknowledged: a crash in between duplicates, never loses.
            await channel.BasicPublishAsync("", RequestQueue, mandatory: true, properties, got.Body, cancellationToken);
            await channel.BasicAckAsync(got.DeliveryTag, multiple: false, cancellationToken);
            moved++;
            progress?.Invoke(moved);
        }
        return moved;
    }

    public async Task<uint> CountAsync(CancellationToken cancellationToken)
    {
        await using var channel = await (await ConnectAsync(cancellationToken)).CreateChannelAsync(cancellationToken: cancellationToken);
        try
        {
            return (await channel.QueueDeclarePassiveAsync(ErrorQueueName, cancellationToken)).MessageCount;
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
        {
            return 0;
        }
    }

    private static ErrorQueueMessage Describe(BasicGetResult got)
    {
        var headers = got.BasicProperties.Headers;
        string? Header(string name) => headers is not null && headers.TryGetValue(name, out var v)
            ? v switch { byte[] b => Encoding.UTF8.GetString(b), null => null, _ => v.ToString() }
            : null;
        var body = got.Body.Span;
        var preview = Encoding.UTF8.GetString(body[..Math.Min(body.Length, 200)]);
        var faultedAt = DateTimeOffset.TryParse(Header("MT-Fault-Timestamp"), System.Globalization.CultureInfo.InvariantCulture,
            System.Globalization.DateTimeStyles.AssumeUniversal, out var at) ? at : (DateTimeOffset?)null;
        return new ErrorQueueMessage(got.BasicProperties.MessageId, got.BasicProperties.ContentType,
            Header("MT-Fault-ExceptionType"), Header("MT-Fault-Message"), Header("MT-Reason"), faultedAt,
            new string(preview.Select(c => char.IsControl(c) ? '?' : c).ToArray()), body.Length);
    }

    private async Task<IConnection> ConnectAsync(CancellationToken cancellationToken)
    {
        if (_connection is { IsOpen: true })
            return _connection;
        var factory = RabbitMqAddress.Parse(configuration.GetConnectionString("RabbitMq")).ConnectionFactory("dispatcher-error-queue");
        _connection = await factory.CreateConnectionAsync(cancellationToken);
        return _connection;
    }

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null)
            await _connection.DisposeAsync();
    }
}
