using Dispatcher.Worker.Configuration;
using Microsoft.Extensions.Options;

namespace Dispatcher.Worker.Dispatching;

/// <summary>
/// The worker's own slots: <c>Worker:MaxConcurrency</c> messages at a time in the worker's work (reading, claiming,
/// committing). A message waiting on its destination (for a rate permit, or in the downstream call) gives its slot
/// back for that time and counts against its destination instead (<c>MaxConcurrency</c> calls, and as many
/// waiting for one of them; a destination seen to empty its queue quickly may queue up to as many again, borrowing
/// from the worker's share: see DestinationPolicy.QueueFull), so destinations that hang hold only their own room and never
/// the slots that healthy destinations need, however many of them hang. The consumer therefore takes up to
/// <see cref="MessageLimit"/> messages at once: the worker's slots plus twice every configured destination's cap
/// (sized at start: a destination added by a later config reload shares that room). A freed slot goes first to a
/// message coming back from its destination, then to new messages, each line in arrival order.
/// </summary>
internal sealed class WorkerSlots
{
    private readonly Lock _lock = new();
    private readonly Queue<TaskCompletionSource> _returning = new();
    private readonly Queue<TaskCompletionSource> _entering = new();
    private int _free;

    public WorkerSlots(IOptions<DispatcherOptions> options) => _free = options.Value.Worker.MaxConcurrency;

    /// <summary>
    /// Messages one worker has in hand at once: its own slots plus, per destination, its calls and its queue; at most
    /// 65,535 (RabbitMQ's prefetch is a 16-bit count, and 0 would mean unlimited).
    /// </summary>
    public static int MessageLimit(DispatcherOptions options) =>
        (int)Math.Min(ushort.MaxValue,
            options.Worker.MaxConcurrency + options.Destinations.Values.Sum(d => 2L * Math.Max(0, d.MaxConcurrency)));

    /// <summary>Free worker slots (for tests and status).</summary>
    public int Available
    {
        get
        {
            lock (_lock)
                return _free;
        }
    }

    /// <summary>Messages back from their destination waiting for a slot (for tests).</summary>
    public int ReturningWaiters
    {
        get
        {
            lock (_lock)
                return _returning.Count;
        }
    }

    /// <summary>Takes a slot for one message; dispose the result when the message is done.</summary>
    public async ValueTask<Slot> EnterAsync(CancellationToken cancellationToken)
    {
        await WaitAsync(_entering, cancellationToken);
        return new Slot(this);
    }

    /// <summary>
    /// Waits in <paramref name="line"/> unless a slot is free and nobody waits ahead. A message coming back from its
    /// destination waits in the returning line, which a freed slot serves first: its call is made, its lease runs,
    /// and recording its outcome frees its room; a new message has only been read.
    /// </summary>
    private Task WaitAsync(Queue<TaskCompletionSource> line, CancellationToken cancellationToken)
    {
        TaskCompletionSource waiter;
        lock (_lock)
        {
            // A free slot means nobody waits (a release hands its slot to the first live waiter and counts it
            // free only when both lines are empty), so taking it jumps no queue.
            if (_free > 0)
            {
                _free--;
                return Task.CompletedTask;
            }
            cancellationToken.ThrowIfCancellationRequested();
            waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            line.Enqueue(waiter);
        }
        if (!cancellationToken.CanBeCanceled)
            return waiter.Task;
        return WaitCancellableAsync(waiter, cancellationToken);
    }

    private static async Task WaitCancellableAsync(TaskCompletionSource waiter, CancellationToken cancellationToken)
    {
        // A cancelled waiter stays in its line until a release skips it (TrySetResult fails on it).
        await using (cancellationToken.UnsafeRegister(static (w, token) => ((TaskCompletionSource)w!).TrySetCanceled(token), waiter))
            await waiter.Task;
    }

    private void Release()
    {
        lock (_lock)
        {
            while (_returning.TryDequeue(out var next) || _entering.TryDequeue(out next))
            {
                if (next.TrySetResult())
                    return; // the slot passes to the waiter
            }
            _free++;
        }
    }

    /// <summary>One message's slot, given back while the message waits on its destination.</summary>
    public sealed class Slot : IDisposable
    {
        private readonly WorkerSlots _slots;
        private bool _held = true;

        internal Slot(WorkerSlots slots) => _slots = slots;

        /// <summary>
        /// Runs <paramref name="wait"/> (the destination's part: permit wait and call) without the slot, and takes a
        /// slot back before returning so that the outcome is committed within the worker's bound, ahead of messages
        /// waiting to enter. Taking it back is not cancelled: the outcome must be recorded, and slots turn over in
        /// the time of one commit.
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
                await _slots.WaitAsync(_slots._returning, CancellationToken.None);
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
