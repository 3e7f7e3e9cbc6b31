using Dispatcher.Persistence.RateLimiting;
using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Observability;
using Polly;
using Polly.CircuitBreaker;

namespace Dispatcher.Worker.Resilience;

/// <summary>
/// The per-destination policies around one attempt, outermost first:
/// a concurrency cap (its call slots and their line (CallSlots), as deep as the cap or, for a destination seen to empty it
/// quickly, a little deeper (QueueFull): a request at the cap waits for a slot at most as long as it would have been
/// parked, holding no worker slot meanwhile, and parks when the queue is full or the wait runs out), the fleet-wide
/// rate limit (wait briefly for a permit, else park), and a circuit breaker (Polly; while open, and while its half-open
/// probe runs, requests are sent back for later, in the breaker's line or, once it has failed for longer than the line,
/// spread over how long it has failed; no attempt is counted).
/// Breaker state is per worker: see docs/design.md.
/// </summary>
internal sealed class DestinationPolicy
{
    public const string AtCapacity = "MaxConcurrency reached";
    public const string CircuitOpen = "circuit open";

    /// <summary>Longest wait for a rate permit while holding a destination slot; longer waits park.</summary>
    private static readonly TimeSpan MaxPermitWait = TimeSpan.FromSeconds(1);

    /// <summary>Returns from the cap are spaced a quarter faster than the destination's estimated pace: holes cost calls.</summary>
    private const double ReturnHeadroom = 1.25;

    /// <summary>
    /// The longest line of returns, from the earliest a request may come back (the park delay, or the end of the break):
    /// beyond it, a backlog waits at its end. A return's due time is fixed once written, so this is also about how
    /// long a larger pace (a raised rate limit, a destination that got faster) takes to reach the whole backlog; a
    /// minute left a hot-reloaded rate limit's backlog trickling back at the old pace for that long.
    /// </summary>
    public static readonly TimeSpan MaxReturnLine = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The longest a failing destination's returns are spread over: its breaker's returns are spread over as long as
    /// it has been failing (at least <see cref="MaxReturnLine"/>), at most this. A backlog for a destination that stays
    /// down therefore comes back ever less often (about backlog / outage per second) instead of once a break and a line.
    /// </summary>
    public static readonly TimeSpan MaxOutageSpread = TimeSpan.FromMinutes(5);

    private readonly ResiliencePipeline<AttemptOutcome> _breaker;
    private readonly SharedRateLimiter? _rateLimiter;
    private readonly DestinationOptions _options;
    private readonly TimeProvider _time;
    private readonly CallSlots _slots;
    private long _openUntilTicks;
    // Half-open: until when Polly lets no call but its probe through (UTC ticks; 0 otherwise).
    private long _probingUntilTicks;
    // When the breaker first opened in this failing spell (UTC ticks; 0 while closed), and when it last opened: a
    // half-open probe that fails opens it again within the same spell. The spell's length is from the first opening to
    // the last (failures seen), not to now: a breaker left open by a blip and then no traffic has not been failing.
    private long _failingSinceTicks;
    private long _lastOpenedTicks;
    // How long the last failing spell that spread its returns lasted (ticks; 0: none to bring forward), set as the
    // breaker closes: what it sent back is due over as long as that, and the worker brings it forward (TakeRecovery).
    private long _recoveredAfterTicks;
    private readonly Lock _returnLock = new();
    // Two lines of returns, each where its next return goes (UTC ticks; under _returnLock): from the cap, and from the
    // breaker (held back while open or while its probe runs, parked when Polly rejects them: those wait about a break,
    // and must not push the cap's returns that far back once it has closed).
    private long _capLine;
    private long _breakerLine;
    private long _callTicksAverage;
    private long _lastCallEnded; // TimeProvider timestamp
    // Calls under way, and since when some have been (TimeProvider timestamp, set as the first of them starts).
    private int _calling;
    private long _callingSince;
    private int _fleetWorkers = 1;
    private readonly long _deepestQueue;

