using System.Buffers;
using System.Net.Http.Headers;
using System.Text;
using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Destinations;
using Dispatcher.Worker.Observability;

namespace Dispatcher.Worker.Dispatching;

/// <summary>
/// Makes one attempt: sends the prepared request through the destination's pooled client with the
/// idempotency header, within AttemptTimeout (body included), and reads at most the storable part of the body.
/// </summary>
internal sealed class DownstreamCaller(TimeProvider time, Redactor redactor)
{
    public async Task<AttemptOutcome> CallAsync(
        Destination destination, PreparedRequest prepared, Guid requestId, string? traceParent, int maxStoredBytes, CancellationToken cancellationToken)
    {
        var startedAt = time.GetUtcNow();
        var started = time.GetTimestamp();
        using var timeout = new CancellationTokenSource(destination.Options.AttemptTimeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            using var message = BuildMessage(destination, prepared, requestId, traceParent);
            using var response = await destination.Client.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, linked.Token);
            var body = await ReadCappedAsync(response.Content, maxStoredBytes, linked.Token);
            var status = (int)response.StatusCode;
            return new AttemptOutcome(
                status is >= 200 and < 300 ? AttemptResult.Success : AttemptResult.HttpError,
                startedAt,
                time.GetElapsedTime(started),
                status,
                CollectHeaders(response),
                body,
                status is >= 200 and < 300 ? null : $"HTTP {status} {response.ReasonPhrase}",
                ReadRetryAfter(response.Headers.RetryAfter));
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return new AttemptOutcome(AttemptResult.Timeout, startedAt, time.GetElapsedTime(started),
                Error: $"Timed out after {destination.Options.AttemptTimeout.TotalSeconds:0.###} s (AttemptTimeout).");
        }
        catch (HttpRequestException ex)
        {
            return new AttemptOutcome(AttemptResult.ConnectionError, startedAt, time.GetElapsedTime(started),
                Error: Describe(ex));
        }
        catch (IOException ex)
        {
            return new AttemptOutcome(AttemptResult.ConnectionError, startedAt, time.GetElapsedTime(started),
                Error: "Connection lost while reading the response: " + ex.Message);
        }
    }

    private static HttpRequestMessage BuildMessage(Destination destination, PreparedRequest prepared, Guid requestId, string? traceParent)
    {
        var message = new HttpRequestMessage(prepared.Method, prepared.Url);
        if (prepared.Body is not null)
        {
            message.Content = new ByteArrayContent(prepared.Body);
            if (prepared.ContentType is not null)
                message.Content.Headers.TryAddWithoutValidation("Content-Type", prepared.ContentType);
        }
        foreach (var (name, value) in destination.Options.Headers)
            AddHeader(message, name, value);
        foreach (var (name, value) in prepared.Headers)
        {
            if (!string.Equals(name, destination.Options.IdempotencyHeader, StringComparison.OrdinalIgnoreCase))
                AddHeader(message, name, value);
        }
        message.Headers.TryAddWithoutValidation(destination.Options.IdempotencyHeader, requestId.ToString());
        if (traceParent is not null)
        {
            message.Headers.Remove("traceparent");
            message.Headers.TryAddWithoutValidation("traceparent", traceParent);
        }
        return message;
    }

    private static void AddHeader(HttpRequestMessage message, string name, string value)
    {
        if (message.Headers.TryAddWithoutValidation(name, value))
            return;
        // Content-* headers belong to the content (when there is a body).
        if (message.Content is not null)
        {
            message.Content.Headers.Remove(name);
            message.Content.Headers.TryAddWithoutValidation(name, value);
        }
    }

    private static async Task<string?> ReadCappedAsync(HttpContent content, int maxBytes, CancellationToken cancellationToken)
    {
        await using var stream = await content.ReadAsStreamAsync(cancellationToken);
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(maxBytes, 16 * 1024));
        try
        {
            var total = 0;
            while (total < maxBytes)
            {
                if (total == buffer.Length)
                {
                    var larger = ArrayPool<byte>.Shared.Rent(Math.Min(maxBytes, buffer.Length * 2));
                    buffer.AsSpan(0, total).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }
                var read = await stream.ReadAsync(buffer.AsMemory(total, Math.Min(buffer.Length, maxBytes) - total), cancellationToken);
                if (read == 0)
                    break;
                total += read;
            }
            // Whatever is left unread is dropped with the connection: memory stays bounded whatever the body size.
            return total == 0 ? null : Encoding.UTF8.GetString(buffer, 0, total);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private Dictionary<string, string> CollectHeaders(HttpResponseMessage response)
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, values) in response.Headers.NonValidated)
            headers[name] = redactor.IsSecret(name) ? HeaderRules.RedactedValue : values.ToString();
        foreach (var (name, values) in response.Content.Headers.NonValidated)
            headers[name] = values.ToString();
        return headers;
    }

    private static RetryAfterValue? ReadRetryAfter(RetryConditionHeaderValue? value) => value switch
    {
        { Delta: { } delta } => new RetryAfterValue(delta, null),
        { Date: { } date } => new RetryAfterValue(null, date),
        _ => null,
    };

    private static string Describe(HttpRequestException ex)
    {
        var text = ex.HttpRequestError == HttpRequestError.Unknown ? ex.Message : $"{ex.HttpRequestError}: {ex.Message}";
        return ex.InnerException is { } inner && !text.Contains(inner.Message, StringComparison.Ordinal) ? $"{text} ({inner.Message})" : text;
    }
}
