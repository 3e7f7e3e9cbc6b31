using Dispatcher.Worker.Dispatching;

namespace Dispatcher.Worker.Resilience;

/// <summary>
/// What the destination's policies made of an attempt: it ran (<see cref="Outcome"/>), or it was held back
/// and the request must be parked for <see cref="ParkFor"/> (no attempt counted).
/// </summary>
internal readonly record struct PolicyResult(AttemptOutcome? Outcome, TimeSpan ParkFor, string? ParkReason)
{
    public static PolicyResult Ran(AttemptOutcome outcome) => new(outcome, TimeSpan.Zero, null);

    public static PolicyResult Park(TimeSpan delay, string reason) => new(null, delay, reason);
}
