using System.Collections.Concurrent;
using Dispatcher.Worker.Dispatching;

namespace Dispatcher.Worker.Tests.Dispatching;

public sealed class GroupCommitTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    /// <summary>An execute delegate that records each batch and can hold the first one until released.</summary>
    private sealed class Recorder
    {
        private readonly TaskCompletionSource _firstStarted = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _calls;

        public Recorder(bool holdFirst) { if (!holdFirst) _gate.SetResult(); }

        public ConcurrentQueue<List<int>> Batches { get; } = new();

        public Func<int, bool> FailWhen { get; init; } = _ => false;

        public Task FirstStarted => _firstStarted.Task;

        public void Release() => _gate.TrySetResult();

        public async Task<string[]> ExecuteAsync(List<int> commands, CancellationToken cancellationToken)
        {
            Batches.Enqueue([.. commands]);
            if (Interlocked.Increment(ref _calls) == 1)
            {
                _firstStarted.SetResult();
                await _gate.Task;
            }
            if (commands.Any(FailWhen))
                throw new InvalidOperationException($"batch {string.Join(',', commands)} failed");
            return commands.Select(c => $"r{c}").ToArray();
        }
    }

    [Fact]
    public async Task Each_caller_gets_the_result_of_its_own_command()
    {
        var recorder = new Recorder(holdFirst: false);
        await using var group = new GroupCommit<int, string>(recorder.ExecuteAsync, maxBatch: 8, writers: 2);

        var results = await Task.WhenAll(Enumerable.Range(0, 100).Select(group.SubmitAsync)).WaitAsync(Timeout);

        Assert.Equal(Enumerable.Range(0, 100).Select(i => $"r{i}"), results);
        Assert.Equal(Enumerable.Range(0, 100), recorder.Batches.SelectMany(b => b).Order());
    }

    [Fact]
    public async Task Submissions_during_a_running_batch_are_grouped_up_to_max_batch()
    {
        var recorder = new Recorder(holdFirst: true);
        await using var group = new GroupCommit<int, string>(recorder.ExecuteAsync, maxBatch: 10, writers: 1);
        var first = group.SubmitAsync(0);
        await recorder.FirstStarted.WaitAsync(Timeout);

        var rest = Enumerable.Range(1, 50).Select(group.SubmitAsync).ToList();
        Assert.All(rest, t => Assert.False(t.IsCompleted));
        recorder.Release();
        var results = await Task.WhenAll(rest.Prepend(first)).WaitAsync(Timeout);

        Assert.Equal(Enumerable.Range(0, 51).Select(i => $"r{i}"), results);
        var batches = recorder.Batches.ToList();
        Assert.Equal([0], batches[0]);
        Assert.All(batches, b => Assert.InRange(b.Count, 1, 10));
        Assert.Equal(6, batches.Count);
        Assert.Equal(Enumerable.Range(1, 50), batches.Skip(1).SelectMany(b => b));
    }

    [Fact]
    public async Task Failure_faults_exactly_that_batch_and_later_batches_still_work()
    {
        var recorder = new Recorder(holdFirst: true) { FailWhen = c => c == 13 };
        await using var group = new GroupCommit<int, string>(recorder.ExecuteAsync, maxBatch: 10, writers: 1);
        var first = group.SubmitAsync(0);
        await recorder.FirstStarted.WaitAsync(Timeout);
        var submitted = Enumerable.Range(1, 30).Select(group.SubmitAsync).ToList();

        recorder.Release();
        await Task.WhenAll(submitted.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default))).WaitAsync(Timeout);
        var later = await group.SubmitAsync(99).WaitAsync(Timeout);

        Assert.Equal("r0", await first);
        // Batches after the held one are 1-10, 11-20 (holds 13: fails), 21-30.
        for (var i = 1; i <= 30; i++)
        {
            var task = submitted[i - 1];
            if (i is >= 11 and <= 20)
            {
                var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => task);
                Assert.Equal("batch 11,12,13,14,15,16,17,18,19,20 failed", ex.Message);
            }
            else
            {
                Assert.Equal($"r{i}", await task);
            }
        }
        Assert.Equal("r99", later);
    }

    [Fact]
    public async Task Dispose_waits_for_pending_work_and_later_submissions_throw()
    {
        var recorder = new Recorder(holdFirst: true);
        var group = new GroupCommit<int, string>(recorder.ExecuteAsync, maxBatch: 4, writers: 1);
        var pending = Enumerable.Range(0, 9).Select(group.SubmitAsync).ToList();
        await recorder.FirstStarted.WaitAsync(Timeout);

        var disposing = group.DisposeAsync().AsTask();
        Assert.False(disposing.IsCompleted);
        Assert.Throws<ObjectDisposedException>(() => { _ = group.SubmitAsync(100); });
        recorder.Release();
        await disposing.WaitAsync(Timeout);

        Assert.All(pending, t => Assert.True(t.IsCompletedSuccessfully));
        Assert.Equal(Enumerable.Range(0, 9).Select(i => $"r{i}"), pending.Select(t => t.Result));
        Assert.Throws<ObjectDisposedException>(() => { _ = group.SubmitAsync(101); });
    }

    [Fact]
    public async Task Dispose_when_idle_completes()
    {
        var group = new GroupCommit<int, string>(new Recorder(holdFirst: false).ExecuteAsync, maxBatch: 4, writers: 3);

        await group.DisposeAsync().AsTask().WaitAsync(Timeout);

        Assert.Throws<ObjectDisposedException>(() => { _ = group.SubmitAsync(1); });
    }
}
