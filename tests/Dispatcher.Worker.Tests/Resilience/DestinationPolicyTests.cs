using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Observability;
using Dispatcher.Worker.Resilience;
using Microsoft.Extensions.Time.Testing;

namespace Dispatcher.Worker.Tests.Resilience;

/// <summary>
/// Where a destination at its cap sends requests back to: spaced at the pace the destination can take them, so that a
/// backlog far larger than the worker holds does not come back all at once every park delay.
/// </summary>
public sealed class DestinationPolicyTests
{
    // AttemptTimeout 2 s: the park delay (a quarter of it) is 0.5 s, the first return.
    private static readonly TimeSpan Floor = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan Break = TimeSpan.FromSeconds(10);
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 28, 0, 0, 0, TimeSpan.Zero));

    [Fact]
    public void Returns_from_the_cap_are_spaced_at_the_fleet_share_of_the_rate_limit()
    {
        var policy = Policy(permitsPerSecond: 100);
        policy.FleetWorkers = 4; // 25/s for this worker, 31.25/s with headroom: one return every 32 ms
        using var full = Fill(policy);

        var delays = HoldBacks(policy, 10);

        Assert.Equal(Enumerable.Range(0, 10).Select(i => Floor + TimeSpan.FromMilliseconds(32 * i)), delays);
    }

    [Fact]
    public async Task A_destination_slower_than_its_rate_limit_is_paced_by_what_its_cap_carries_at_the_calls_duration()
    {
        var policy = Policy(permitsPerSecond: 1000);
        // One call of 200 ms: the cap of 1 carries 5/s, 6.25/s with headroom, one return every 160 ms.
        var ran = await policy.ExecuteAsync(_ =>
        {
            _time.Advance(TimeSpan.FromMilliseconds(200));
            return Task.FromResult(Ok());
        }, CancellationToken.None);
        Assert.NotNull(ran.Outcome);
        Assert.Equal(TimeSpan.FromMilliseconds(200), policy.CallDuration);
        using var full = Fill(policy, queued: 2); // twice the cap: the deepest a queue gets

        var delays = HoldBacks(policy, 4);

        Assert.Equal(Enumerable.Range(0, 4).Select(i => Floor + TimeSpan.FromMilliseconds(160 * i)), delays);
    }

    [Fact]
    public void A_destination_whose_calls_stay_unanswered_is_paced_by_how_long_they_have_been_under_way()
    {
        // No call has ended yet, so none is timed: the pace used to be the rate limit's (1,000/s), and a hanging
        // destination's whole overflow came back together after the park delay. A call unanswered for 400 ms says
        // the cap of 1 carries at most 2.5/s: 3.125/s with headroom, one return every 320 ms.
        var policy = Policy(permitsPerSecond: 1000);
        using var full = Fill(policy);
        _time.Advance(TimeSpan.FromMilliseconds(400));

        var delays = HoldBacks(policy, 3);

        Assert.Equal(Enumerable.Range(0, 3).Select(i => Floor + TimeSpan.FromMilliseconds(320 * i)), delays);
    }

    [Fact]
    public async Task A_destination_whose_calls_are_quick_sends_its_overflow_back_sooner_than_a_hanging_one_would()
    {
        // (Each destination here is held back from a queue twice as deep as its cap at most, see the next test.)
        // AttemptTimeout 30 s: a hanging destination frees its slots only as attempts time out, so until a call was
        // timed the first return is the longest park delay, 5 s (a quarter of the timeout, at most 5 s).
        var untimed = Policy(permitsPerSecond: 1000, attemptTimeout: TimeSpan.FromSeconds(30));
        using (Fill(untimed))
            Assert.Equal(TimeSpan.FromSeconds(5), HoldBacks(untimed, 1)[0]);

        // Calls of 10 ms: four calls' time is 40 ms, so the floor of 0.5 s. (Held back only from a queue twice as
        // deep as the cap: a quick destination empties a shallower one sooner than a park would take.)
        var quick = Policy(permitsPerSecond: 1000, attemptTimeout: TimeSpan.FromSeconds(30));
        await Call(quick, TimeSpan.FromMilliseconds(10));
        using (Fill(quick, queued: 2))
            Assert.Equal(Floor, HoldBacks(quick, 1)[0]);

        // Calls of 1 s: four of them, 4 s.
        var slow = Policy(permitsPerSecond: 1000, attemptTimeout: TimeSpan.FromSeconds(30));
        await Call(slow, TimeSpan.FromSeconds(1));
        using (Fill(slow, queued: 2))
            Assert.Equal(TimeSpan.FromSeconds(4), HoldBacks(slow, 1)[0]);

        // Calls of 10 ms, but a rate limit of 2/s: paced by its limit, its backlog drains at 2/s whatever comes back
        // sooner (in the rate-accuracy bench, sooner meant more parks and busier seconds): the longest.
        var limited = Policy(permitsPerSecond: 2, attemptTimeout: TimeSpan.FromSeconds(30));
        await Call(limited, TimeSpan.FromMilliseconds(10));
        using (Fill(limited))
            Assert.Equal(TimeSpan.FromSeconds(5), HoldBacks(limited, 1)[0]);

        // Quick calls, then none for a second (longer than the 0.5 s it would give): it may have started hanging,
        // and its average still says quick: the longest again.
        var stalled = Policy(permitsPerSecond: 1000, attemptTimeout: TimeSpan.FromSeconds(30));
        await Call(stalled, TimeSpan.FromMilliseconds(10));
        _time.Advance(TimeSpan.FromSeconds(1));
        using (Fill(stalled, queued: 2))
            Assert.Equal(TimeSpan.FromSeconds(5), HoldBacks(stalled, 1)[0]);
    }

    [Fact]
    public async Task A_destination_that_empties_its_queue_sooner_than_a_park_would_take_lets_its_overflow_wait_there()
    {
        // Calls of 10 ms with a cap of 4: 400 a second. Its queue empties sooner than a park would take, so requests
        // at the cap wait in it instead of being held back (round the outbox), up to twice the cap.
        var quick = Policy(permitsPerSecond: 1000, maxConcurrency: 4);
        await Call(quick, TimeSpan.FromMilliseconds(10));
        var release = new TaskCompletionSource<AttemptOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        var calls = Enumerable.Range(0, 4).Select(_ => quick.ExecuteAsync(_ => release.Task, CancellationToken.None)).ToList();
        var queued = Enumerable.Range(0, 7).Select(_ => quick.ExecuteAsync(_ => Task.FromResult(Ok()), CancellationToken.None)).ToList();
        Assert.False(quick.ShouldHoldBack(out _, out _));
        queued.Add(quick.ExecuteAsync(_ => Task.FromResult(Ok()), CancellationToken.None));
        Assert.All(calls.Concat(queued), t => Assert.False(t.IsCompleted));
        Assert.True(quick.ShouldHoldBack(out _, out var reason));
        Assert.Equal(DestinationPolicy.AtCapacity, reason);
        // One that passed the look anyway (a redelivery skips it) parks at once rather than queueing deeper.
        var parking = quick.ExecuteAsync(_ => Task.FromResult(Ok()), CancellationToken.None);
        Assert.True(parking.IsCompleted);
        var overflow = await parking.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Null(overflow.Outcome);
        Assert.Equal(DestinationPolicy.AtCapacity, overflow.ParkReason);
        release.SetResult(Ok());
        Assert.All(await Task.WhenAll(calls.Concat(queued)).WaitAsync(TimeSpan.FromSeconds(10)), r => Assert.NotNull(r.Outcome));

        // The deeper queue borrows only the worker's own slots: with one, a cap of 4 queues 5 at most.
        var fewSlots = Policy(permitsPerSecond: 1000, maxConcurrency: 4, workerSlots: 1);
        await Call(fewSlots, TimeSpan.FromMilliseconds(10));
        var held = new TaskCompletionSource<AttemptOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        var inHand = Enumerable.Range(0, 4 + 4).Select(_ => fewSlots.ExecuteAsync(_ => held.Task, CancellationToken.None)).ToList();
        Assert.False(fewSlots.ShouldHoldBack(out _, out _));
        inHand.Add(fewSlots.ExecuteAsync(_ => held.Task, CancellationToken.None));
        Assert.All(inHand, t => Assert.False(t.IsCompleted));
        Assert.True(fewSlots.ShouldHoldBack(out _, out _));
        held.SetResult(Ok());
        await Task.WhenAll(inHand).WaitAsync(TimeSpan.FromSeconds(10));

        // Not yet timed: nothing says how soon its queue empties; held back from a queue as deep as the cap, and one
        // that passed the look parks at once.
        var untimed = Policy(permitsPerSecond: 1000);
        using (Fill(untimed))
        {
            Assert.True(untimed.ShouldHoldBack(out _, out _));
            var parking2 = untimed.ExecuteAsync(_ => Task.FromResult(Ok()), CancellationToken.None);
            Assert.True(parking2.IsCompleted);
            Assert.Equal(DestinationPolicy.AtCapacity, (await parking2).ParkReason);
        }

        // Quick calls, but paced by its rate limit (2/s): its backlog drains at the rate, the queue stays at the cap.
        var limited = Policy(permitsPerSecond: 2);
        await Call(limited, TimeSpan.FromMilliseconds(10));
        using (Fill(limited))
            Assert.True(limited.ShouldHoldBack(out _, out _));

        // Quick (400/s), four queued, but then its calls go unanswered for 400 ms: its pace counts that (10/s), and the
        // same queue now takes 0.4 s, more than half the 0.5 s a request waits in it.
        var hanging = Policy(permitsPerSecond: 1000, maxConcurrency: 4, attemptTimeout: TimeSpan.FromSeconds(30));
        await Call(hanging, TimeSpan.FromMilliseconds(10));
        var hung = new TaskCompletionSource<AttemptOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        var hangingCalls = Enumerable.Range(0, 8).Select(_ => hanging.ExecuteAsync(_ => hung.Task, CancellationToken.None)).ToList();
        Assert.False(hanging.ShouldHoldBack(out _, out _));
        _time.Advance(TimeSpan.FromMilliseconds(400));
        Assert.True(hanging.ShouldHoldBack(out _, out _));
        // At 600 ms the four queued have parked (their 0.5 s wait ran out) and four more queue, as deep as the cap:
        // unanswered for longer than a quick destination's wait, it may be hanging, and its queue stays at the cap
        // (its park delay is now the longest, 5 s, which must not let the queue grow again).
        _time.Advance(TimeSpan.FromMilliseconds(200));
        Assert.All(hangingCalls.Skip(4), t => Assert.Equal(DestinationPolicy.AtCapacity, t.Result.ParkReason));
        var requeued = Enumerable.Range(0, 4).Select(_ => hanging.ExecuteAsync(_ => hung.Task, CancellationToken.None)).ToList();
        Assert.All(requeued, t => Assert.False(t.IsCompleted));
        Assert.True(hanging.ShouldHoldBack(out _, out _));
        hung.SetResult(Ok());
        await Task.WhenAll(hangingCalls.Concat(requeued)).WaitAsync(TimeSpan.FromSeconds(10));
    }

    private async Task Call(DestinationPolicy policy, TimeSpan duration)
    {
        var ran = await policy.ExecuteAsync(_ =>
        {
            _time.Advance(duration);
            return Task.FromResult(Ok());
        }, CancellationToken.None);
        Assert.NotNull(ran.Outcome);
        Assert.Equal(duration, policy.CallDuration);
    }

    [Fact]
    public void A_backlog_longer_than_the_longest_return_waits_in_line_at_that_distance()
    {
        var policy = Policy(permitsPerSecond: 1); // 1.25/s: one return every 800 ms
        using var full = Fill(policy);

        var delays = HoldBacks(policy, 30);

        Assert.Equal(Floor, delays[0]);
        Assert.Equal(Floor + TimeSpan.FromMilliseconds(800 * 12), delays[12]); // 10.1 s
        // The overflow is spread over the line, not piled at its end (where it would all come back at one instant).
        Assert.All(delays.Skip(13), d => Assert.InRange(d, Floor, Floor + DestinationPolicy.MaxReturnLine));
        Assert.True(delays.Skip(13).Distinct().Count() > 1, "the overflow is spread");
    }

    [Fact]
    public async Task Once_the_line_has_come_back_the_next_request_returns_after_the_park_delay_again_and_parks_follow_the_line_too()
    {
        var policy = Policy(permitsPerSecond: 10); // one return every 80 ms
        using var full = Fill(policy);
        Assert.Equal(Floor + TimeSpan.FromMilliseconds(80 * 9), HoldBacks(policy, 10)[^1]);

        // The queued request gives up waiting for a slot after the park delay and parks: behind the ten, whose line
        // ends 1.3 s after the start, 0.8 s from then.
        _time.Advance(Floor);
        var parked = await full.Queued;
        Assert.Null(parked.Outcome);
        Assert.Equal(DestinationPolicy.AtCapacity, parked.ParkReason);
        Assert.Equal(TimeSpan.FromMilliseconds(800), parked.ParkFor);

        // Long after the line: back to the park delay.
        _time.Advance(TimeSpan.FromSeconds(10));
        using var again = Fill(policy, holderRunning: full);
        Assert.Equal([Floor], HoldBacks(policy, 1));
    }

    [Fact]
    public async Task A_request_waiting_for_a_slot_when_the_worker_stops_is_cancelled_not_parked()
    {
        var policy = Policy(permitsPerSecond: 10);
        var release = new TaskCompletionSource<AttemptOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        var holder = policy.ExecuteAsync(_ => release.Task, CancellationToken.None);
        using var stopping = new CancellationTokenSource();
        var queued = policy.ExecuteAsync(_ => Task.FromResult(Ok()), stopping.Token);
        Assert.False(queued.IsCompleted);

        await stopping.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued.WaitAsync(TimeSpan.FromSeconds(10)));

        // The slot it waited for is still the holder's; once given back, the next request has it at once.
        release.SetResult(Ok());
        Assert.NotNull((await holder.WaitAsync(TimeSpan.FromSeconds(10))).Outcome);
        Assert.NotNull((await policy.ExecuteAsync(_ => Task.FromResult(Ok()), CancellationToken.None)).Outcome);
    }

    [Fact]
    public async Task While_the_breaker_is_open_requests_are_sent_back_in_line_from_the_end_of_the_break_and_so_are_parks_while_it_probes()
    {
        // Room for the probe and the requests that come while it runs (it holds one slot).
        var policy = Policy(permitsPerSecond: 100, maxConcurrency: 8); // 125/s with headroom: one return every 8 ms
        // Two failures in the sampling window open the breaker for 10 s.
        for (var i = 0; i < 2; i++)
        {
            var failed = await policy.ExecuteAsync(_ => Task.FromResult(Failed()), CancellationToken.None);
            Assert.NotNull(failed.Outcome);
        }

        var heldBack = new List<TimeSpan>();
        for (var i = 0; i < 5; i++)
        {
            Assert.True(policy.ShouldHoldBack(out var delay, out var reason));
            Assert.Equal(DestinationPolicy.CircuitOpen, reason);
            heldBack.Add(delay);
        }
        // Before: all five at the end of the break, together.
        Assert.Equal(Enumerable.Range(0, 5).Select(i => Break + TimeSpan.FromMilliseconds(8 * i)), heldBack);

        // The break ends: one probe goes (and hangs); the requests that come meanwhile park, in line too.
        _time.Advance(Break);
        Assert.False(policy.ShouldHoldBack(out _, out _));
        var probe = new TaskCompletionSource<AttemptOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        var probing = policy.ExecuteAsync(_ => probe.Task, CancellationToken.None);
        Assert.False(probing.IsCompleted);
        var parks = new List<TimeSpan>();
        for (var i = 0; i < 3; i++)
        {
            var parked = await policy.ExecuteAsync(_ => Task.FromResult(Ok()), CancellationToken.None);
            Assert.Null(parked.Outcome);
            Assert.Equal(DestinationPolicy.CircuitOpen, parked.ParkReason);
            parks.Add(parked.ParkFor);
        }
        // Polly blocks the others for another break while its probe runs (their RetryAfter): in line from there.
        Assert.Equal([Break, Break + TimeSpan.FromMilliseconds(8), Break + TimeSpan.FromMilliseconds(16)], parks);
        probe.SetResult(Ok());
        Assert.NotNull((await probing).Outcome);

        // Closed again: the breaker's line (a break ahead) does not hold back the cap's returns.
        var hold = new TaskCompletionSource<AttemptOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        var running = Enumerable.Range(0, 16).Select(_ => policy.ExecuteAsync(_ => hold.Task, CancellationToken.None)).ToList();
        Assert.True(policy.ShouldHoldBack(out var atCap, out var capReason));
        Assert.Equal((DestinationPolicy.AtCapacity, Floor), (capReason, atCap));
        hold.SetResult(Ok());
        Assert.All(await Task.WhenAll(running).WaitAsync(TimeSpan.FromSeconds(10)), r => Assert.NotNull(r.Outcome));
    }

    [Fact]
    public async Task While_the_probe_runs_requests_are_held_back_before_their_claim_in_the_breakers_line()
    {
        var policy = Policy(permitsPerSecond: 100, maxConcurrency: 8); // one return every 8 ms
        await OpenAsync(policy);
        _time.Advance(Break);
        var probe = new TaskCompletionSource<AttemptOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        var called = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var probing = policy.ExecuteAsync(_ => { called.TrySetResult(); return probe.Task; }, CancellationToken.None);
        // Polly runs its half-open callback on a task of its own and the probe's call only after it.
        await called.Task.WaitAsync(TimeSpan.FromSeconds(10));

        // Polly would reject them after their claim (for another break): held back before it instead, in line.
        var heldBack = BreakerHoldBacks(policy, 3);
        Assert.Equal([Break, Break + TimeSpan.FromMilliseconds(8), Break + TimeSpan.FromMilliseconds(16)], heldBack);

        // The probe succeeds: closed, nothing held back.
        probe.SetResult(Ok());
        Assert.NotNull((await probing).Outcome);
        Assert.False(policy.ShouldHoldBack(out _, out _));
    }

    [Fact]
    public async Task A_destination_failing_for_longer_than_the_line_has_its_returns_spread_over_how_long_it_has_been_failing()
    {
        var policy = Policy(permitsPerSecond: 100, maxConcurrency: 8);
        await OpenAsync(policy);
        // Two more breaks whose probe fails: failing for 20 s, the breaker open for another 10.
        for (var i = 0; i < 2; i++)
        {
            _time.Advance(Break);
            Assert.NotNull((await policy.ExecuteAsync(_ => Task.FromResult(Failed()), CancellationToken.None)).Outcome);
        }

        var delays = BreakerHoldBacks(policy, 200);
        // From the end of the break, over the 20 s of the spell: past the 10-s line, and not paced 8 ms apart.
        Assert.All(delays, d => Assert.InRange(d, Break, Break + TimeSpan.FromSeconds(20)));
        Assert.Contains(delays, d => d > Break + DestinationPolicy.MaxReturnLine);
        Assert.True(delays.Distinct().Count() > 100, "spread at random");

        // The probe succeeds: the spell ends; the next opening starts a new one, whose returns are paced in line again.
        _time.Advance(Break);
        Assert.NotNull((await policy.ExecuteAsync(_ => Task.FromResult(Ok()), CancellationToken.None)).Outcome);
        _time.Advance(TimeSpan.FromSeconds(30)); // past the old line and out of the sampling window
        await OpenAsync(policy); // (its look holds one back: the line's first place)
        Assert.Equal(Enumerable.Range(1, 5).Select(i => Break + TimeSpan.FromMilliseconds(8 * i)), BreakerHoldBacks(policy, 5));
    }

    [Fact]
    public async Task A_breaker_left_open_without_traffic_has_not_been_failing_and_returns_while_its_probe_runs_stay_in_line()
    {
        var policy = Policy(permitsPerSecond: 100, maxConcurrency: 8); // one return every 8 ms
        await OpenAsync(policy);
        // Ten minutes with no call: Polly half-opens only when one comes, so the breaker stayed open, but nothing has
        // failed since it opened. Traffic comes back: its first request is the probe (under way).
        _time.Advance(TimeSpan.FromMinutes(10));
        var probe = new TaskCompletionSource<AttemptOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        var called = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var probing = policy.ExecuteAsync(_ => { called.TrySetResult(); return probe.Task; }, CancellationToken.None);
        await called.Task.WaitAsync(TimeSpan.FromSeconds(10));

        // Held back in line for the probe's break, not spread over ten minutes.
        Assert.Equal(Enumerable.Range(0, 5).Select(i => Break + TimeSpan.FromMilliseconds(8 * i)), BreakerHoldBacks(policy, 5));
        probe.SetResult(Ok());
        Assert.NotNull((await probing).Outcome);
    }

    [Fact]
    public async Task In_a_long_outage_a_request_whose_deadline_falls_inside_the_spread_comes_back_before_it()
    {
        var policy = Policy(permitsPerSecond: 100, maxConcurrency: 8);
        await OpenAsync(policy);
        for (var i = 0; i < 6; i++) // failing for a minute
        {
            _time.Advance(Break);
            Assert.NotNull((await policy.ExecuteAsync(_ => Task.FromResult(Failed()), CancellationToken.None)).Outcome);
        }

        var deadline = _time.GetUtcNow() + Break + TimeSpan.FromSeconds(20);
        var delays = new List<TimeSpan>();
        for (var i = 0; i < 200; i++)
        {
            Assert.True(policy.ShouldHoldBack(out var delay, out _, deadline));
            delays.Add(delay);
        }
        // Spread between the end of the break and the Deadline, not piled at the end of the break.
        Assert.All(delays, d => Assert.InRange(d, Break, Break + TimeSpan.FromSeconds(20)));
        Assert.True(delays.Count(d => d == Break) < 5, "not piled at the end of the break");
        Assert.Contains(delays, d => d > Break + TimeSpan.FromSeconds(10));
        // A Deadline before the end of the break: back as early as it may.
        Assert.True(policy.ShouldHoldBack(out var late, out _, _time.GetUtcNow() + TimeSpan.FromSeconds(1)));
        Assert.Equal(Break, late);
    }

    [Fact]
    public async Task A_breaker_that_closes_after_a_spell_long_enough_to_spread_its_returns_says_so_once()
    {
        var policy = Policy(permitsPerSecond: 100, maxConcurrency: 8);
        // A short spell (opened once, its first probe succeeds): returns were in line, nothing to bring forward.
        await OpenAsync(policy);
        _time.Advance(Break);
        Assert.NotNull((await policy.ExecuteAsync(_ => Task.FromResult(Ok()), CancellationToken.None)).Outcome);
        Assert.False(policy.TakeRecovery(out _));

        // A long one: two failed probes (20 s), then one succeeds.
        _time.Advance(TimeSpan.FromSeconds(30));
        await OpenAsync(policy);
        for (var i = 0; i < 2; i++)
        {
            _time.Advance(Break);
            Assert.NotNull((await policy.ExecuteAsync(_ => Task.FromResult(Failed()), CancellationToken.None)).Outcome);
        }
        _time.Advance(Break);
        Assert.NotNull((await policy.ExecuteAsync(_ => Task.FromResult(Ok()), CancellationToken.None)).Outcome);

        Assert.True(policy.TakeRecovery(out var outage));
        Assert.Equal(TimeSpan.FromSeconds(20), outage);
        Assert.False(policy.TakeRecovery(out _)); // once
        policy.NoteRecovery(outage); // given back when it could not be done
        Assert.True(policy.TakeRecovery(out var again));
        Assert.Equal(outage, again);
    }

    [Fact]
    public async Task However_long_a_destination_has_been_failing_its_returns_are_spread_over_at_most_the_longest_spread()
    {
        var policy = Policy(permitsPerSecond: 100, maxConcurrency: 8);
        await OpenAsync(policy);
        for (var i = 0; i < 60; i++) // ten minutes of failed probes
        {
            _time.Advance(Break);
            Assert.NotNull((await policy.ExecuteAsync(_ => Task.FromResult(Failed()), CancellationToken.None)).Outcome);
        }

        var delays = BreakerHoldBacks(policy, 200);
        Assert.All(delays, d => Assert.InRange(d, Break, Break + DestinationPolicy.MaxOutageSpread));
        Assert.Contains(delays, d => d > Break + TimeSpan.FromMinutes(4));
    }

    [Fact]
    public void A_request_whose_place_in_line_would_be_after_its_deadline_comes_back_as_early_as_it_may_and_takes_no_place()
    {
        var policy = Policy(permitsPerSecond: 10); // one return every 80 ms
        using var full = Fill(policy);
        Assert.Equal(Floor + TimeSpan.FromMilliseconds(80 * 9), HoldBacks(policy, 10)[^1]); // the next place: 1.3 s

        Assert.True(policy.ShouldHoldBack(out var early, out _, deadline: _time.GetUtcNow() + TimeSpan.FromSeconds(1)));
        Assert.Equal(Floor, early);
        // Its place went to the next one.
        Assert.Equal([Floor + TimeSpan.FromMilliseconds(800)], HoldBacks(policy, 1));
        // A deadline after the place keeps it.
        Assert.True(policy.ShouldHoldBack(out var inLine, out _, deadline: _time.GetUtcNow() + TimeSpan.FromSeconds(5)));
        Assert.Equal(Floor + TimeSpan.FromMilliseconds(880), inLine);
    }

    [Fact]
    public void A_policy_rebuilt_by_a_reload_takes_over_the_fleet_count_and_continues_the_line()
    {
        var before = Policy(permitsPerSecond: 10); // one return every 80 ms for one worker
        before.FleetWorkers = 2; // 160 ms for its share
        using (Fill(before))
            Assert.Equal(Floor + TimeSpan.FromMilliseconds(160 * 4), HoldBacks(before, 5)[^1]);

        var after = Policy(permitsPerSecond: 10);
        after.TakeOver(before);
        Assert.Equal(2, after.FleetWorkers);
        using var full = Fill(after);
        // Behind the five already sent back, not alongside them.
        Assert.Equal([Floor + TimeSpan.FromMilliseconds(160 * 5)], HoldBacks(after, 1));
    }

    [Fact]
    public void The_fleet_is_never_counted_below_this_worker()
    {
        var policy = Policy(permitsPerSecond: 100);
        policy.FleetWorkers = 0;
        Assert.Equal(1, policy.FleetWorkers);
        Assert.Equal(100, policy.ExpectedPace);
    }

    private DestinationPolicy Policy(double permitsPerSecond, int maxConcurrency = 1, TimeSpan? attemptTimeout = null, int workerSlots = int.MaxValue) =>
        new("policy-test", new DestinationOptions
        {
            BaseUrl = new Uri("http://127.0.0.1:1/"),
            MaxConcurrency = maxConcurrency,
            AttemptTimeout = attemptTimeout ?? TimeSpan.FromSeconds(2),
            RateLimit = new RateLimitOptions { PermitsPerSecond = permitsPerSecond },
            CircuitBreaker = new CircuitBreakerOptions
            {
                FailureRatio = 0.5, MinimumThroughput = 2, SamplingDuration = TimeSpan.FromSeconds(30), BreakDuration = Break,
            },
        }, new DestinationMetrics($"policy-test-{Guid.NewGuid():N}"), rateLimits: null, _time, workerSlots);

    private static List<TimeSpan> HoldBacks(DestinationPolicy policy, int count, string expectedReason = DestinationPolicy.AtCapacity)
    {
        var delays = new List<TimeSpan>();
        for (var i = 0; i < count; i++)
        {
            Assert.True(policy.ShouldHoldBack(out var delay, out var reason));
            Assert.Equal(expectedReason, reason);
            delays.Add(delay);
        }
        return delays;
    }

    // Two failures in the sampling window open the breaker for a break.
    private async Task OpenAsync(DestinationPolicy policy)
    {
        for (var i = 0; i < 2; i++)
            Assert.NotNull((await policy.ExecuteAsync(_ => Task.FromResult(Failed()), CancellationToken.None)).Outcome);
        Assert.True(policy.ShouldHoldBack(out _, out var reason));
        Assert.Equal(DestinationPolicy.CircuitOpen, reason);
    }

    private static List<TimeSpan> BreakerHoldBacks(DestinationPolicy policy, int count) => HoldBacks(policy, count, DestinationPolicy.CircuitOpen);

    private AttemptOutcome Ok() => new(AttemptResult.Success, _time.GetUtcNow(), TimeSpan.Zero, 200);

    private AttemptOutcome Failed() => new(AttemptResult.HttpError, _time.GetUtcNow(), TimeSpan.Zero, 503, Error: "HTTP 503");

    /// <summary>
    /// Takes the cap (one call that runs until disposed) and fills its queue (one request waiting for the slot), so
    /// that the destination holds requests back. With <paramref name="holderRunning"/>, its call keeps the slot.
    /// </summary>
    private Full Fill(DestinationPolicy policy, Full? holderRunning = null, int queued = 1)
    {
        var release = new TaskCompletionSource<AttemptOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        var holder = holderRunning?.Holder ?? policy.ExecuteAsync(_ => release.Task, CancellationToken.None);
        Assert.False(holder.IsCompleted);
        var waiting = Enumerable.Range(0, queued).Select(_ => policy.ExecuteAsync(_ => Task.FromResult(Ok()), CancellationToken.None)).ToList();
        Assert.All(waiting, w => Assert.False(w.IsCompleted));
        return new Full(holder, waiting[0], release);
    }

    private sealed class Full(Task<PolicyResult> holder, Task<PolicyResult> queued, TaskCompletionSource<AttemptOutcome> release) : IDisposable
    {
        public Task<PolicyResult> Holder { get; } = holder;

        public Task<PolicyResult> Queued { get; } = queued;

        public void Dispose() => release.TrySetCanceled();
    }
}
