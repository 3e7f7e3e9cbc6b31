using Dispatcher.Persistence;
using Dispatcher.Worker.Tests.Infrastructure;
using Npgsql;

namespace Dispatcher.Worker.Tests.Persistence;

[Collection(IntegrationCollection.Name)]
public sealed class ListenerConnectionTests(ServicesFixture services)
{
    [Fact]
    public async Task The_listener_is_a_session_of_its_own_that_ends_when_it_is_closed()
    {
        var postgres = await services.CreateDatabaseAsync();
        await using var dataSources = new DispatcherDataSources(postgres);
        int pid;
        await using (var listener = await dataSources.OpenListenerAsync(CancellationToken.None))
        {
            await using (var listen = new NpgsqlCommand("LISTEN dispatcher_outbox", listener))
                await listen.ExecuteNonQueryAsync();
            pid = listener.ProcessID;
            Assert.True(await BackendAliveAsync(postgres, pid));
        }

        // Pooled connections are not reset on return (no UNLISTEN): a pooled listener would live on, still listening.
        await Eventually.TrueAsync(async () => !await BackendAliveAsync(postgres, pid), TimeSpan.FromSeconds(10), "the listener's session ended");
    }

    private static async Task<bool> BackendAliveAsync(string postgres, int pid)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(postgres) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand("SELECT count(*) FROM pg_stat_activity WHERE pid = @pid", connection);
        cmd.Parameters.AddWithValue("pid", pid);
        return (long)(await cmd.ExecuteScalarAsync())! > 0;
    }
}
