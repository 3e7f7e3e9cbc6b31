using System.Diagnostics;

namespace Dispatcher.Worker.Tests.Infrastructure;

/// <summary>
/// Measures how late this process runs its async work: a 10 ms timer loop on the thread pool, recording its worst
/// lateness. On a loaded machine a stall delays the in-process downstream too, and the calls that arrived during
/// it are recorded bunched together after it: timing assertions widen their tolerance by what was measured here.
/// </summary>
public sealed class StallMeter : IAsyncDisposable
{
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(10);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private long _worstTicks;

    private StallMeter() => _loop = Task.Run(LoopAsync);

    /// <summary>The worst lateness seen so far (how long the process failed to run a due continuation).</summary>
    public TimeSpan Worst => TimeSpan.FromTicks(Interlocked.Read(ref _worstTicks));

    public static StallMeter Start() => new();

    private async Task LoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            var started = Stopwatch.GetTimestamp();
            try
            {
                await Task.Delay(Tick, _stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            var late = Stopwatch.GetElapsedTime(started) - Tick;
            var current = Interlocked.Read(ref _worstTicks);
            while (late.Ticks > current)
            {
                var seen = Interlocked.CompareExchange(ref _worstTicks, late.Ticks, current);
                if (seen == current)
                    break;
                current = seen;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
    }
}