    /// <param name="workerSlots">The worker's own slots (<c>Worker:MaxConcurrency</c>): the most a quick destination's queue may borrow beyond its cap.</param>
    public DestinationPolicy(string name, DestinationOptions options, DestinationMetrics metrics, RateLimitStore? rateLimits, TimeProvider time, int workerSlots = int.MaxValue)
    {
        _deepestQueue = (long)options.MaxConcurrency + Math.Min(options.MaxConcurrency, Math.Max(0, workerSlots));
        _options = options;
        _time = time;
        _rateLimiter = rateLimits is null ? null : new SharedRateLimiter(name, options.RateLimit, rateLimits, time, () => FleetWorkers);
        // How deep the line for them may grow is the policy's to decide (QueueFull); the consumer's prefetch bounds it.
        _slots = new CallSlots(options.MaxConcurrency);
        var cb = options.CircuitBreaker;
        _breaker = new ResiliencePipelineBuilder<AttemptOutcome> { TimeProvider = time }
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions<AttemptOutcome>
            {
                FailureRatio = cb.FailureRatio,
                MinimumThroughput = cb.MinimumThroughput,
                SamplingDuration = cb.SamplingDuration,
                BreakDuration = cb.BreakDuration,
                // Only what the downstream did counts: retriable failures (5xx, 408, 429, timeouts, connection errors).
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Result is { } o && RetryClassifier.IsRetriable(o)),
                OnOpened = args =>
                {
                    var now = time.GetUtcNow().UtcTicks;
                    Volatile.Write(ref _lastOpenedTicks, now);
                    Interlocked.CompareExchange(ref _failingSinceTicks, now, 0);
                    // Open before the probe's hold ends, so that no look in between finds neither.
                    Volatile.Write(ref _openUntilTicks, now + args.BreakDuration.Ticks);
                    Volatile.Write(ref _probingUntilTicks, 0);
                    metrics.CircuitState.Set(1);
                    return ValueTask.CompletedTask;
                },
                OnHalfOpened = _ =>
                {
                    // Polly blocks the others for another break while its probe runs.
                    Volatile.Write(ref _probingUntilTicks, (time.GetUtcNow() + cb.BreakDuration).UtcTicks);
                    Volatile.Write(ref _openUntilTicks, 0);
                    metrics.CircuitState.Set(2);
                    return ValueTask.CompletedTask;
                },
                OnClosed = _ =>
                {
                    Volatile.Write(ref _openUntilTicks, 0);
                    Volatile.Write(ref _probingUntilTicks, 0);
                    var failing = FailingFor;
                    if (failing > MaxReturnLine)
                        Volatile.Write(ref _recoveredAfterTicks, failing.Ticks);
                    Volatile.Write(ref _failingSinceTicks, 0);
                    metrics.CircuitState.Set(0);
                    return ValueTask.CompletedTask;
                },
            })
            .Build();
        metrics.CircuitState.Set(0);
    }

    public SharedRateLimiter? RateLimiter => _rateLimiter;

    /// <summary>
    /// A request is about to be claimed: when it will find a free slot, its rate permit may be leased meanwhile
    /// (<see cref="SharedRateLimiter.Anticipate"/>); one that will wait in the queue needs none yet.
    /// </summary>
    public void AnticipatePermit()
    {
        if (_rateLimiter is not null && _slots.Free > 0)
            _rateLimiter.Anticipate();
    }

    /// <summary>
    /// Workers that share this destination's rate limit (from their heartbeats; this one included, at least 1).
    /// </summary>
    public int FleetWorkers
    {
        get => Volatile.Read(ref _fleetWorkers);
        set => Volatile.Write(ref _fleetWorkers, Math.Max(1, value));
    }

    /// <summary>
    /// Takes over, from the policy this one replaces (a config reload rebuilds every destination), what it knew of the
    /// fleet and where its lines of returns stand: requests it sent back are due where they are, so the next returns
    /// go after them rather than alongside (at up to twice the pace for a line's length), and the pace is not one
    /// worker's for the seconds until the next heartbeat.
    /// </summary>
    public void TakeOver(DestinationPolicy previous)
    {
        FleetWorkers = previous.FleetWorkers;
        long cap, breaker;
        lock (previous._returnLock)
            (cap, breaker) = (previous._capLine, previous._breakerLine);
        lock (_returnLock)
            (_capLine, _breakerLine) = (cap, breaker);
    }

    /// <summary>Smoothed duration of this worker's calls to the destination; zero before the first.</summary>
    public TimeSpan CallDuration => TimeSpan.FromTicks(Volatile.Read(ref _callTicksAverage));

    /// <summary>
    /// How many requests a second this worker can expect the destination to take from it: its share of the rate
    /// limit, or what the cap carries at the calls' duration when that is less. Both come from configuration and the
    /// destination's own answers, not from how many calls the worker happened to start (a measure that falls while
    /// the worker is busy sending a backlog back, and would slow the returns it paces further).
    /// </summary>
    public double ExpectedPace => Math.Min(RatePace, CallPace);

    /// <summary>This worker's share of the rate limit, per second.</summary>
    private double RatePace => _options.RateLimit.PermitsPerSecond / FleetWorkers;

    /// <summary>
    /// What the cap carries at the calls' duration, per second (unbounded before the first call ends, while none is
    /// under way): their smoothed duration, or, when longer, how long calls have been under way without any ending. A destination that
    /// hangs has no timed call until its attempts time out, and one that was quick keeps a quick average until then;
    /// its pace falls as its calls stay unanswered instead (the isolation bench's hanging destination sent its
    /// overflow back all at once every 0.5 s for the 2 s of its AttemptTimeout).
    /// </summary>
    private double CallPace => CallPaceWith(Unanswered);

    private double CallPaceWith(TimeSpan unanswered)
    {
        var ticks = Math.Max(Volatile.Read(ref _callTicksAverage), unanswered.Ticks);
        return ticks > 0 ? _options.MaxConcurrency / TimeSpan.FromTicks(ticks).TotalSeconds : double.PositiveInfinity;
    }

    /// <summary>How long calls have been under way without one ending (zero when none is).</summary>
    private TimeSpan Unanswered =>
        Volatile.Read(ref _calling) == 0
            ? TimeSpan.Zero
            : _time.GetElapsedTime(Math.Max(Volatile.Read(ref _lastCallEnded), Volatile.Read(ref _callingSince)));

    /// <summary>The longest a claimed request may wait before its call: a slot in the queue, then a rate permit.</summary>
    public TimeSpan LongestWaitBeforeCall => LongestParkDelay + MaxPermitWait;

    /// <summary>
    /// A cheap look before the claim: true when a request would be parked right away (the destination is at its
    /// concurrency cap, its breaker is open, or its half-open probe is under way), with how long to hold it back. Only a hint: a request that passes
    /// may still be parked by <see cref="ExecuteAsync"/> if the state changed in between.
    /// </summary>
    public bool ShouldHoldBack(out TimeSpan delay, out string reason, DateTimeOffset? deadline = null)
    {
        // Open: until the break ends. Half-open: while its probe runs Polly would reject the request after its claim.
        var blockedUntil = Math.Max(Volatile.Read(ref _openUntilTicks), Volatile.Read(ref _probingUntilTicks));
        var now = _time.GetUtcNow().UtcTicks;
        if (blockedUntil > now)
        {
            delay = BreakerReturnDelay(TimeSpan.FromTicks(blockedUntil - now), deadline);
            reason = CircuitOpen;
            return true;
        }
        // (A line at all means no slot is free: a freed slot goes to the line first.)
        if (QueueFull(_slots.Waiting))
        {
            delay = ReturnDelay(ref _capLine, ConcurrencyParkDelay(), deadline);
            reason = AtCapacity;
            return true;
        }
        delay = TimeSpan.Zero;
        reason = "";
        return false;
    }

    /// <summary>
    /// Runs one attempt under the destination's policies, or parks the request (see the class). A park's due time
    /// keeps a place in the destination's line of returns unless that would be after <paramref name="deadline"/>.
    /// </summary>
    public async Task<PolicyResult> ExecuteAsync(
        Func<CancellationToken, Task<AttemptOutcome>> attempt, CancellationToken cancellationToken, DateTimeOffset? deadline = null)
    {
        if (!_slots.TryTake())
        {
            // The queue's depth is decided here as well as in the look before the claim (a redelivered message skips
            // that look, and concurrent requests may all pass it at once).
            if (QueueFull(_slots.Waiting) || !await WaitForSlotAsync(cancellationToken))
                return PolicyResult.Park(ReturnDelay(ref _capLine, ConcurrencyParkDelay(), deadline), AtCapacity);
        }
        try
        {
            return await RateLimitedAsync(attempt, deadline, cancellationToken);
        }
        finally
        {
            _slots.Release();
        }
    }

    /// <summary>
    /// At the cap: wait in the queue for a slot, at most as long as a park would hold the request back anyway
    /// (a busy destination frees slots in the time of a call; a hanging one does not, and its requests park).
    /// </summary>
    private async Task<bool> WaitForSlotAsync(CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(ConcurrencyParkDelay(), _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        if (await _slots.WaitAsync(linked.Token))
            return true;
        cancellationToken.ThrowIfCancellationRequested(); // the worker stopping: not a park
        return false;
    }

    private async ValueTask<PolicyResult> RateLimitedAsync(
        Func<CancellationToken, Task<AttemptOutcome>> attempt, DateTimeOffset? deadline, CancellationToken cancellationToken)
    {
        try
        {
            if (_rateLimiter is not null && await _rateLimiter.TryAcquireAsync(MaxPermitWait, cancellationToken) is { } wait)
                return PolicyResult.Park(wait, "rate limit");
        }
        catch (Exception ex) when (DurableRetry.IsTransient(ex) && !cancellationToken.IsCancellationRequested)
        {
            // The shared bucket lives in PostgreSQL: while it is unreachable no permit can be had. Park (the park
            // itself waits durably for the database) instead of letting the message fault into the error queue.
            return PolicyResult.Park(TimeSpan.FromSeconds(1), "rate limit store unavailable");
        }
        try
        {
            // Counted inside the breaker: only calls it lets through are under way (or end).
            var outcome = await _breaker.ExecuteAsync(
                static async (state, ct) =>
                {
                    var started = state.Policy.CallStarting();
                    AttemptOutcome outcome;
                    try
                    {
                        outcome = await state.Attempt(ct);
                    }
                    catch
                    {
                        state.Policy.CallEnded();
                        throw;
                    }
                    state.Policy.RecordCall(started, state.Policy.CallEnded());
                    return outcome;
                },
                (Policy: this, Attempt: attempt),
                cancellationToken);
            return PolicyResult.Ran(outcome);
        }
        catch (BrokenCircuitException ex)
        {
            // Open: wait out the break; half-open with its probe in flight: Polly blocks the others for another break
            // (its RetryAfter). In the breaker's line either way: a backlog released at the end of a break would
            // otherwise be claimed and parked all at once, and come back all at once a break later.
            return PolicyResult.Park(BreakerReturnDelay(ex.RetryAfter ?? TimeSpan.FromSeconds(1), deadline), CircuitOpen);
        }
    }

    /// <summary>
    /// How long to send a request back for when the destination cannot take it now (at its cap, or its breaker open):
    /// at least <paramref name="earliest"/> (the park delay: a slot frees within about one attempt; or the rest of the
    /// break); beyond that, each return is spaced after the previous one at the destination's
    /// <see cref="ExpectedPace"/> (with headroom), in a line at most <see cref="MaxReturnLine"/> long. A backlog far
    /// larger than what the worker holds therefore comes back at about the pace the destination takes it, instead of
    /// all of it at once (where each pass costs a receive, an outbox row and a publish per request: a 6,000-request
    /// backlog for a destination limited to 200/s circulated at ~640 hold-backs a second).
    /// </summary>
    /// <remarks>
    /// Past the line's end the overflow is spread at random over the line rather than piled at its end (while the
    /// breaker is open the earliest return stays the end of the break, so a pile would all come back at one instant).
    /// A request whose place would be after its Deadline takes no place and comes back as early as it may: it might
    /// still make it, and it is dead-lettered on return if not.
    /// </remarks>
    private TimeSpan ReturnDelay(ref long line, TimeSpan earliest, DateTimeOffset? deadline)
    {
        var now = _time.GetUtcNow().UtcTicks;
        var spacing = (long)Math.Min(TimeSpan.TicksPerSecond / (ExpectedPace * ReturnHeadroom), MaxReturnLine.Ticks);
        lock (_returnLock)
        {
            var first = now + earliest.Ticks;
            var place = Math.Max(first, line);
            if (deadline is { } d && place > d.UtcTicks)
                return earliest;
            if (place > first + MaxReturnLine.Ticks)
                return earliest + TimeSpan.FromTicks(Random.Shared.NextInt64(MaxReturnLine.Ticks + 1));
            line = place + spacing;
            return TimeSpan.FromTicks(place - now);
        }
    }

    /// <summary>
    /// Where a request sent back by the breaker falls due. While the breaker has not been failing for longer than
    /// <see cref="MaxReturnLine"/> (from its first opening in the spell to its last: a failed probe continues the
    /// spell, a close ends it): in the breaker's line (<see cref="ReturnDelay"/>). Past that, spread at random over as
    /// long as it has been failing (at most <see cref="MaxOutageSpread"/>) from the earliest it may come back: a
    /// backlog at a destination that stays down otherwise came back once every break and line (a paced line at a
    /// destination that fails quickly holds a large backlog at its pace, which says nothing while it is down), and
    /// each return costs a receive, an outbox row and a publish. Once the breaker closes, returns are paced again;
    /// what was sent back during the spell comes back within its spread.
    /// </summary>
    /// <remarks>
    /// A request with a Deadline inside the spread draws its time before the Deadline (one whose Deadline is before
    /// the earliest comes back then, as in the line: it is dead-lettered on return if late), so that such requests are
    /// not all sent back to the end of the break.
    /// </remarks>
    private TimeSpan BreakerReturnDelay(TimeSpan earliest, DateTimeOffset? deadline)
    {
        var failing = FailingFor;
        if (failing <= MaxReturnLine)
            return ReturnDelay(ref _breakerLine, earliest, deadline);
        var spread = (failing < MaxOutageSpread ? failing : MaxOutageSpread).Ticks;
        if (deadline is { } d)
            spread = Math.Min(spread, d.UtcTicks - _time.GetUtcNow().UtcTicks - earliest.Ticks);
        return spread <= 0 ? earliest : earliest + TimeSpan.FromTicks(Random.Shared.NextInt64(spread + 1));
    }

    /// <summary>How long the breaker has been failing: from its first opening in the spell to its last (zero while closed).</summary>
    private TimeSpan FailingFor
    {
        get
        {
            var since = Volatile.Read(ref _failingSinceTicks);
            return since == 0 ? TimeSpan.Zero : TimeSpan.FromTicks(Math.Max(0, Volatile.Read(ref _lastOpenedTicks) - since));
        }
    }

    /// <summary>
    /// Once: true when the breaker has closed after a failing spell long enough to spread its returns (how long,
    /// in <paramref name="outage"/>), and is closed still. What it sent back is due over up to that long (at most
    /// <see cref="MaxOutageSpread"/>); the worker brings it forward (WorkerHeartbeatService), and gives it back with
    /// <see cref="NoteRecovery"/> when that failed. While the breaker has opened again (a new spell: a failing spell
    /// is what every opening starts and only a close ends), the recovery waits for its close.
    /// </summary>
    public bool TakeRecovery(out TimeSpan outage)
    {
        outage = TimeSpan.Zero;
        if (Volatile.Read(ref _failingSinceTicks) != 0)
            return false;
        outage = TimeSpan.FromTicks(Interlocked.Exchange(ref _recoveredAfterTicks, 0));
        return outage > TimeSpan.Zero;
    }

    /// <summary>Gives back a recovery taken with <see cref="TakeRecovery"/> whose backlog could not be brought forward.</summary>
    public void NoteRecovery(TimeSpan outage) =>
        Interlocked.CompareExchange(ref _recoveredAfterTicks, outage.Ticks, 0);

    // A call starts: the first of a busy spell notes when (before it is counted, so that nobody sees calls under way
    // with a stale start).
    private long CallStarting()
    {
        var started = _time.GetTimestamp();
        if (Volatile.Read(ref _calling) == 0)
            Volatile.Write(ref _callingSince, started);
        Interlocked.Increment(ref _calling);
        return started;
    }

    // A call ends, whatever its outcome: noted before it stops being counted.
    private long CallEnded()
    {
        var ended = _time.GetTimestamp();
        Volatile.Write(ref _lastCallEnded, ended);
        Interlocked.Decrement(ref _calling);
        return ended;
    }

    // Exponentially smoothed (1/8 per call); concurrent updates may drop a sample, which an average can spare.
    private void RecordCall(long started, long ended)
    {
        var average = Volatile.Read(ref _callTicksAverage);
        var ticks = Math.Max(1, _time.GetElapsedTime(started, ended).Ticks);
        Volatile.Write(ref _callTicksAverage, average == 0 ? ticks : average + (ticks - average) / 8);
    }

    /// <summary>
    /// Whether a request arriving at the cap is held back (or, past the look before the claim, parked at once): the
    /// queue is as deep as the cap, and the destination is not seen to empty it within half the time a request waits
    /// there. A destination whose timed calls are quick (and still ending: a pace that counts calls unanswered falls
    /// when they stop) lets its overflow wait in the queue, up to the cap again (at most the worker's own slots),
    /// rather than sending it round the outbox: with the queue bounded at the cap, the littles-law bench (256 calls of
    /// 100 ms in flight, prefetch 768) parked 2,900-3,900 of 15,000 requests that would have waited 0.1-0.2 s. A
    /// destination paced by its rate limit, hanging, or not yet timed keeps its queue at the cap and holds the rest
    /// back, so that it holds only its own room and never the others'.
    /// </summary>
    private bool QueueFull(long queued)
    {
        if (queued < _options.MaxConcurrency)
            return false;
        // Past the cap only by as much again, and at most the worker's own slots: the consumer's message limit keeps a
        // destination's cap twice beside the worker's slots, so the deeper queue borrows only from the worker's share
        // (for half a park delay at most), never another destination's. Not at all when untimed or paced by the rate limit.
        var unanswered = Unanswered;
        var pace = CallPaceWith(unanswered);
        if (queued >= _deepestQueue || Volatile.Read(ref _callTicksAverage) == 0 || pace >= RatePace)
            return true;
        // Half the time a request waits in the queue before it parks, at the calls' pace: the last one in still gets
        // its turn. Not once its calls have gone unanswered for that long: it may have started hanging (and then it
        // waits the longest park delay, which must not let its queue grow again).
        var wait = CallParkDelay;
        return unanswered > wait || queued / pace >= wait.TotalSeconds / 2;
    }

    /// <summary>The shortest a request waits or stays parked at the cap: a park (claim, commit, outbox row, resend) is not free.</summary>
    private static readonly TimeSpan ShortestParkDelay = TimeSpan.FromMilliseconds(500);

    // A destination at its cap frees a slot within about one attempt (or one permit wait); coming back much sooner
    // only costs a park again. At most a quarter of the attempt timeout, 0.5 s to 5 s: what a hanging destination's
    // slots take to free (its attempts time out).
    private TimeSpan LongestParkDelay =>
        TimeSpan.FromTicks(Math.Clamp(_options.AttemptTimeout.Ticks / 4, ShortestParkDelay.Ticks, TimeSpan.FromSeconds(5).Ticks));

    /// <summary>
    /// How long a request at the cap waits in the queue, or stays parked, before it comes back: for a destination
    /// paced by its calls, four of their smoothed duration (a full queue empties in about two), within 0.5 s and
    /// <see cref="LongestParkDelay"/>. A destination whose calls are quick (momentarily full: a burst, a pause of the
    /// machine) sends its overflow back in 0.5 s, not in the 5 s a hanging one needs: the throughput bench's 246-290
    /// parks at the cap, of 20,000 instant calls, made a tail of 5 s after 90 % of them were done. The longest: before
    /// any call was timed; when no call has ended for longer than the delay itself (a destination that was quick and
    /// started hanging keeps a quick average until its calls time out); and for a destination paced by its rate
    /// limit, whose backlog drains at that rate whatever comes back sooner (in the rate-accuracy bench, 4x the time
    /// its cap's worth takes at the rate gave more parks and busier seconds: 1.07-1.11 x the limit against 1.04-1.06).
    /// </summary>
    private TimeSpan ConcurrencyParkDelay()
    {
        var longest = LongestParkDelay;
        // Not yet timed (an infinite pace), or paced by its rate limit: its backlog drains at that rate whatever comes
        // back, and sooner only churns.
        if (CallPace >= RatePace)
            return longest;
        var delay = CallParkDelay;
        return _time.GetElapsedTime(Volatile.Read(ref _lastCallEnded)) > delay ? longest : delay;
    }

    /// <summary>Four of the calls' smoothed duration, within 0.5 s and <see cref="LongestParkDelay"/>.</summary>
    private TimeSpan CallParkDelay =>
        TimeSpan.FromSeconds(Math.Clamp(4 * CallDuration.TotalSeconds, ShortestParkDelay.TotalSeconds, LongestParkDelay.TotalSeconds));
}
