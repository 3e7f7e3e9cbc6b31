using System.Diagnostics;

namespace Dispatcher.Bench;

/// <summary>Wall time, CPU time and allocated bytes of this process over an interval.</summary>
internal sealed class Measurement
{
    private readonly long _startTimestamp = Stopwatch.GetTimestamp();
    private readonly TimeSpan _startCpu = Process.GetCurrentProcess().TotalProcessorTime;
    private readonly long _startAllocated = GC.GetTotalAllocatedBytes(precise: true);

    public static Measurement Start() => new();

    public Result Stop(int messages)
    {
        var wall = Stopwatch.GetElapsedTime(_startTimestamp);
        var cpu = Process.GetCurrentProcess().TotalProcessorTime - _startCpu;
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - _startAllocated;
        return new Result(messages, wall, cpu, allocated);
    }

    public sealed record Result(int Messages, TimeSpan Wall, TimeSpan Cpu, long AllocatedBytes)
    {
        public double PerSecond => Messages / Wall.TotalSeconds;
        public double CpuMsPerMessage => Cpu.TotalMilliseconds / Messages;
        public double AllocatedKbPerMessage => AllocatedBytes / 1024.0 / Messages;
    }
}
