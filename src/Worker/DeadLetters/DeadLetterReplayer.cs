using Dispatcher.Persistence.DeadLetters;

namespace Dispatcher.Worker.DeadLetters;

/// <summary>What a replay did (or, dry, would do).</summary>
public sealed record ReplaySummary(bool DryRun, long Matched, long Replayed, IReadOnlyDictionary<string, long> ByDestination);

/// <summary>
/// Replays dead letters in batches, at most <c>rate</c> per second when one is given. Each batch is one
/// statement that moves the rows to a new cycle and commits their messages into the outbox: a replay that is
/// stopped half-way leaves the rest as dead letters, nothing is lost or sent twice.
/// </summary>
internal sealed class DeadLetterReplayer(DeadLetterStore store, TimeProvider time)
{
    private const int UnthrottledBatch = 500;

    public async Task<ReplaySummary> ReplayAsync(
        DeadLetterFilter filter, double? rate, bool dryRun, Action<long, long>? progress, CancellationToken cancellationToken)
    {
        var matched = await store.CountAsync(filter with { ReplayableOnly = true }, cancellationToken);
        var byDestination = new Dictionary<string, long>(StringComparer.OrdinalIgnoreCase);
        if (dryRun)
        {
            foreach (var g in await store.GroupAsync(filter with { ReplayableOnly = true }, int.MaxValue, cancellationToken))
                byDestination[g.Destination] = byDestination.GetValueOrDefault(g.Destination) + g.Count;
            return new ReplaySummary(true, matched, 0, byDestination);
        }

        var batch = rate is { } r ? (int)Math.Clamp(r / 5, 1, UnthrottledBatch) : UnthrottledBatch;
        var started = time.GetTimestamp();
        long replayed = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            var taken = await store.ReplayAsync(filter, batch, time.GetUtcNow(), cancellationToken);
            if (taken.Count == 0)
                break;
            replayed += taken.Count;
            foreach (var t in taken)
                byDestination[t.Destination] = byDestination.GetValueOrDefault(t.Destination) + 1;
            progress?.Invoke(replayed, Math.Max(matched, replayed));
            if (rate is { } perSecond)
            {
                var due = TimeSpan.FromSeconds(replayed / perSecond) - time.GetElapsedTime(started);
                if (due > TimeSpan.Zero)
                    await Task.Delay(due, time, cancellationToken);
            }
        }
        return new ReplaySummary(false, matched, replayed, byDestination);
    }
}
