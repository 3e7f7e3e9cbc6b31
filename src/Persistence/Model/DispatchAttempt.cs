namespace Dispatcher.Persistence.Model;

/// <summary>One downstream call: the attempt history of a dispatch.</summary>
public sealed class DispatchAttempt
{
    public long Id { get; set; }
    public Guid RequestId { get; set; }
    public int Cycle { get; set; }
    public int Number { get; set; }
    public DateTimeOffset StartedAt { get; set; }
    public double DurationMs { get; set; }
    /// <summary>Success, HttpError, Timeout or ConnectionError.</summary>
    public string Result { get; set; } = "";
    public int? StatusCode { get; set; }
    public string? Error { get; set; }
    /// <summary>The claim that made the call (one call per claim): makes recording the attempt idempotent.</summary>
    public Guid? LeaseToken { get; set; }
}
