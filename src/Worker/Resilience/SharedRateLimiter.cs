using Dispatcher.Persistence.RateLimiting;
using Dispatcher.Worker.Configuration;

namespace Dispatcher.Worker.Resilience;

/// <summary>
/// The worker's side of a destination's fleet-wide rate limit: takes small leases of permits from the shared
/// bucket in PostgreSQL and spends them locally. A leased permit not spent within <see cref="LeaseLifetime"/>
/// is dropped, so a permit is always spent close to when the bucket granted it (what keeps every 1-second
/// window within rate + burst across all workers).
/// </summary>
#pragma warning disable CA1001 // The SemaphoreSlim never allocates a wait handle: nothing to dispose.
internal sealed class SharedRateLimiter(string destination, RateLimitOptions options, RateLimitStore store, TimeProvider time)
{
    private static readonly TimeSpan LeaseLifetime = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan LeaseWorth = TimeSpan.FromMilliseconds(50);
    private readonly SemaphoreSlim _refill = new(1, 1);
    private readonly Lock _lock = new();
    private int _permits;
    private DateTimeOffset _expires;

    public double PermitsPerSecond => options.PermitsPerSecond;

    /// <summary>Bucket capacity: Burst, or one second's worth when Burst is 0.</summary>
    public double Capacity => options.Burst > 0 ? options.Burst : Math.Max(1, options.PermitsPerSecond);

    /// <summary>
    /// Takes one permit, waiting at most <paramref name="maxWait"/>. Returns null when a permit was taken, or how
    /// long until one is expected when that is further away than <paramref name="maxWait"/>.
    /// </summary>
    public async Task<TimeSpan?> TryAcquireAsync(TimeSpan maxWait, CancellationToken cancellationToken)
    {
        var deadline = time.GetUtcNow() + maxWait;
        while (true)
        {
            if (TryTakeLocal())
                return null;
            await _refill.WaitAsync(cancellationToken);
            try
            {
                if (TryTakeLocal())
                    return null;
                var want = (int)Math.Clamp(Math.Ceiling(PermitsPerSecond * LeaseWorth.TotalSeconds), 1, Capacity);
                var lease = await store.TakeAsync(destination, want, PermitsPerSecond, Capacity, cancellationToken);
                if (lease.Granted > 0)
                {
                    lock (_lock)
                    {
                        _permits = lease.Granted - 1;
                        _expires = time.GetUtcNow() + LeaseLifetime;
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

    private bool TryTakeLocal()
    {
        lock (_lock)
        {
            if (_permits <= 0 || time.GetUtcNow() >= _expires)
                return false;
            _permits--;
            return true;
        }
    }
}
