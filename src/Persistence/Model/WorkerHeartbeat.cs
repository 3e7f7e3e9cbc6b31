namespace Dispatcher.Persistence.Model;

/// <summary>What one worker last reported about one destination (its breaker and calls in flight live in memory).</summary>
public sealed class WorkerHeartbeat
{
    public string WorkerId { get; set; } = "";
    public string Destination { get; set; } = "";
    public int CircuitState { get; set; }
    public int InFlight { get; set; }
    public double PermitsPerSecond { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}
