using Dispatcher.Persistence.Outbox;
using Dispatcher.Persistence.Status;
using Dispatcher.Worker.Configuration;

namespace Dispatcher.Worker.Status;

/// <summary>One destination in <c>status</c>.</summary>
public sealed record DestinationStatus(
    string Destination,
    string Breaker,
    int InFlight,
    double PermitsPerSecond,
    long InProgress,
    long WaitingRetries,
    long HeldBack,
    long DeadLetters,
    long SucceededLastHour,
    int Workers);

/// <summary>The fleet at a glance: per destination, the queues, the outbox.</summary>
public sealed record StatusReport(
    DateTimeOffset At,
    IReadOnlyList<DestinationStatus> Destinations,
    QueueInfo? Queue,
    QueueInfo? ErrorQueue,
    long OutboxPending,
    long OutboxDue,
    int LiveWorkers);

internal sealed class StatusReporter(StatusStore status, OutboxStore outbox, QueueInspector queues, IConfiguration configuration, TimeProvider time)
{
    /// <summary>Workers that have not reported for this long are not counted.</summary>
    public static readonly TimeSpan LiveWindow = TimeSpan.FromSeconds(30);

    public static readonly string[] BreakerStates = ["closed", "open", "half-open", "isolated"];

    public async Task<StatusReport> BuildAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var options = configuration.GetSection(DispatcherOptions.SectionName).Get<DispatcherOptions>() ?? new DispatcherOptions();
        var counts = (await status.CountsAsync(now, cancellationToken)).ToDictionary(c => c.Destination, StringComparer.OrdinalIgnoreCase);
        var beats = await status.LiveHeartbeatsAsync(now - LiveWindow, cancellationToken);
        var (pending, due) = await outbox.CountPendingAsync(now, cancellationToken);
        var queue = await TryInspectAsync(options.Worker.QueueName, cancellationToken);
        var errorQueue = await TryInspectAsync(options.Worker.QueueName + "_error", cancellationToken);

        var names = options.Destinations.Keys.Concat(counts.Keys).Concat(beats.Select(b => b.Destination))
            .Distinct(StringComparer.OrdinalIgnoreCase).Order(StringComparer.OrdinalIgnoreCase);
        var destinations = names.Select(name =>
        {
            var mine = beats.Where(b => string.Equals(b.Destination, name, StringComparison.OrdinalIgnoreCase)).ToList();
            var c = counts.GetValueOrDefault(name) ?? new DestinationCounts(name, 0, 0, 0, 0);
            var permits = mine.Count > 0 ? mine.Max(b => b.PermitsPerSecond)
                : options.Destinations.TryGetValue(name, out var d) ? d.RateLimit.PermitsPerSecond : 0;
            return new DestinationStatus(name, Breaker(mine), mine.Sum(b => b.InFlight), permits,
                c.InProgress, c.Scheduled, c.HeldBack, c.DeadLetters, c.SucceededLastHour, mine.Count);
        }).ToList();
        return new StatusReport(now, destinations, queue, errorQueue, pending, due, beats.Select(b => b.WorkerId).Distinct().Count());
    }

    // "closed" when every live worker says so; otherwise the worst state and how many workers are in it.
    private static string Breaker(List<HeartbeatRow> beats)
    {
        if (beats.Count == 0)
            return "unknown (no live worker)";
        var notClosed = beats.Where(b => b.CircuitState != 0).ToList();
        if (notClosed.Count == 0)
            return "closed";
        var state = notClosed.Max(b => b.CircuitState);
        return $"{BreakerStates[Math.Clamp(state, 0, 3)]} ({notClosed.Count} of {beats.Count} workers)";
    }

    private async Task<QueueInfo?> TryInspectAsync(string queue, CancellationToken cancellationToken)
    {
        try
        {
            return await queues.InspectAsync(queue, cancellationToken);
        }
        catch (Exception ex) when (ex is RabbitMQ.Client.Exceptions.BrokerUnreachableException or IOException)
        {
            return null;
        }
    }
}
