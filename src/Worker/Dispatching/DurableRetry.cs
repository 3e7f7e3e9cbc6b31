using System.Net.Sockets;
using Dispatcher.Worker.Observability;
using Npgsql;

namespace Dispatcher.Worker.Dispatching;

/// <summary>
/// Runs a PostgreSQL write until it goes through: while the database is down a consumer holds its message
/// (unacknowledged) and keeps the result of a call it already made, instead of faulting the message into
/// the error queue. Shutdown cancels the wait, and the unacknowledged message is redelivered.
/// </summary>
internal sealed class DurableRetry(TimeProvider time, ILogger<DurableRetry> logger)
{
    private static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(5);

    public async Task<T> RunAsync<T>(Func<Task<T>> operation, CancellationToken cancellationToken)
    {
        var delay = TimeSpan.FromMilliseconds(200);
        while (true)
        {
            try
            {
                return await operation();
            }
            catch (Exception ex) when (IsTransient(ex) && !cancellationToken.IsCancellationRequested)
            {
                Log.DatabaseUnavailable(logger, ex.Message, (int)delay.TotalMilliseconds);
                await Task.Delay(delay, time, cancellationToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxDelay.Ticks));
            }
        }
    }

    /// <summary>Connection-level failures are transient; SQL errors (a bug, bad data) are not.</summary>
    public static bool IsTransient(Exception ex) => ex switch
    {
        PostgresException pg => pg.IsTransient || pg.SqlState.StartsWith("57", StringComparison.Ordinal) || pg.SqlState.StartsWith("08", StringComparison.Ordinal),
        NpgsqlException => true,
        SocketException or IOException or TimeoutException => true,
        _ => false,
    };
}
