using System.Data.Common;
using Npgsql;

namespace Dispatcher.Persistence;

/// <summary>
/// The two connection pools of a worker. <see cref="Durable"/> is what every acknowledgement waits on.
/// <see cref="Relaxed"/> runs with <c>synchronous_commit = off</c>: it serves writes whose loss in a
/// PostgreSQL crash is harmless (rate-limit leases, heartbeats) or detected (claims: a lost claim makes its
/// completion miss, and the worker claims again before it completes; see DispatchStore.ClaimAsync).
/// Both prepare their statements automatically: a worker runs the same dozen statements all day, and parsing the
/// large batched ones on every call cost PostgreSQL CPU (measured in the throughput bench, pg_stat_statements:
/// 0.37-0.47 -> 0.31-0.32 ms per dispatch); they are still planned for each execution (see below). A connection string that sets
/// <c>Max Auto Prepare</c> itself keeps its value (0 turns it off, e.g. behind a PgBouncer older than 1.21 in
/// transaction mode).
/// </summary>
public sealed class DispatcherDataSources : IAsyncDisposable
{
    public DispatcherDataSources(string connectionString)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        var durable = new NpgsqlConnectionStringBuilder(connectionString);
        // NpgsqlConnectionStringBuilder.ContainsKey answers "is this a known keyword": ask a plain builder what is set.
        var given = new DbConnectionStringBuilder { ConnectionString = connectionString };
        var autoPrepared = !given.ContainsKey("Max Auto Prepare") && !given.ContainsKey("MaxAutoPrepare");
        if (autoPrepared)
        {
            durable.MaxAutoPrepare = 20;
            durable.AutoPrepareMinUsages = 2;
            // Parsed once, planned every time: a generic plan made while a table is young (a fresh install) would
            // keep scanning it sequentially for the connection's life as it grows (seen in the bench: the batched
            // completion at 250-390 µs per dispatch instead of 120-180).
            durable.Options = string.IsNullOrEmpty(durable.Options)
                ? "-c plan_cache_mode=force_custom_plan"
                : durable.Options + " -c plan_cache_mode=force_custom_plan";
        }
        // No TransactionScope anywhere: skip the ambient-transaction lookup on every open (and System.Transactions).
        if (!given.ContainsKey("Enlist"))
            durable.Enlist = false;
        // No session state to reset: the pools' statements set nothing, and the one LISTEN has a connection of its own
        // (OpenListenerAsync). The reset (RESET ALL and four more statements, sent with a connection's next command
        // after each return to the pool) cost PostgreSQL 8-13 % of its CPU per dispatch in the throughput bench
        // (0.302-0.304 -> 0.263-0.276 ms). An open transaction is still rolled back on return either way.
        if (!given.ContainsKey("No Reset On Close") && !given.ContainsKey("NoResetOnClose"))
            durable.NoResetOnClose = true;
        connectionString = durable.ConnectionString;
        // No keepalive on the listener: with one, Npgsql may raise a notification from its keepalive timer rather
        // than inside WaitAsync, where the relay expects it (it reads what was announced on its own loop).
        _listener = new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false, KeepAlive = 0 }.ConnectionString;
        Durable = NpgsqlDataSource.Create(connectionString);
        var relaxed = new NpgsqlConnectionStringBuilder(connectionString);
        relaxed.Options = string.IsNullOrEmpty(relaxed.Options)
            ? "-c synchronous_commit=off"
            : relaxed.Options + " -c synchronous_commit=off";
        Relaxed = NpgsqlDataSource.Create(relaxed.ConnectionString);
        // The same, planned once per connection: for statements on one row by its key (the rate-limit buckets), whose
        // plan no table size can change, and whose planning cost more than their execution (measured at 100
        // requests/s: 0.36-0.37 ms planning, 0.19-0.21 ms execution per lease). Without our automatic preparation
        // nothing is planned once: the relaxed pool itself serves.
        if (autoPrepared)
        {
            var byKey = new NpgsqlConnectionStringBuilder(relaxed.ConnectionString);
            byKey.Options = byKey.Options!.Replace("plan_cache_mode=force_custom_plan", "plan_cache_mode=force_generic_plan", StringComparison.Ordinal);
            RelaxedByKey = NpgsqlDataSource.Create(byKey.ConnectionString);
        }
        else
        {
            RelaxedByKey = Relaxed;
        }
    }

    private readonly string _listener;

    public NpgsqlDataSource Durable { get; }

    public NpgsqlDataSource Relaxed { get; }

    /// <summary><see cref="Relaxed"/>, with generic plans: only for statements on one row by its key (<see cref="Relaxed"/> itself when the connection string sets <c>Max Auto Prepare</c>).</summary>
    public NpgsqlDataSource RelaxedByKey { get; }

    /// <summary>
    /// Opens a connection of its own, outside the pools, for LISTEN: closing it ends its session and the LISTEN with
    /// it. (Pooled connections are not reset on return: one would go back to its pool still listening, and buffer
    /// notifications nobody reads.)
    /// </summary>
    public async Task<NpgsqlConnection> OpenListenerAsync(CancellationToken cancellationToken)
    {
        var connection = new NpgsqlConnection(_listener);
        try
        {
            await connection.OpenAsync(cancellationToken);
            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Durable.DisposeAsync();
        await Relaxed.DisposeAsync();
        if (!ReferenceEquals(RelaxedByKey, Relaxed))
            await RelaxedByKey.DisposeAsync();
    }
}
