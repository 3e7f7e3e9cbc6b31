using Dispatcher.Contracts;
using Dispatcher.Persistence;
using Dispatcher.Persistence.Model;
using Dispatcher.Persistence.Outbox;
using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Observability;
using MassTransit;
using Microsoft.Extensions.Options;

namespace Dispatcher.Worker.Outbox;

/// <summary>
/// Publishes what the outbox holds once it is due: <see cref="DispatchCompleted"/> events, and requests
/// whose retry, park or replay time has come (sent back to the request queue). Every worker runs one;
/// they share the table through <c>FOR UPDATE SKIP LOCKED</c>. A relay sleeps until the earliest due row, a NOTIFY
/// of rows due now (or earlier than that), or the poll interval, whichever comes first; rows due later than now wait
/// for at least <see cref="DueBatchWindow"/> after its last look, so that returns spread over time go in batches.
/// </summary>
internal sealed class OutboxRelay(
    OutboxStore store,
    DispatcherDataSources dataSources,
    IBus bus,
    IOptions<DispatcherOptions> options,
    TimeProvider time,
    ILogger<OutboxRelay> logger) : BackgroundService
{
    private static readonly TimeSpan PruneInterval = TimeSpan.FromMinutes(1);
    private static readonly TimeSpan BacklogInterval = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The shortest a relay sleeps, after a look that left nothing due, for rows that fall due later (rows due now
    /// wake it at once): with a breaker's backlog spread over time, rows fell due every 1-2 ms, and the relay woke as
    /// often for a claim transaction and a query finding two or three rows each (240 a second in the outage bench).
    /// A request sent back for later comes back up to this much later; nothing else waits for it.
    /// </summary>
    internal static readonly TimeSpan DueBatchWindow = TimeSpan.FromMilliseconds(20);
    /// <summary>
    /// How long a batch's publishes may go neither confirmed nor failed (a connection lost mid-publish) before they
    /// count as failed; the relay's batches and the worker's own handed-off events alike.
    /// </summary>
    internal static readonly TimeSpan PublishTimeout = TimeSpan.FromSeconds(30);
    private readonly OutboxOptions _options = options.Value.Outbox;
    private readonly Uri _requestQueue = new($"queue:{options.Value.Worker.QueueName}");

    // One loop per worker: a second one (tried) wakes on the same NOTIFYs and mostly finds the rows locked by the
    // first, which costs more round trips than it saves latency.
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var delay = TimeSpan.FromMilliseconds(500);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await RelayAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.OutboxRelayError(logger, ex, (int)delay.TotalMilliseconds);
                await Task.Delay(delay, time, stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(10).Ticks));
            }
        }
    }

    private async Task RelayAsync(CancellationToken cancellationToken)
    {
        await using var listener = await dataSources.OpenListenerAsync(cancellationToken);
        // The earliest due time announced since the last look (UTC ticks; MaxValue: none). Raised on this loop's own
        // thread, inside WaitAsync.
        var announced = long.MaxValue;
        listener.Notification += (_, e) => announced = Math.Min(announced, AnnouncedDue(e.Payload));
        await using (var listen = listener.CreateCommand())
        {
            listen.CommandText = $"LISTEN {OutboxStore.NotifyChannel}";
            await listen.ExecuteNonQueryAsync(cancellationToken);
        }

        var nextPrune = time.GetUtcNow();
        var nextBacklog = time.GetUtcNow();
        while (!cancellationToken.IsCancellationRequested)
        {
            var looked = time.GetUtcNow();
            DispatcherMetrics.OutboxRelayClaims.Inc();
            if (await PublishDueAsync(cancellationToken) >= _options.BatchSize)
                continue;

            var now = time.GetUtcNow();
            if (now >= nextBacklog)
            {
                DispatcherMetrics.OutboxPending.Set((await store.CountPendingAsync(now, cancellationToken)).Due);
                nextBacklog = now + BacklogInterval;
            }
            if (now >= nextPrune)
            {
                var pruned = await store.PruneAsync(now - _options.Retention, 10_000, cancellationToken);
                if (pruned > 0)
                    Log.OutboxPruned(logger, pruned);
                nextPrune = now + PruneInterval;
            }

            // Rows due later than now (or due, but locked by another relay) wait for the batch window.
            var earliest = looked + DueBatchWindow;
            var wakeAt = time.GetUtcNow() + _options.PollInterval;
            if (await store.NextDueAsync(cancellationToken) is { } due && due < wakeAt)
                wakeAt = due > earliest ? due : earliest;
            announced = long.MaxValue;
            while (true)
            {
                // Npgsql waits in whole milliseconds and takes 0 as "forever": round up, so that a row due in under
                // a millisecond is not left waiting for somebody else's NOTIFY.
                var milliseconds = (int)Math.Ceiling((wakeAt - time.GetUtcNow()).TotalMilliseconds);
                if (milliseconds <= 0 || !await listener.WaitAsync(milliseconds, cancellationToken))
                    break;
                // Announced rows due now: look at once. Due later: wake for them if that is sooner (not before the window).
                var at = announced;
                announced = long.MaxValue;
                if (at <= time.GetUtcNow().UtcTicks)
                    break;
                if (at < wakeAt.UtcTicks)
                    wakeAt = new DateTimeOffset(Math.Max(at, earliest.UtcTicks), TimeSpan.Zero);
            }
        }
    }

    /// <summary>
    /// When the rows a NOTIFY announces fall due (UTC ticks), from its payload (microseconds since the Unix epoch);
    /// no payload or another one (a database not yet migrated) means now.
    /// </summary>
    internal static long AnnouncedDue(string payload) =>
        long.TryParse(payload, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var microseconds)
            && microseconds is > 0 and < 253_402_300_799_000_000 // before year 10000
            ? DateTimeOffset.UnixEpoch.UtcTicks + (microseconds * 10)
            : long.MinValue;

    /// <summary>Publishes one batch of due rows; returns how many were claimed.</summary>
    private async Task<int> PublishDueAsync(CancellationToken cancellationToken)
    {
        await using var batch = await store.ClaimDueAsync(_options.BatchSize, time.GetUtcNow(), cancellationToken);
        if (batch.Messages.Count == 0)
            return 0;

        // Publishes already begun are not cancelled by shutdown (they take milliseconds); the batch then commits.
        // A publish the broker neither confirms nor fails (a connection lost mid-publish) fails after PublishTimeout
        // and is retried later like any failed publish, instead of holding the relay (and its row locks) forever.
        using var timeout = new CancellationTokenSource(PublishTimeout, time);
        var results = await Task.WhenAll(batch.Messages.Select(m => PublishAsync(m, timeout.Token)));
        var published = new List<long>(results.Length);
        var failed = new List<(long, string, DateTimeOffset)>();
        var now = time.GetUtcNow();
        for (var i = 0; i < results.Length; i++)
        {
            var message = batch.Messages[i];
            if (results[i] is null)
            {
                published.Add(message.Id);
                continue;
            }
            var retryAt = now + TimeSpan.FromSeconds(Math.Min(60, Math.Pow(2, message.PublishAttempts)));
            failed.Add((message.Id, results[i]!, retryAt));
            Log.OutboxPublishFailed(logger, message.MessageId, retryAt, results[i]!);
        }
        await batch.CommitAsync(published, failed, now, CancellationToken.None);
        return batch.Messages.Count;
    }

    /// <summary>Publishes one row with its stable MessageId; returns the error text, or null on success.</summary>
    private async Task<string?> PublishAsync(PendingOutboxMessage message, CancellationToken cancellationToken)
    {
        try
        {
            switch (message.Kind)
            {
                case OutboxKinds.Completed:
                    await bus.Publish(DispatcherJson.Deserialize<DispatchCompleted>(message.Payload),
                        context => Stamp(context, message.MessageId, message.TraceParent), cancellationToken);
                    break;
                case OutboxKinds.Request:
                    var endpoint = await bus.GetSendEndpoint(_requestQueue);
                    await endpoint.Send(DispatcherJson.Deserialize<DispatchRequest>(message.Payload),
                        context => Stamp(context, message.MessageId, message.TraceParent), cancellationToken);
                    break;
                default:
                    return $"Unknown outbox kind '{message.Kind}'.";
            }
            return null;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return $"not confirmed within {PublishTimeout.TotalSeconds:0} s";
        }
        catch (Exception ex)
        {
            return ex.Message;
        }
    }

    /// <summary>The outbox row's stable MessageId, and the trace it belongs to.</summary>
    public static void Stamp(SendContext context, Guid messageId, string? traceParent)
    {
        context.MessageId = messageId;
        if (traceParent is not null)
            context.Headers.Set("traceparent", traceParent);
    }
}
