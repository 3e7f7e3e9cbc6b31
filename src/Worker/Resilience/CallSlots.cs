using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Dispatcher.Worker.Resilience;

/// <summary>
/// A destination's call slots in this worker: at most <c>limit</c> held at once, the other requests waiting in the
/// order they came. A slot freed while requests wait goes straight to the oldest, and its wait ends on the thread
/// that freed the slot: its call starts there, up to its first wait for the network, instead of after a trip
/// through the thread pool's queue. On a machine whose CPU is the limit that trip took 4-9 ms per call (the
/// littles-law bench, session 8: 256 calls of 100 ms), a slot held idle all that time.
/// </summary>
/// <remarks>
/// A request whose call ends at once (an open breaker, a refused connection) frees its slot within the hand-over
/// that gave it: hand-overs nest at most <see cref="MostInline"/> deep on a thread (and only with stack to spare),
/// past that the next goes through the thread pool. A cancelled wait leaves the line, holds no slot, and goes on
/// through the thread pool (not on the thread that cancelled it: a timer's, or the worker's stopping).
/// </remarks>
internal sealed class CallSlots(int limit)
{
    private readonly int _limit = limit;
    private const int MostInline = 2;
    [ThreadStatic] private static int t_inline;

    private readonly Lock _lock = new();
    private readonly LinkedList<Waiter> _line = new();
    private int _free = limit;

    /// <summary>Slots free now.</summary>
    public int Free
    {
        get
        {
            lock (_lock)
                return _free;
        }
    }

    /// <summary>Requests waiting for a slot now.</summary>
    public int Waiting
    {
        get
        {
            lock (_lock)
                return _line.Count;
        }
    }

    /// <summary>Takes a slot if one is free and nobody waits for one (those come first).</summary>
    public bool TryTake()
    {
        lock (_lock)
        {
            if (_free == 0 || _line.Count > 0)
                return false;
            _free--;
            return true;
        }
    }

    /// <summary>
    /// Waits in line for a slot: true once it holds one (to be given back with <see cref="Release"/>), false when
    /// <paramref name="cancellationToken"/> ended the wait first.
    /// </summary>
    public async Task<bool> WaitAsync(CancellationToken cancellationToken)
    {
        LinkedListNode<Waiter> place;
        lock (_lock)
        {
            if (_free > 0 && _line.Count == 0)
            {
                _free--;
                return true;
            }
            if (cancellationToken.IsCancellationRequested)
                return false;
            // Continuations run where the result is set: in Release, on the thread that freed the slot.
            place = _line.AddLast(new Waiter(this));
        }
        using var registration = cancellationToken.UnsafeRegister(
            static state => ((LinkedListNode<Waiter>)state!).Value.Slots.Leave((LinkedListNode<Waiter>)state), place);
        return await place.Value.Task.ConfigureAwait(false);
    }

    /// <summary>Gives a slot back: to the oldest request waiting, or to the free ones.</summary>
    public void Release()
    {
        Waiter next;
        lock (_lock)
        {
            if (_line.First is not { } first)
            {
                _free++;
                Debug.Assert(_free <= _limit, "a slot given back twice");
                return;
            }
            _line.RemoveFirst();
            next = first.Value;
        }
        // Out of the lock: the waiter's continuation may run right here.
        if (t_inline < MostInline && RuntimeHelpers.TryEnsureSufficientExecutionStack())
        {
            t_inline++;
            try
            {
                next.SetResult(true);
            }
            finally
            {
                t_inline--;
            }
        }
        else
        {
            ThreadPool.UnsafeQueueUserWorkItem(static waiter => waiter.SetResult(true), next, preferLocal: false);
        }
    }

    // A cancelled wait: out of the line if it is still in it (else Release has already given it a slot, which its
    // waiter then holds and gives back as usual).
    private void Leave(LinkedListNode<Waiter> place)
    {
        lock (_lock)
        {
            if (place.List is null)
                return;
            _line.Remove(place);
        }
        ThreadPool.UnsafeQueueUserWorkItem(static waiter => waiter.SetResult(false), place.Value, preferLocal: false);
    }

    /// <summary>A request in line; continuations run where its result is set (see <see cref="Release"/>).</summary>
    private sealed class Waiter(CallSlots slots) : TaskCompletionSource<bool>(TaskCreationOptions.None)
    {
        public CallSlots Slots { get; } = slots;
    }
}
