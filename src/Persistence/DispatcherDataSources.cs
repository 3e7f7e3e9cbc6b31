using Npgsql;

namespace Dispatcher.Persistence;

/// <summary>
/// The two connection pools of a worker. <see cref="Durable"/> is what every acknowledgement waits on.
/// <see cref="Relaxed"/> runs with <c>synchronous_commit = off</c>: it serves writes whose loss in a
/// PostgreSQL crash is harmless (rate-limit leases, heartbeats). Claims are not among them: a claim lost in a
/// crash would fence out the completion of the call it allowed, so claims commit durably (group-committed).
/// </summary>
public sealed class DispatcherDataSources : IAsyncDisposable
{
    public DispatcherDataSources(string connectionString)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        Durable = NpgsqlDataSource.Create(connectionString);
        var relaxed = new NpgsqlConnectionStringBuilder(connectionString);
        relaxed.Options = string.IsNullOrEmpty(relaxed.Options)
            ? "-c synchronous_commit=off"
            : relaxed.Options + " -c synchronous_commit=off";
        Relaxed = NpgsqlDataSource.Create(relaxed.ConnectionString);
    }

    public NpgsqlDataSource Durable { get; }

    public NpgsqlDataSource Relaxed { get; }

    public async ValueTask DisposeAsync()
    {
        await Durable.DisposeAsync();
        await Relaxed.DisposeAsync();
    }
}
