using System.Collections.Concurrent;
using System.Diagnostics.Tracing;

namespace Dispatcher.Bench;

/// <summary>
/// Samples allocations in this process (the runtime's AllocationTick event, about one per 100 KB allocated)
/// and reports the types that were allocated most: where to cut allocations first.
/// </summary>
internal sealed class AllocationProfile : EventListener
{
    private readonly ConcurrentDictionary<string, long> _bytesByType = new();
    private volatile bool _enabled;

    public void Start() => _enabled = true;

    public void Stop() => _enabled = false;

    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        if (eventSource.Name == "Microsoft-Windows-DotNETRuntime")
            EnableEvents(eventSource, EventLevel.Verbose, (EventKeywords)0x1); // GC keyword: AllocationTick
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        if (!_enabled || e.EventName is null || !e.EventName.StartsWith("GCAllocationTick", StringComparison.Ordinal) || e.Payload is null)
            return;
        var type = e.PayloadNames!.IndexOf("TypeName") is var t and >= 0 ? e.Payload[t] as string ?? "?" : "?";
        var amount = e.PayloadNames.IndexOf("AllocationAmount64") is var a and >= 0 ? Convert.ToInt64(e.Payload[a], System.Globalization.CultureInfo.InvariantCulture) : 100_000;
        _bytesByType.AddOrUpdate(type, amount, (_, v) => v + amount);
    }

    public void Report(int messages, int top = 25)
    {
        _enabled = false;
        var total = _bytesByType.Values.Sum();
        Console.WriteLine();
        Console.WriteLine($"Sampled allocations by type (~{total / 1024.0 / messages:0.0} KB/msg sampled):");
        Console.WriteLine();
        Console.WriteLine("| type | KB/msg | share |");
        Console.WriteLine("|---|---:|---:|");
        foreach (var (type, bytes) in _bytesByType.OrderByDescending(kv => kv.Value).Take(top))
            Console.WriteLine($"| `{Shorten(type)}` | {bytes / 1024.0 / messages:0.00} | {100.0 * bytes / total:0.0}% |");
    }

    // Async state machine boxes spell out every generic argument: keep the start, which names the method.
    private static string Shorten(string type) => type.Length <= 140 ? type : type[..137] + "...";
}
