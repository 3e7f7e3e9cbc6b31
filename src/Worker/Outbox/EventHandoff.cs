using System.Threading.Channels;
using Dispatcher.Contracts;
using Dispatcher.Persistence.Outbox;
using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Observability;
using Microsoft.Extensions.Options;

namespace Dispatcher.Worker.Outbox;

/// <summary>
/// A committed DispatchCompleted event, handed to the worker that committed it: <paramref name="Payload"/> is the
/// event's JSON exactly as its outbox row holds it.
/// </summary>
internal sealed record HandedOffEvent(long OutboxId, Guid MessageId, string Payload, string? TraceParent);

/// <summary>
/// Publishes a worker's own <see cref="DispatchCompleted"/> events right after the commit that wrote them, then
/// marks their outbox rows published. The rows are written due only after <see cref="OutboxOptions.HandoffGrace"/>,
/// so the relays (which would otherwise race this publisher for them) take over only what this worker did not
/// publish in time: it died, its broker connection failed, or it fell behind. Either way an event is published at
/// least once with its stable MessageId; a crash between the publish and the mark publishes it once more.
/// This saves the relay's wake-up, claim transaction and payload round trip per event, which is most of the
/// time from commit to event and a large share of the worker's CPU per dispatch (docs/benchmarks.md).
/// </summary>
internal sealed class EventHandoff(
    CompletedEventPublisher publisher,
    OutboxStore store,
    IOptions<DispatcherOptions> options,
    TimeProvider time,
    ILogger<EventHandoff> logger) : BackgroundService
{
    private const int MaxBatch = 256;
    private const int MaxUnmarked = 10_000;

    // Bounded: a worker that cannot keep up leaves the overflow to the relays (after the grace) instead of growing.
    private readonly Channel<HandedOffEvent> _events = Channel.CreateBounded<HandedOffEvent>(
        new BoundedChannelOptions(4_096) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });

    private readonly List<long> _unmarked = [];

    /// <summary>How long a handed-off event's row waits before the relays may publish it; zero: no handoff.</summary>
    public TimeSpan Grace { get; } = options.Value.Outbox.HandoffGrace;

    private bool Enabled => Grace > TimeSpan.Zero;

    /// <summary>When an event committed at <paramref name="now"/> falls due for the relays.</summary>
    public DateTimeOffset DueAt(DateTimeOffset now) => now + Grace;

    /// <summary>
    /// Queues a committed event for publishing; false (the relays will publish it when due) when the handoff is off
    /// or its queue is full.
    /// </summary>
    public bool TryHandOff(HandedOffEvent handedOff) => Enabled && _events.Writer.TryWrite(handedOff);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var batch = new List<HandedOffEvent>(MaxBatch);
        try
        {
            while (await _events.Reader.WaitToReadAsync(stoppingToken))
            {
                while (batch.Count < MaxBatch && _events.Reader.TryRead(out var e))
                    batch.Add(e);
                await PublishAsync(batch);
                batch.Clear();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Whatever is still queued is published by a relay when its row falls due.
        }
    }

    private async Task PublishAsync(List<HandedOffEvent> batch)
    {
        // Publishes already begun are not cancelled by shutdown (they take milliseconds); a broker that neither
        // confirms nor fails them gets OutboxRelay.PublishTimeout, after which the relays take them over when due.
        using var timeout = new CancellationTokenSource(OutboxRelay.PublishTimeout, time);
        var results = await Task.WhenAll(batch.Select(e => PublishOneAsync(e, timeout.Token)));
        var failed = 0;
        for (var i = 0; i < batch.Count; i++)
        {
            if (results[i])
                _unmarked.Add(batch[i].OutboxId);
            else
                failed++;
        }
        if (failed > 0)
            Log.HandoffPublishFailed(logger, failed, Grace.TotalSeconds);
        if (_unmarked.Count == 0)
            return;
        try
        {
            await store.MarkPublishedAsync(_unmarked, time.GetUtcNow(), CancellationToken.None);
            _unmarked.Clear();
        }
        catch (Exception ex)
        {
            // Never fatal to the worker: an unmarked row only means a relay publishes that event again (same
            // MessageId) once it falls due. A transient failure keeps the ids for the next batch, up to a bound.
            Log.HandoffMarkFailed(logger, _unmarked.Count, ex.Message);
            if (!Dispatching.DurableRetry.IsTransient(ex) || _unmarked.Count > MaxUnmarked)
                _unmarked.Clear();
        }
    }

    private async Task<bool> PublishOneAsync(HandedOffEvent e, CancellationToken cancellationToken)
    {
        try
        {
            await publisher.PublishAsync(e, cancellationToken);
            return true;
        }
        catch (Exception)
        {
            return false;
        }
    }
}
