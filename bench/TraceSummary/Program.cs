using System.Globalization;
using Microsoft.Diagnostics.Tracing;
using Microsoft.Diagnostics.Tracing.Etlx;
using Microsoft.Diagnostics.Tracing.Parsers.Clr;

// Summarises a dotnet-trace file of a worker by stack, which a histogram by type or method cannot:
//   alloc       dotnet-trace collect -p <pid> --profile gc-verbose --duration 00:00:00:12 -o alloc.nettrace
//               allocation samples (about one per 100 KB) by component (first frame outside System.*), by the first
//               frame of Dispatcher code, and by (that frame, type, first non-framework frame)
//   time        dotnet-trace collect -p <pid> --profile dotnet-sampled-thread-time --duration 00:00:00:10 -o time.nettrace
//               thread-time samples (blocked threads included) by component, first Dispatcher frame and leaf
//   exceptions  dotnet-trace collect -p <pid> --providers Microsoft-Windows-DotNETRuntime:0x8000:4 -o exc.nettrace
//               first-chance exceptions by type, message and stack
// Run: dotnet run -c Release --project bench/TraceSummary -- <alloc|time|exceptions> <file.nettrace>
if (args.Length != 2 || args[0] is not ("alloc" or "time" or "exceptions"))
{
    Console.Error.WriteLine("usage: TraceSummary <alloc|time|exceptions> <file.nettrace>");
    return 2;
}
using var log = new TraceLog(TraceLog.CreateFromEventPipeDataFile(args[1]));
switch (args[0])
{
    case "alloc":
        Allocations(log);
        break;
    case "time":
        ThreadTime(log);
        break;
    default:
        Exceptions(log);
        break;
}
return 0;

static void Allocations(TraceLog log)
{
    var byComponent = new Tally();
    var byOurs = new Tally();
    var byDetail = new Tally();
    foreach (var ev in log.Events)
    {
        if (ev is not GCAllocationTickTraceData tick)
            continue;
        var frames = Frames(ev);
        var outside = frames.FirstOrDefault(f => !f.StartsWith("System.", StringComparison.Ordinal) && f.Length > 0 && f[0] != '?');
        byComponent.Add(outside is null ? "(framework only)" : Component(outside), tick.AllocationAmount64);
        var ours = OurFrame(frames);
        byOurs.Add(ours, tick.AllocationAmount64);
        byDetail.Add($"{ours} :: {tick.TypeName} :: {Short(outside ?? "-")}", tick.AllocationAmount64);
    }
    byComponent.Print("allocated bytes by component (first frame outside System.*)", 20);
    byOurs.Print("allocated bytes by first Dispatcher frame", 40);
    byDetail.Print("allocated bytes by (Dispatcher frame :: type :: first frame outside System.*)", 40);
}

static void ThreadTime(TraceLog log)
{
    var byComponent = new Tally();
    var byOurs = new Tally();
    var byLeaf = new Tally();
    foreach (var ev in log.Events)
    {
        if (ev.EventName != "Thread/Sample")
            continue;
        var frames = Frames(ev);
        if (frames.Count == 0)
            continue;
        var outside = frames.FirstOrDefault(f => !f.StartsWith("System.", StringComparison.Ordinal) && f.Length > 0 && f[0] != '?');
        byComponent.Add(outside is null ? "(framework only)" : Component(outside), 1);
        byOurs.Add(OurFrame(frames), 1);
        byLeaf.Add(Short(frames[0]), 1);
    }
    byComponent.Print("thread-time samples by component", 20);
    byOurs.Print("thread-time samples by first Dispatcher frame", 30);
    byLeaf.Print("thread-time samples by leaf (blocked threads show as waits and reads)", 30);
}

static void Exceptions(TraceLog log)
{
    var seen = new Tally();
    foreach (var ev in log.Events)
    {
        if (ev is not ExceptionTraceData e)
            continue;
        var stack = Frames(ev).Where(f => !f.StartsWith("System.Runtime.CompilerServices", StringComparison.Ordinal)).Take(8).Select(Short);
        seen.Add($"{e.ExceptionType}: {e.ExceptionMessage}\n      " + string.Join("\n      ", stack), 1);
    }
    seen.Print("first-chance exceptions", 10);
}

static List<string> Frames(TraceEvent ev)
{
    var frames = new List<string>();
    for (var frame = ev.CallStack(); frame is not null; frame = frame.Caller)
        frames.Add(frame.CodeAddress.FullMethodName is { Length: > 0 } name ? name : "?" + frame.CodeAddress.ModuleName);
    return frames;
}

static string OurFrame(List<string> frames) => Short(frames.FirstOrDefault(f => f.StartsWith("Dispatcher.", StringComparison.Ordinal)) ?? "(no Dispatcher frame)");

static string Component(string frame)
{
    var dot = frame.IndexOf('.', StringComparison.Ordinal);
    if (frame.StartsWith("Microsoft.", StringComparison.Ordinal) && dot > 0 && frame.IndexOf('.', dot + 1) is var second and > 0)
        return frame[..second];
    return dot > 0 ? frame[..dot] : frame;
}

static string Short(string text) => text.Length <= 160 ? text : text[..160];

internal sealed class Tally
{
    private readonly Dictionary<string, long> _values = [];
    private long _total;

    public void Add(string key, long amount)
    {
        _values[key] = _values.GetValueOrDefault(key) + amount;
        _total += amount;
    }

    public void Print(string title, int top)
    {
        Console.WriteLine($"== {title} (total {_total.ToString("N0", CultureInfo.InvariantCulture)})");
        foreach (var (key, value) in _values.OrderByDescending(kv => kv.Value).Take(top))
            Console.WriteLine($"{(100.0 * value / Math.Max(1, _total)).ToString("0.0", CultureInfo.InvariantCulture),6}%  {key}");
        Console.WriteLine();
    }
}
