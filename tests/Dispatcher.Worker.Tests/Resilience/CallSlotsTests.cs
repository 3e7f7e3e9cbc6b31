using Dispatcher.Worker.Resilience;
using Dispatcher.Worker.Tests.Infrastructure;

namespace Dispatcher.Worker.Tests.Resilience;

/// <summary>A destination's call slots: a bound, a line in order, hand-overs on the freeing thread, cancelled waits.</summary>
public sealed class CallSlotsTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Slots_are_bounded_and_a_freed_one_goes_to_the_oldest_waiter_before_anyone_new()
    {
        var slots = new CallSlots(2);
        Assert.True(slots.TryTake());
        Assert.True(await slots.WaitAsync(CancellationToken.None));
        Assert.False(slots.TryTake());

        var first = slots.WaitAsync(CancellationToken.None);
        var second = slots.WaitAsync(CancellationToken.None);
        Assert.Equal(2, slots.Waiting);
        Assert.False(first.IsCompleted);

        slots.Release();
        Assert.True(await first.WaitAsync(Bound));
        Assert.False(second.IsCompleted);
        // The line comes first: no slot is free for a newcomer while one waits.
        Assert.False(slots.TryTake());

        slots.Release();
        Assert.True(await second.WaitAsync(Bound));
        slots.Release();
        slots.Release();
        Assert.Equal(2, slots.Free);
        Assert.Equal(0, slots.Waiting);
    }

    [Fact]
    public async Task A_freed_slot_starts_the_waiters_work_on_the_freeing_thread()
    {
        var slots = new CallSlots(1);
        Assert.True(slots.TryTake());
        var ranOn = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        // Started here, it is in line with its continuations attached by the time the call returns.
        var waiter = WaitThenNote();
        Assert.Equal(1, slots.Waiting);

        // Released from a thread of its own: the waiter's code after its wait runs there, before Release returns
        // (through the thread pool's queue it would run elsewhere, later).
        var ranWithin = false;
        var releaser = new Thread(() =>
        {
            slots.Release();
            ranWithin = ranOn.Task.IsCompleted;
        });
        releaser.Start();
        Assert.True(releaser.Join(Bound));
        Assert.True(ranWithin, "the waiter ran within Release");
        Assert.Equal(releaser.ManagedThreadId, await ranOn.Task.WaitAsync(Bound));
        await waiter.WaitAsync(Bound);

        async Task WaitThenNote()
        {
            Assert.True(await slots.WaitAsync(CancellationToken.None).ConfigureAwait(false));
            ranOn.SetResult(Environment.CurrentManagedThreadId);
        }
    }

    [ThreadStatic] private static int t_releasing;

    [Fact]
    public async Task Waiters_that_give_their_slot_back_at_once_nest_two_deep_at_most()
    {
        // Each waiter frees its slot as soon as it has it (a call that fails at once): 2,000 of them in line. The first
        // hand-over runs the next waiter inline, whose Release runs the next inline, and so on: two deep on a thread,
        // then through the thread pool (unbounded, 2,000 Releases would nest within one another).
        const int Waiters = 2_000;
        var slots = new CallSlots(1);
        Assert.True(slots.TryTake());
        var done = 0;
        var deepest = 0;
        var all = new Task[Waiters];
        for (var i = 0; i < Waiters; i++)
            all[i] = Wait();
        Assert.Equal(Waiters, slots.Waiting);
        await Task.Run(Release); // off the test's synchronisation context, like a worker's threads
        await Task.WhenAll(all).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(Waiters, done);
        Assert.Equal(1, slots.Free);
        // The first Release, the one it ran inline, and the one that ran inline: three Releases on one stack at most.
        Assert.InRange(deepest, 2, 3);

        async Task Wait()
        {
            Assert.True(await slots.WaitAsync(CancellationToken.None).ConfigureAwait(false));
            Interlocked.Increment(ref done);
            Release();
        }

        void Release()
        {
            t_releasing++;
            InterlockedMax(ref deepest, t_releasing);
            try
            {
                slots.Release();
            }
            finally
            {
                t_releasing--;
            }
        }
    }

    private static void InterlockedMax(ref int location, int value)
    {
        for (var seen = Volatile.Read(ref location); value > seen; seen = Volatile.Read(ref location))
        {
            if (Interlocked.CompareExchange(ref location, value, seen) == seen)
                return;
        }
    }

    [Fact]
    public async Task A_slot_handed_over_stays_held_when_the_wait_is_cancelled_afterwards()
    {
        var slots = new CallSlots(1);
        Assert.True(slots.TryTake());
        using var cancel = new CancellationTokenSource();
        var waiting = slots.WaitAsync(cancel.Token);
        slots.Release();
        await cancel.CancelAsync();
        Assert.True(await waiting.WaitAsync(Bound));
        Assert.Equal(0, slots.Free);
        slots.Release();
        Assert.Equal(1, slots.Free);
    }

    [Fact]
    public async Task A_cancelled_wait_leaves_the_line_and_holds_no_slot()
    {
        var slots = new CallSlots(1);
        Assert.True(slots.TryTake());
        using var cancel = new CancellationTokenSource();
        var cancelled = slots.WaitAsync(cancel.Token);
        var next = slots.WaitAsync(CancellationToken.None);
        Assert.Equal(2, slots.Waiting);

        await cancel.CancelAsync();
        Assert.False(await cancelled.WaitAsync(Bound));
        Assert.Equal(1, slots.Waiting);

        // The slot goes to the one still waiting, not to the one that left.
        slots.Release();
        Assert.True(await next.WaitAsync(Bound));
        slots.Release();
        Assert.Equal(1, slots.Free);

        // Already cancelled: no wait at all, no slot.
        Assert.True(slots.TryTake());
        Assert.False(await slots.WaitAsync(cancel.Token));
        Assert.Equal(0, slots.Waiting);
    }
}
