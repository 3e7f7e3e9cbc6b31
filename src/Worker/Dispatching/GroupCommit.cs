using System.Threading.Channels;

namespace Dispatcher.Worker.Dispatching;

/// <summary>
/// Group commit: concurrent callers each submit one command and await its result; a few writer loops take
/// whatever has queued up (up to <c>maxBatch</c>) and run it as one statement and one commit. Under load,
/// batches grow by themselves while the previous one is in flight; when idle a command runs alone at once.
/// A caller's task completes only after its batch has committed, so acknowledging after it stays safe.
/// </summary>
internal sealed class GroupCommit<TCommand, TResult> : IAsyncDisposable
{
    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleWriter = false });
    private readonly Func<List<TCommand>, CancellationToken, Task<TResult[]>> _execute;
    private readonly int _maxBatch;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task[] _writers;

    public GroupCommit(Func<List<TCommand>, CancellationToken, Task<TResult[]>> execute, int maxBatch, int writers)
    {
        _execute = execute;
        _maxBatch = maxBatch;
        _writers = new Task[writers];
        for (var i = 0; i < writers; i++)
            _writers[i] = Task.Run(WriteLoopAsync);
    }

    public Task<TResult> SubmitAsync(TCommand command)
    {
        var pending = new Pending(command);
        ObjectDisposedException.ThrowIf(!_queue.Writer.TryWrite(pending), this);
        return pending.Completion.Task;
    }

    private async Task WriteLoopAsync()
    {
        var batch = new List<Pending>(_maxBatch);
        var commands = new List<TCommand>(_maxBatch);
        while (await _queue.Reader.WaitToReadAsync(CancellationToken.None))
        {
            while (batch.Count < _maxBatch && _queue.Reader.TryRead(out var item))
                batch.Add(item);
            if (batch.Count == 0)
                continue;
            foreach (var p in batch)
                commands.Add(p.Command);
            try
            {
                var results = await _execute(commands, _stopping.Token);
                for (var i = 0; i < batch.Count; i++)
                    batch[i].Completion.TrySetResult(results[i]);
            }
            catch (Exception ex)
            {
                foreach (var p in batch)
                    p.Completion.TrySetException(ex);
            }
            batch.Clear();
            commands.Clear();
        }
    }

    /// <summary>Stops taking commands, lets the writers finish what was submitted.</summary>
    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await Task.WhenAll(_writers);
        _stopping.Dispose();
    }

    private sealed class Pending(TCommand command)
    {
        public TCommand Command { get; } = command;
        public TaskCompletionSource<TResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
