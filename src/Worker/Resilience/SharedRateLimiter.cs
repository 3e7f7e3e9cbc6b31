using Dispatcher.Persistence.RateLimiting;
using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Observability;
using Prometheus;

namespace Dispatcher.Worker.Resilience;

/// <summary>
/// The worker's side of a destination's fleet-wide rate limit: takes small leases of permits from the shared
/// bucket in PostgreSQL and spends them locally. A lease asks for what this worker's callers are waiting for, or
/// for what its recent demand will spend within a lot's life if that is more (at most <see cref="LeaseWorth"/> of
/// the rate), and a leased permit not spent within its lot's life leaves the worker's hands (and goes back to the
/// bucket), so permits are spent soon after the bucket granted them: with at most two lots in hand, each at most
/// <see cref="LeaseWorth"/> of the rate, that is what keeps every 1-second window within about rate + burst across
/// all workers. Leasing for the recent demand means a steady stream of requests pays one PostgreSQL round trip per
/// lease rather than one per request.
/// </summary>
/// <remarks>
/// A lot lives <see cref="LeaseLifetime"/> (20 ms), so the permits carried from one second into the next are at
/// most what the bucket granted the whole fleet in the last 20 ms. A lot that is small against the rate may live
/// <see cref="UncontendedLife"/> (250 ms) while the bucket is uncontended with room (the last lease was granted in
/// full and left room for another): one sized for that life's demand and at most <see cref="LongLotCap"/>, so that
/// the long lots of the whole fleet (counted by its heartbeats) together hold no more than 20 ms of the rate, as
/// 20-ms lots at most did. This is for destinations whose limit is far above what is sent: with 20-ms lots on a busy
/// machine (a lease taking 10-20 ms), a stream of ~2,000 requests/s to a destination limited to 1,000,000/s waited
/// for 206 of 311 leases, 21 ms on average per request while holding its call slot, and 40 % of the permits leased
/// ended unspent between the bursts of calls ending together; with 250-ms lots 2-3 of ~60 leases were waited for,
/// and a request waited 0.7-1.7 ms (littles-law bench, docs/benchmarks.md, session 8). A destination sent close to
/// its limit keeps 20-ms lots.
/// </remarks>
#pragma warning disable CA1001 // The SemaphoreSlim never allocates a wait handle: nothing to dispose.
internal sealed class SharedRateLimiter(
    string destination, RateLimitOptions options, RateLimitStore store, TimeProvider time, Func<int>? fleetWorkers = null)
{
    // Calls in any second come from grants in that second and up to a lifetime before it: the lifetime is part of the
    // overshoot at the downstream (50 ms measured 1.06-1.11 x the limit in the rate-accuracy bench, 20 ms 1.04-1.08).
    private static readonly TimeSpan LeaseLifetime = TimeSpan.FromMilliseconds(20);
    private static readonly TimeSpan LeaseWorth = TimeSpan.FromMilliseconds(20);
    private static readonly TimeSpan UncontendedLife = TimeSpan.FromMilliseconds(250);
    // How long a lease statement may take beyond what the caller may wait for the bucket, or in the background: a
    // database that stalls longer parks the requests waiting for a permit (a claim's lease is sized for that wait,
    // with Worker:LeaseMargin on top) instead of holding them for a command timeout each, one after the other.
    private static readonly TimeSpan LongestLeaseStatement = TimeSpan.FromSeconds(1);
    private readonly SemaphoreSlim _refill = new(1, 1);
    private readonly Lock _lock = new();
    // Permits in hand come in at most two lots, each handed back when its own lifetime ends: the lease being spent and,
    // once it runs low, its top-up. (Adding a top-up to the lot in hand and restarting its life let a steady stream
    // pile up permits, since a top-up at half-life asks for a lifetime's demand every half lifetime.)
    private int _permits;
    private DateTimeOffset _expires;
    private long _slot;
    private int _nextPermits;
    private DateTimeOffset _nextExpires;
    private long _nextSlot;
    // Permits whose lot's life ran out before a call spent them, by the window slot of their grant: handed back to the
    // bucket in the background (under the lock; _givingBack is 1 while a hand-back runs).
    private readonly Dictionary<long, int> _unspent = [];
    private int _givingBack;
    private long _givenBack;
    // What the bucket could still grant at once after the last lease: plenty (a lease's worth or more) means nobody
    // is short of permits, and unspent ones need no statement to hand them back.
    private double _lastRoom;
    private int _waiting;
    // Demand estimate: permits taken since the last lease, and the smoothed rate at which they were taken.
    private int _takenSinceLease;
    private DateTimeOffset _lastLeaseAt;
    private double _demandPerSecond;
    // Background top-up: allowed while the bucket is uncontended (the last lease was granted in full).
    private bool _lastLeaseFull;
    private int _lastLeaseSize;
    // The life given to the last lease's lot.
    private TimeSpan _lastLife = LeaseLifetime;
    private readonly Func<int> _fleetWorkers = fleetWorkers ?? (() => 1);
    private int _prefetching;
    private int _foregroundLeases;
    private int _leases;
    private long _unused;
    private long _leased;
    private readonly Counter.Child _leasedMetric = DispatcherMetrics.RateLimitPermits.WithLabels(destination, "leased");
    private readonly Counter.Child _unusedMetric = DispatcherMetrics.RateLimitPermits.WithLabels(destination, "unused");

    public double PermitsPerSecond => options.PermitsPerSecond;

    /// <summary>Leases a caller had to wait for (the round trips a steady stream should mostly not see).</summary>
    internal int ForegroundLeases => Volatile.Read(ref _foregroundLeases);

    /// <summary>True while a lease is being taken in the background (for tests).</summary>
    internal bool Prefetching => Volatile.Read(ref _prefetching) == 1;

    /// <summary>Leases taken from the shared bucket, waited for or topped up in the background.</summary>
    internal int Leases => Volatile.Read(ref _leases);

    /// <summary>Leased permits whose lot's life ran out before a call spent them.</summary>
    internal long UnusedPermits => Interlocked.Read(ref _unused);

    /// <summary>Unspent permits handed back to the bucket (those that ended while it was short of permits), once its statement ran.</summary>
    internal long GivenBackPermits => Interlocked.Read(ref _givenBack);

    /// <summary>Permits granted to this worker by the shared bucket.</summary>
    internal long LeasedPermits => Interlocked.Read(ref _leased);

    /// <summary>True while unspent permits wait to be, or are being, handed back (for tests).</summary>
    internal bool GivingBack
    {
        get
        {
            lock (_lock)
                return _unspent.Count > 0 || _givingBack == 1;
        }
    }

    /// <summary>Unexpired permits this worker holds (for tests).</summary>
    internal int PermitsInHand
    {
        get
        {
            lock (_lock)
            {
                var now = time.GetUtcNow();
                return (HasLot(now) ? _permits : 0) + (HasTopUp(now) ? _nextPermits : 0);
            }
        }
    }

    /// <summary>The last lease left the bucket room for another lease's worth: nobody is short of permits. Under the lock.</summary>
    private bool BucketHadRoom => _lastRoom >= LargestLease;

    /// <summary>The last lease was granted in full and left room for another: the bucket is uncontended. Under the lock.</summary>
    private bool Uncontended => _lastLeaseFull && BucketHadRoom;

    /// <summary>
    /// The most a lot living <see cref="UncontendedLife"/> may hold: the fleet's long lots (a lot and its top-up per
    /// worker) together at most <see cref="LeaseWorth"/> of the rate, and never more than a lease may ask for.
    /// </summary>
    private double LongLotCap =>
        Math.Min(Math.Floor(PermitsPerSecond * LeaseWorth.TotalSeconds / (2 * Math.Max(1, _fleetWorkers()))), LargestLease);

    /// <summary>The life the last lease's lot was given (for tests).</summary>
    internal TimeSpan LastLotLife
    {
        get
        {
            lock (_lock)
                return _lastLife;
        }
    }

    /// <summary>The most a lease asks for: <see cref="LeaseWorth"/> of the rate, at most the bucket's capacity.</summary>
    private double LargestLease => Math.Min(Math.Max(1, Math.Ceiling(PermitsPerSecond * LeaseWorth.TotalSeconds)), Capacity);

    /// <summary>Bucket capacity: Burst, or one second's worth when Burst is 0.</summary>
    public double Capacity => options.Burst > 0 ? options.Burst : Math.Max(1, options.PermitsPerSecond);

    /// <summary>
    /// Takes one permit, waiting at most <paramref name="maxWait"/>. Returns null when a permit was taken, or how
    /// long until one is expected when that is further away than <paramref name="maxWait"/>.
    /// </summary>
    public async Task<TimeSpan?> TryAcquireAsync(TimeSpan maxWait, CancellationToken cancellationToken)
    {
        var deadline = time.GetUtcNow() + maxWait;
        if (TryTakeLocal())
        {
            MaybePrefetch();
            return null;
        }
        Interlocked.Increment(ref _waiting);
        try
        {
            return await WaitForPermitAsync(deadline, cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
    }

    private async Task<TimeSpan?> WaitForPermitAsync(DateTimeOffset deadline, CancellationToken cancellationToken)
    {
        var bound = deadline - time.GetUtcNow();
        using var stalled = new CancellationTokenSource((bound > TimeSpan.Zero ? bound : TimeSpan.Zero) + LongestLeaseStatement, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, stalled.Token);
        try
        {
            return await WaitForPermitAsync(deadline, linked.Token, cancellationToken);
        }
        catch (OperationCanceledException) when (stalled.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            // A lease statement (this caller's, or another's holding the refill) outlasted the wait: the database is slow.
            return LongestLeaseStatement;
        }
    }

    private async Task<TimeSpan?> WaitForPermitAsync(DateTimeOffset deadline, CancellationToken bounded, CancellationToken cancellationToken)
    {
        while (true)
        {
            await _refill.WaitAsync(bounded);
            try
            {
                if (TryTakeLocal())
                    return null;
                Interlocked.Increment(ref _foregroundLeases);
                var lease = await LeaseAsync(Volatile.Read(ref _waiting), bounded);
                if (lease.Granted > 0)
                {
                    lock (_lock)
                    {
                        // Nothing usable was in hand (TryTakeLocal failed): this lease is the lot now.
                        (_permits, _expires, _slot) = (lease.Granted - 1, time.GetUtcNow() + _lastLife, lease.Slot);
                        _nextPermits = 0;
                        _takenSinceLease++;
                    }
                    return null;
                }
                var now = time.GetUtcNow();
                if (now + lease.NextPermitIn > deadline)
                    return lease.NextPermitIn;
                await Task.Delay(lease.NextPermitIn, time, cancellationToken);
            }
            finally
            {
                _refill.Release();
            }
        }
    }

    private async Task<RateLimitLease> LeaseAsync(int waiting, CancellationToken cancellationToken)
    {
        bool roomy;
        lock (_lock)
            roomy = _leases > 0 && Uncontended;
        // A long lot when the bucket has plenty and what it would hold is small (see the class); else a 20-ms lot.
        var demand = EstimateDemand();
        var longWant = Math.Max(waiting, Math.Ceiling(demand * UncontendedLife.TotalSeconds));
        var longLot = roomy && longWant <= LongLotCap;
        var want = longLot
            ? (int)Math.Max(1, longWant)
            : (int)Math.Clamp(Math.Max(waiting, Math.Ceiling(demand * LeaseLifetime.TotalSeconds)), 1, LargestLease);
        var lease = await store.TakeAsync(destination, want, PermitsPerSecond, Capacity, cancellationToken);
        Interlocked.Add(ref _leased, lease.Granted);
        _leasedMetric.Inc(lease.Granted);
        lock (_lock)
        {
            _leases++;
            _lastLeaseFull = lease.Granted == want;
            _lastLeaseSize = want;
            _lastRoom = lease.Room;
            // Long only if this lease, too, found the bucket uncontended with room.
            _lastLife = longLot && Uncontended ? UncontendedLife : LeaseLifetime;
        }
        return lease;
    }

    /// <summary>
    /// While the bucket is uncontended, a lease running low is topped up in the background, so that a steady stream
    /// does not wait for a PostgreSQL round trip every few requests. A contended bucket is never leased ahead: there,
    /// leases follow the callers actually waiting.
    /// </summary>
    private void MaybePrefetch()
    {
        lock (_lock)
        {
            // Running low: half the lease spent, or half its life gone (a lot lives only 20-250 ms: a stream a little
            // slower than its estimate would otherwise see the rest expire and wait for the next lease). Never a
            // third lot: a top-up already in hand is enough.
            var now = time.GetUtcNow();
            var runningLow = _permits <= _lastLeaseSize / 2 || now >= _expires - _lastLife / 2;
            if (!_lastLeaseFull || _lastLeaseSize < 2 || !runningLow || HasTopUp(now))
                return;
        }
        StartPrefetch(anticipated: false);
    }

    /// <summary>
    /// A caller will want a permit in a moment (its claim is on its way to PostgreSQL): with none in hand and the
    /// bucket uncontended, lease now in the background, so the lease's round trip overlaps the claim's instead of
    /// following it. A request arriving after a quiet spell longer than a lot's life otherwise waits for both in turn.
    /// </summary>
    public void Anticipate()
    {
        if (AnticipationWanted())
            StartPrefetch(anticipated: true);
    }

    // One background lease at a time.
    private void StartPrefetch(bool anticipated)
    {
        if (Interlocked.Exchange(ref _prefetching, 1) == 0)
            _ = PrefetchAsync(anticipated);
    }

    // No permit in hand, and a bucket neither contended nor short (leases there follow the callers actually waiting:
    // a permit taken ahead and then unspent would be missed by another worker).
    private bool AnticipationWanted()
    {
        lock (_lock)
        {
            var now = time.GetUtcNow();
            return !HasLot(now) && !HasTopUp(now) && (_leases == 0 || Uncontended);
        }
    }

    private async Task PrefetchAsync(bool anticipated)
    {
        try
        {
            // A caller refilling in the foreground does the same: leave it to that one.
            if (!await _refill.WaitAsync(0))
                return;
            try
            {
                // A lease that ended just before may have changed the picture (permits in hand, a contended bucket).
                if (anticipated && !AnticipationWanted())
                    return;
                using var stalled = new CancellationTokenSource(LongestLeaseStatement, time);
                var lease = await LeaseAsync(0, stalled.Token);
                if (lease.Granted > 0)
                {
                    bool giveBack;
                    lock (_lock)
                    {
                        var now = time.GetUtcNow();
                        Roll(now);
                        giveBack = ClaimGiveBack();
                        if (HasLot(now))
                            (_nextPermits, _nextExpires, _nextSlot) = (lease.Granted, now + _lastLife, lease.Slot);
                        else
                            (_permits, _expires, _slot) = (lease.Granted, now + _lastLife, lease.Slot);
                    }
                    if (giveBack)
                        _ = GiveBackAsync();
                }
            }
            finally
            {
                _refill.Release();
            }
        }
#pragma warning disable CA1031 // A failed top-up only means the next caller leases in the foreground (and sees the error).
        catch (Exception)
#pragma warning restore CA1031
        {
        }
        finally
        {
            Volatile.Write(ref _prefetching, 0);
        }
    }

    private bool TryTakeLocal()
    {
        bool taken, giveBack;
        lock (_lock)
        {
            var now = time.GetUtcNow();
            Roll(now);
            giveBack = ClaimGiveBack();
            taken = HasLot(now);
            if (taken)
            {
                _permits--;
                _takenSinceLease++;
            }
        }
        if (giveBack)
            _ = GiveBackAsync();
        return taken;
    }

    /// <summary>A lot in hand with permits left and unexpired. Under the lock.</summary>
    private bool HasLot(DateTimeOffset now) => _permits > 0 && now < _expires;

    /// <summary>A top-up in hand with permits left and unexpired. Under the lock.</summary>
    private bool HasTopUp(DateTimeOffset now) => _nextPermits > 0 && now < _nextExpires;

    /// <summary>
    /// The lot in hand spent or expired: its top-up (if any, and unexpired) becomes the lot. Lots of different lives
    /// (a long lot topped up by a 20-ms one) are spent the one expiring first first, and a top-up that expired is
    /// retired even while the lot in hand lives (else it would block the next top-up). Under the lock.
    /// </summary>
    private void Roll(DateTimeOffset now)
    {
        if (_nextPermits > 0 && !HasTopUp(now))
        {
            Unspent(_nextSlot, _nextPermits);
            _nextPermits = 0;
        }
        if (HasLot(now) && HasTopUp(now) && _nextExpires < _expires)
        {
            (_permits, _expires, _slot, _nextPermits, _nextExpires, _nextSlot) =
                (_nextPermits, _nextExpires, _nextSlot, _permits, _expires, _slot);
        }
        if (HasLot(now))
            return;
        // The top-up, if any is left (an expired one was retired above), becomes the lot.
        Unspent(_slot, _permits);
        (_permits, _expires, _slot) = (_nextPermits, _nextExpires, _nextSlot);
        _nextPermits = 0;
    }

    /// <summary>
    /// Permits of a lot that ended unspent: handed back if the bucket was short of permits at the last lease (else it
    /// has plenty, and they would cost a statement for nothing). Under the lock.
    /// </summary>
    private void Unspent(long slot, int permits)
    {
        if (permits <= 0)
            return;
        _unused += permits;
        _unusedMetric.Inc(permits);
        if (BucketHadRoom)
            return;
        _unspent[slot] = _unspent.GetValueOrDefault(slot) + permits;
    }

    /// <summary>
    /// True when permits that ended unspent wait and no hand-back runs: the caller then starts one (after leaving the
    /// lock), which hands them back to the shared bucket in the background, one statement for all of them. A lease
    /// sized for callers that then did not come (cancelled, or late on a busy machine) so costs the fleet nothing.
    /// Under the lock: the flag is set and cleared with the queue in view, so a lot queued while a hand-back finds
    /// the queue empty and ends is either seen by it or starts the next one.
    /// </summary>
    private bool ClaimGiveBack()
    {
        if (_unspent.Count == 0 || _givingBack == 1)
            return false;
        _givingBack = 1;
        return true;
    }

    private async Task GiveBackAsync()
    {
        try
        {
            while (true)
            {
                long[] slots;
                int[] counts;
                lock (_lock)
                {
                    if (_unspent.Count == 0)
                    {
                        _givingBack = 0;
                        return;
                    }
                    slots = [.. _unspent.Keys];
                    counts = [.. _unspent.Values];
                    _unspent.Clear();
                }
                await store.GiveBackAsync(destination, slots, counts, Capacity, CancellationToken.None);
                Interlocked.Add(ref _givenBack, counts.Sum());
            }
        }
#pragma warning disable CA1031 // Permits not handed back are only a little of the limit unused (as before there was a hand-back).
        catch (Exception)
#pragma warning restore CA1031
        {
            // What failed is not retried; the next lot that ends unspent starts a new hand-back.
            lock (_lock)
                _givingBack = 0;
        }
    }

    /// <summary>
    /// Permits per second this worker has been taking: the permits taken since the last lease over the time since
    /// it, smoothed; a gap of a second or more starts afresh (a burst after a quiet spell leases for what waits).
    /// </summary>
    private double EstimateDemand()
    {
        var now = time.GetUtcNow();
        lock (_lock)
        {
            // Each estimate consumes its sample: the permits taken between the previous lease and this one.
            var elapsed = (now - _lastLeaseAt).TotalSeconds;
            var taken = _takenSinceLease;
            _lastLeaseAt = now;
            _takenSinceLease = 0;
            if (elapsed >= 1)
            {
                _demandPerSecond = 0;
                return 0;
            }
            var sample = taken / Math.Max(elapsed, 0.001);
            _demandPerSecond = 0.5 * _demandPerSecond + 0.5 * sample;
            return _demandPerSecond;
        }
    }
}
