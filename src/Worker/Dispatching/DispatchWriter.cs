using Dispatcher.Persistence.Dispatches;
using Dispatcher.Persistence.Outbox;

namespace Dispatcher.Worker.Dispatching;

/// <summary>The hot-path writes, each through its own group commit.</summary>
internal sealed class DispatchWriter : IAsyncDisposable
{
    private const int MaxBatch = 256;
    private const int Writers = 2;
    private readonly DispatchStore _store;
    private readonly TimeProvider _time;
    private readonly GroupCommit<ClaimCommand, ClaimResult> _claims;
    private readonly GroupCommit<CompletionCommand, CompletionResult> _completions;
    private readonly GroupCommit<OutboxEntry, bool> _holdBacks;

    public DispatchWriter(DispatchStore store, OutboxStore outbox, TimeProvider time)
    {
        _store = store;
        _time = time;
        _claims = new GroupCommit<ClaimCommand, ClaimResult>(ClaimBatchAsync, MaxBatch, Writers);
        _completions = new GroupCommit<CompletionCommand, CompletionResult>(
            (batch, ct) => _store.CompleteAsync(batch, _time.GetUtcNow(), ct), MaxBatch, Writers);
        _holdBacks = new GroupCommit<OutboxEntry, bool>(async (batch, ct) =>
        {
            await outbox.InsertAsync(batch, _time.GetUtcNow(), ct);
            return Enumerable.Repeat(true, batch.Count).ToArray();
        }, MaxBatch, 1);
    }

    /// <summary>Claims the request for this worker; false when it is a duplicate.</summary>
    public Task<ClaimResult> ClaimAsync(ClaimCommand command) => _claims.SubmitAsync(command);

    /// <summary>Commits the new state with its attempt and outbox row; not applied when another owner took the row over.</summary>
    public Task<CompletionResult> CompleteAsync(CompletionCommand command) => _completions.SubmitAsync(command);

    /// <summary>Writes an unclaimed request back into the outbox, due later (see DispatchProcessor.HoldBackAsync).</summary>
    public Task<bool> HoldBackAsync(OutboxEntry entry) => _holdBacks.SubmitAsync(entry);

    public Task<bool> RejectAsync(RejectCommand command, CancellationToken cancellationToken) =>
        _store.RejectAsync(command, cancellationToken);

    // One INSERT ... ON CONFLICT DO UPDATE may not touch a row twice, so a batch that holds the same RequestId
    // twice (a duplicate racing its original) runs in rounds of distinct ids.
    private async Task<ClaimResult[]> ClaimBatchAsync(List<ClaimCommand> batch, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        var seen = new HashSet<Guid>(batch.Count);
        var distinct = true;
        foreach (var c in batch)
            distinct &= seen.Add(c.RequestId);
        if (distinct)
            return await _store.ClaimAsync(batch, now, cancellationToken);

        var results = new ClaimResult[batch.Count];
        var remaining = Enumerable.Range(0, batch.Count).ToList();
        while (remaining.Count > 0)
        {
            var roundIds = new HashSet<Guid>();
            var round = remaining.Where(i => roundIds.Add(batch[i].RequestId)).ToList();
            var roundResults = await _store.ClaimAsync(round.Select(i => batch[i]).ToList(), now, cancellationToken);
            for (var k = 0; k < round.Count; k++)
                results[round[k]] = roundResults[k];
            remaining = remaining.Except(round).ToList();
        }
        return results;
    }

    public async ValueTask DisposeAsync()
    {
        await _claims.DisposeAsync();
        await _completions.DisposeAsync();
        await _holdBacks.DisposeAsync();
    }
}
