using Prometheus;

namespace Dispatcher.Worker.Observability;

/// <summary>The Prometheus metrics the spec promises (names and labels are part of the product).</summary>
internal static class DispatcherMetrics
{
    // HTTP calls: 1 ms to 30 s.
    private static readonly double[] LatencyBuckets =
        [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

    // End to end includes retries and parking: up to an hour.
    private static readonly double[] EndToEndBuckets =
        [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

    public static readonly Counter Dispatches = Metrics.CreateCounter(
        "dispatcher_dispatches_total", "Dispatches that reached a terminal state.",
        new CounterConfiguration { LabelNames = ["destination", "outcome", "reason"] });

    public static readonly Counter Attempts = Metrics.CreateCounter(
        "dispatcher_attempts_total", "Downstream attempts by result (Success, HttpError, Timeout, ConnectionError).",
        new CounterConfiguration { LabelNames = ["destination", "result"] });

    public static readonly Histogram AttemptDuration = Metrics.CreateHistogram(
        "dispatcher_attempt_duration_seconds", "Duration of one downstream attempt.",
        new HistogramConfiguration { LabelNames = ["destination"], Buckets = LatencyBuckets });

    public static readonly Histogram EndToEnd = Metrics.CreateHistogram(
        "dispatcher_end_to_end_seconds", "From the first receipt of a request to its terminal state.",
        new HistogramConfiguration { LabelNames = ["destination"], Buckets = EndToEndBuckets });

    public static readonly Gauge InFlight = Metrics.CreateGauge(
        "dispatcher_inflight", "Downstream calls in flight in this worker.",
        new GaugeConfiguration { LabelNames = ["destination"] });

    public static readonly Gauge CircuitState = Metrics.CreateGauge(
        "dispatcher_circuit_state", "Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 isolated.",
        new GaugeConfiguration { LabelNames = ["destination"] });

    public static readonly Counter RetriesScheduled = Metrics.CreateCounter(
        "dispatcher_retries_scheduled_total", "Retries scheduled (durably, through the outbox).",
        new CounterConfiguration { LabelNames = ["destination"] });

    public static readonly Gauge OutboxPending = Metrics.CreateGauge(
        "dispatcher_outbox_pending", "Outbox rows due and not yet published.");

    public static readonly Counter OutboxRelayClaims = Metrics.CreateCounter(
        "dispatcher_outbox_relay_claims_total", "Looks the outbox relay took for due rows (a claim transaction each, whether or not it found any).");

    public static readonly Gauge DeadLetters = Metrics.CreateGauge(
        "dispatcher_dead_letters", "Dead letters currently stored.",
        new GaugeConfiguration { LabelNames = ["destination"] });

    public static readonly Gauge QueueDepth = Metrics.CreateGauge(
        "dispatcher_queue_depth", "Messages ready in a queue.",
        new GaugeConfiguration { LabelNames = ["queue"] });

    public static readonly Counter Parked = Metrics.CreateCounter(
        "dispatcher_parked_total", "Requests handed back to the outbox by a destination policy, without an attempt.",
        new CounterConfiguration { LabelNames = ["destination", "reason"] });

    public static readonly Counter RateLimitPermits = Metrics.CreateCounter(
        "dispatcher_rate_limit_permits_total",
        "Permits of the shared rate limit this worker leased (fate=leased), and of those the ones its lease's life ran out on before a call spent them (fate=unused).",
        new CounterConfiguration { LabelNames = ["destination", "fate"] });

    public static readonly Counter Duplicates = Metrics.CreateCounter(
        "dispatcher_duplicates_total", "Requests acknowledged without a call because their RequestId was terminal or in progress.",
        new CounterConfiguration { LabelNames = ["destination"] });
}
