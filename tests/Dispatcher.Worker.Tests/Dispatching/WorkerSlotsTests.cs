using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Tests.Infrastructure;
using Microsoft.Extensions.Options;

namespace Dispatcher.Worker.Tests.Dispatching;

public sealed class WorkerSlotsTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private static DispatcherOptions Options(int worker, params int[] destinationCaps)
    {
        var options = new DispatcherOptions { Worker = { MaxConcurrency = worker } };
        for (var i = 0; i < destinationCaps.Length; i++)
            options.Destinations[$"d{i}"] = new DestinationOptions { MaxConcurrency = destinationCaps[i] };
        return options;
    }

    [Fact]
    public void The_consumer_takes_the_worker_slots_plus_twice_every_destination_cap()
    {
        Assert.Equal(64, WorkerSlots.MessageLimit(Options(64)));
        Assert.Equal(4 + 2 * (4 + 16 + 1), WorkerSlots.MessageLimit(Options(4, 4, 16, 1)));
        // RabbitMQ's prefetch is a 16-bit count.
        Assert.Equal(65_535, WorkerSlots.MessageLimit(Options(64, 40_000)));
    }

    [Fact]
    public async Task A_message_waiting_on_its_destination_frees_its_slot_and_takes_one_back_before_it_returns()
    {
        var slots = new WorkerSlots(Microsoft.Extensions.Options.Options.Create(Options(2)));
        using var first = await slots.EnterAsync(CancellationToken.None);
        using var second = await slots.EnterAsync(CancellationToken.None);
        Assert.Equal(0, slots.Available);

        var third = slots.EnterAsync(CancellationToken.None).AsTask();
        Assert.False(third.IsCompleted);

        // The first message goes out to its destination: the third gets its slot meanwhile.
        var call = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var answered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var waiting = first.WithoutSlotAsync(async () =>
        {
            var result = await call.Task;
            answered.SetResult();
            return result;
        });
        using var thirdSlot = await third.WaitAsync(Timeout);

        // The call is answered, but all slots are taken: the first message waits for one before it records the outcome
        // (and when one is freed, it has taken it: none is left over below).
        call.SetResult(42);
        await answered.Task.WaitAsync(Timeout);
        Assert.False(waiting.IsCompleted);
        second.Dispose();
        Assert.Equal(42, await waiting.WaitAsync(Timeout));
        Assert.Equal(0, slots.Available);

        first.Dispose();
        first.Dispose(); // once only
        Assert.Equal(1, slots.Available);
    }

    [Fact]
    public async Task A_freed_slot_goes_to_a_message_back_from_its_destination_before_new_messages()
    {
        var slots = new WorkerSlots(Microsoft.Extensions.Options.Options.Create(Options(1)));
        var returning = await slots.EnterAsync(CancellationToken.None);
        var answered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var call = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var back = returning.WithoutSlotAsync(async () =>
        {
            var result = await call.Task;
            answered.SetResult();
            return result;
        });

        // Two new messages: the first takes the slot the call freed, the second waits.
        using var holder = await slots.EnterAsync(CancellationToken.None).AsTask().WaitAsync(Timeout);
        var newcomer = slots.EnterAsync(CancellationToken.None).AsTask();
        call.SetResult(7);
        await answered.Task.WaitAsync(Timeout);
        // The answered message queues for a slot right after its call returns (on another thread): wait for it.
        await Eventually.TrueAsync(() => slots.ReturningWaiters == 1, Timeout, "the answered message waiting for a slot");

        // The newcomer waited first, but the message back from its destination gets the next free slot.
        holder.Dispose();
        Assert.Equal(7, await back.WaitAsync(Timeout));
        Assert.False(newcomer.IsCompleted);
        returning.Dispose();
        using var last = await newcomer.WaitAsync(Timeout);
        Assert.Equal(0, slots.Available);
    }

    [Fact]
    public async Task A_message_that_stops_waiting_for_a_slot_leaves_no_slot_behind()
    {
        var slots = new WorkerSlots(Microsoft.Extensions.Options.Options.Create(Options(1)));
        var held = await slots.EnterAsync(CancellationToken.None);
        using var cancel = new CancellationTokenSource();
        var cancelled = slots.EnterAsync(cancel.Token).AsTask();
        var next = slots.EnterAsync(CancellationToken.None).AsTask();
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(Timeout));

        // The released slot skips the cancelled waiter and goes to the next one; once that is done, it is free.
        held.Dispose();
        var slot = await next.WaitAsync(Timeout);
        Assert.Equal(0, slots.Available);
        slot.Dispose();
        Assert.Equal(1, slots.Available);
        using var again = await slots.EnterAsync(CancellationToken.None).AsTask().WaitAsync(Timeout);
        Assert.Equal(0, slots.Available);
    }
}
