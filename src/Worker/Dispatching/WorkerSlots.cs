using Dispatcher.Worker.Configuration;
using Microsoft.Extensions.Options;

namespace Dispatcher.Worker.Dispatching;

/// <summary>
/// The worker's own slots: <c>Worker:MaxConcurrency</c> messages at a time in the worker's work (reading, claiming,
/// committing). A message waiting on its destination (for a rate permit, or in the downstream call) gives its slot
/// back for that time and counts against its destination instead (<c>MaxConcurrency</c> calls, and as many
/// waiting for one of them: see DestinationPolicy), so destinations that hang hold only their own room and never
/// the slots that healthy destinations need, however many of them hang. The consumer therefore takes up to
/// <see cref="MessageLimit"/> messages at once: the worker's slots plus twice every configured destination's cap
/// (sized at start: a destination added by a later config reload shares that room).
/// </summary>
#pragma warning disable CA1001 // The SemaphoreSlim never allocates a wait handle, and a consumer finishing during shutdown must still release: nothing to dispose.
internal sealed class WorkerSlots
{
    private readonly SemaphoreSlim _slots;

    public WorkerSlots(IOptions<DispatcherOptions> options) => _slots = new SemaphoreSlim(options.Value.Worker.MaxConcurrency);

    /// <summary>
    /// Messages one worker has in hand at once: its own slots plus, per destination, its calls and its queue; at most
    /// 65,535 (RabbitMQ's prefetch is a 16-bit count, and 0 would mean unlimited).
    /// </summary>
    public static int MessageLimit(DispatcherOptions options) =>
        (int)Math.Min(ushort.MaxValue,
            options.Worker.MaxConcurrency + options.Destinations.Values.Sum(d => 2L * Math.Max(0, d.MaxConcurrency)));

    /// <summary>Free worker slots (for tests and status).</summary>
    public int Available => _slots.CurrentCount;

    /// <summary>Takes a slot for one message; dispose the result when the message is done.</summary>
    public async ValueTask<Slot> EnterAsync(CancellationToken cancellationToken)
    {
        await _slots.WaitAsync(cancellationToken);
        return new Slot(_slots);
    }

    /// <summary>One message's slot, given back while the message waits on its destination.</summary>
    public sealed class Slot : IDisposable
    {
        private readonly SemaphoreSlim _slots;
        private bool _held = true;

        internal Slot(SemaphoreSlim slots) => _slots = slots;

        /// <summary>
        /// Runs <paramref name="wait"/> (the destination's part: permit wait and call) without the slot, and takes a
        /// slot back before returning so that the outcome is committed within the worker's bound. Taking it back
        /// is not cancelled: the outcome must be recorded, and slots turn over in the time of one commit.
        /// </summary>
        public async Task<T> WithoutSlotAsync<T>(Func<Task<T>> wait)
        {
            Release();
            try
            {
                return await wait();
            }
            finally
            {
                await _slots.WaitAsync(CancellationToken.None);
                _held = true;
            }
        }

        public void Dispose() => Release();

        private void Release()
        {
            if (!_held)
                return;
            _held = false;
            _slots.Release();
        }
    }
}
