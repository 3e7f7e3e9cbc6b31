using Dispatcher.Persistence.Outbox;
using Dispatcher.Persistence.Status;
using Dispatcher.Worker.Destinations;
using Dispatcher.Worker.Observability;
using Dispatcher.Worker.Resilience;

namespace Dispatcher.Worker.Status;

/// <summary>
/// Every few seconds: reports this worker's breaker states and calls in flight (they live in memory) for
/// <c>status</c>, reads how many live workers share each destination (a worker paces the requests it sends back
/// from a destination's cap at its share of the rate limit: DestinationPolicy.ExpectedPace), and refreshes the
/// gauges that come from outside the process (queue depth for autoscalers, dead letters). And when a destination's
/// breaker has closed after a long outage, brings forward what it sent back over the outage (DestinationPolicy.TakeRecovery).
/// </summary>
internal sealed class WorkerHeartbeatService(
    DestinationRegistry destinations, StatusStore status, QueueInspector queues, OutboxStore outbox, TimeProvider time,
    ILogger<WorkerHeartbeatService> logger)
    : BackgroundService
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);
    private readonly string _workerId = $"{Environment.MachineName}:{Environment.ProcessId}";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        try
        {
            do
            {
                try
                {
                    await BeatAsync(stoppingToken);
                }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
                {
                    Log.HeartbeatFailed(logger, ex.Message);
                }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task BeatAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var rows = destinations.All.Select(d => new HeartbeatRow(_workerId, d.Name, (int)d.Metrics.CircuitState.Value,
            (int)d.Metrics.InFlight.Value, d.Options.RateLimit.PermitsPerSecond, now)).ToList();
        await status.BeatAsync(rows, cancellationToken);

        foreach (var c in await status.CountsAsync(now, cancellationToken))
            DispatcherMetrics.DeadLetters.WithLabels(c.Destination).Set(c.DeadLetters);
        var queue = destinations.Options.Worker.QueueName;
        foreach (var name in new[] { queue, queue + "_error" })
        {
            if (await queues.InspectAsync(name, cancellationToken) is { } info)
                DispatcherMetrics.QueueDepth.WithLabels(name).Set(info.Messages);
        }

        // Live: beat within the last three intervals (this worker's own row is among them).
        var live = await status.LiveHeartbeatsAsync(now - 3 * Interval, cancellationToken);
        foreach (var d in destinations.All)
            d.Policy.FleetWorkers = live.Count(b => string.Equals(b.Destination, d.Name, StringComparison.OrdinalIgnoreCase));

        // After the beat, on its own: a slow or failing statement here must not make the worker look gone.
        try
        {
            await BringBacklogsForwardAsync(cancellationToken);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            Log.BringingForwardFailed(logger, ex.Message);
        }
    }

    /// <summary>
    /// A destination whose breaker closed after an outage longer than the return line spread what it sent back over
    /// up to that outage (at most 5 minutes): those requests, due later than a line from now, are brought forward, at
    /// random over the time the fleet takes them at the destination's pace (its rate limit, or its cap over its calls'
    /// duration), within a line at least and the longest spread at most, so that a recovered partner gets its backlog
    /// as fast as it takes it rather than over as long as it was down (and not faster: the returns would only go round
    /// the cap again). Other workers' rows too: whichever worker's breaker closes first brings them forward; the others
    /// then find none due that late. Not while the breaker has opened again since (failing again): once it is closed.
    /// </summary>
    private async Task BringBacklogsForwardAsync(CancellationToken cancellationToken)
    {
        foreach (var d in destinations.All)
        {
            if (!d.Policy.TakeRecovery(out var outage))
                continue;
            try
            {
                var now = time.GetUtcNow();
                var line = DestinationPolicy.MaxReturnLine;
                var count = await outbox.ExpediteAsync(d.Name, DestinationPolicy.CircuitOpen, now, now + line,
                    d.Policy.ExpectedPace * d.Policy.FleetWorkers, line, DestinationPolicy.MaxOutageSpread, cancellationToken);
                Log.BacklogBroughtForward(logger, d.Name, outage, count);
            }
            catch
            {
                d.Policy.NoteRecovery(outage);
                throw;
            }
        }
    }
}
