using System.Collections;

namespace Dispatcher.Worker.Observability;

/// <summary>
/// The properties every log line about one dispatch carries (Serilog turns a scope of key/value pairs into
/// properties): RequestId, Destination, TraceId. Attempt is in the messages about attempts.
/// </summary>
internal readonly struct DispatchLogScope(Guid requestId, string destination, string? traceId) : IReadOnlyList<KeyValuePair<string, object?>>
{
    public int Count => 3;

    public KeyValuePair<string, object?> this[int index] => index switch
    {
        0 => new("RequestId", requestId),
        1 => new("Destination", destination),
        2 => new("TraceId", traceId),
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
    {
        for (var i = 0; i < Count; i++)
            yield return this[i];
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => $"RequestId:{requestId} Destination:{destination} TraceId:{traceId}";
}
