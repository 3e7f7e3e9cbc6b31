using System.Collections.Concurrent;
using Prometheus;

namespace Dispatcher.Worker.Observability;

/// <summary>
/// The metric series of one destination, looked up once: the hot path then touches no label arrays or lookups.
/// </summary>
internal sealed class DestinationMetrics(string destination)
{
    private readonly ConcurrentDictionary<(string Outcome, string Reason), Counter.Child> _dispatches = new();
    private readonly ConcurrentDictionary<string, Counter.Child> _attempts = new();
    private readonly ConcurrentDictionary<string, Counter.Child> _parked = new();

    public Gauge.Child InFlight { get; } = DispatcherMetrics.InFlight.WithLabels(destination);

    public Histogram.Child AttemptDuration { get; } = DispatcherMetrics.AttemptDuration.WithLabels(destination);

    public Histogram.Child EndToEnd { get; } = DispatcherMetrics.EndToEnd.WithLabels(destination);

    public Counter.Child RetriesScheduled { get; } = DispatcherMetrics.RetriesScheduled.WithLabels(destination);

    public Counter.Child Duplicates { get; } = DispatcherMetrics.Duplicates.WithLabels(destination);

    public Gauge.Child CircuitState { get; } = DispatcherMetrics.CircuitState.WithLabels(destination);

    public Counter.Child Attempts(string result) =>
        _attempts.GetOrAdd(result, static (r, d) => DispatcherMetrics.Attempts.WithLabels(d, r), destination);

    public Counter.Child Parked(string reason) =>
        _parked.GetOrAdd(reason, static (r, d) => DispatcherMetrics.Parked.WithLabels(d, r), destination);

    public Counter.Child Dispatches(string outcome, string reason) =>
        _dispatches.GetOrAdd((outcome, reason), static (k, d) => DispatcherMetrics.Dispatches.WithLabels(d, k.Outcome, k.Reason), destination);
}
