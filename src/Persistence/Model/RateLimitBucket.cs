namespace Dispatcher.Persistence.Model;

/// <summary>The token bucket of one destination, shared by every worker (see <c>RateLimitStore</c>).</summary>
public sealed class RateLimitBucket
{
    public string Destination { get; set; } = "";
    public double Tokens { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }

    /// <summary>The sliding 1-second window: 10-ms slots (epoch seconds x 100) that granted permits, oldest first.</summary>
    public long[] WindowSlots { get; set; } = [];

    /// <summary>Permits granted in each slot of <see cref="WindowSlots"/>.</summary>
    public int[] WindowCounts { get; set; } = [];
}
