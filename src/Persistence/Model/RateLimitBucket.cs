namespace Dispatcher.Persistence.Model;

/// <summary>The token bucket of one destination, shared by every worker (see <c>RateLimitStore</c>).</summary>
public sealed class RateLimitBucket
{
    public string Destination { get; set; } = "";
    public double Tokens { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}
