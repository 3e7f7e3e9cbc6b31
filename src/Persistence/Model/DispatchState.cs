namespace Dispatcher.Persistence.Model;

/// <summary>Lifecycle of a dispatch. Stored as text.</summary>
public enum DispatchState
{
    /// <summary>A worker holds the request and may be calling the downstream now.</summary>
    InProgress,

    /// <summary>Waiting for a durable, scheduled redelivery (retry, park or replay) held in the outbox.</summary>
    Scheduled,

    Succeeded,

    DeadLettered,
}
