using Dispatcher.Persistence;
using Npgsql;

namespace Dispatcher.Worker.Tests.Persistence;

public sealed class DispatcherDataSourcesTests
{
    [Fact]
    public async Task Statements_are_prepared_automatically_unless_the_connection_string_says_otherwise()
    {
        await using (var defaults = new DispatcherDataSources("Host=127.0.0.1;Database=d;Username=u"))
        {
            Assert.Equal(20, new NpgsqlConnectionStringBuilder(defaults.Durable.ConnectionString).MaxAutoPrepare);
            Assert.Equal(20, new NpgsqlConnectionStringBuilder(defaults.Relaxed.ConnectionString).MaxAutoPrepare);
            Assert.Contains("synchronous_commit=off", new NpgsqlConnectionStringBuilder(defaults.Relaxed.ConnectionString).Options, StringComparison.Ordinal);
            // Planned on every execution: a generic plan made on a young table would keep scanning it as it grows.
            Assert.Contains("plan_cache_mode=force_custom_plan", new NpgsqlConnectionStringBuilder(defaults.Durable.ConnectionString).Options, StringComparison.Ordinal);
            Assert.Contains("plan_cache_mode=force_custom_plan", new NpgsqlConnectionStringBuilder(defaults.Relaxed.ConnectionString).Options, StringComparison.Ordinal);
            // Statements on one row by its key: planned once (no table size changes their plan).
            var byKey = new NpgsqlConnectionStringBuilder(defaults.RelaxedByKey.ConnectionString);
            Assert.Equal(20, byKey.MaxAutoPrepare);
            Assert.Contains("synchronous_commit=off", byKey.Options, StringComparison.Ordinal);
            Assert.Contains("plan_cache_mode=force_generic_plan", byKey.Options, StringComparison.Ordinal);
            Assert.DoesNotContain("force_custom_plan", byKey.Options, StringComparison.Ordinal);
        }
        await using (var off = new DispatcherDataSources("Host=127.0.0.1;Database=d;Username=u;Max Auto Prepare=0"))
        {
            Assert.Equal(0, new NpgsqlConnectionStringBuilder(off.Durable.ConnectionString).MaxAutoPrepare);
            Assert.Equal(0, new NpgsqlConnectionStringBuilder(off.Relaxed.ConnectionString).MaxAutoPrepare);
            Assert.Equal(0, new NpgsqlConnectionStringBuilder(off.RelaxedByKey.ConnectionString).MaxAutoPrepare);
        }
        await using var custom = new DispatcherDataSources("Host=127.0.0.1;Database=d;Username=u;maxautoprepare=5");
        Assert.Equal(5, new NpgsqlConnectionStringBuilder(custom.Durable.ConnectionString).MaxAutoPrepare);
    }

    [Fact]
    public async Task Pooled_connections_are_not_reset_on_return_unless_the_connection_string_says_so_and_the_listener_is_not_pooled()
    {
        await using (var defaults = new DispatcherDataSources("Host=127.0.0.1;Database=d;Username=u"))
        {
            Assert.True(new NpgsqlConnectionStringBuilder(defaults.Durable.ConnectionString).NoResetOnClose);
            Assert.True(new NpgsqlConnectionStringBuilder(defaults.Relaxed.ConnectionString).NoResetOnClose);
            Assert.True(new NpgsqlConnectionStringBuilder(defaults.RelaxedByKey.ConnectionString).NoResetOnClose);
        }
        await using var given = new DispatcherDataSources("Host=127.0.0.1;Database=d;Username=u;No Reset On Close=false");
        Assert.False(new NpgsqlConnectionStringBuilder(given.Durable.ConnectionString).NoResetOnClose);
    }

    [Fact]
    public async Task Connections_do_not_enlist_in_ambient_transactions_unless_the_connection_string_says_so()
    {
        await using (var defaults = new DispatcherDataSources("Host=127.0.0.1;Database=d;Username=u"))
        {
            Assert.False(new NpgsqlConnectionStringBuilder(defaults.Durable.ConnectionString).Enlist);
            Assert.False(new NpgsqlConnectionStringBuilder(defaults.Relaxed.ConnectionString).Enlist);
        }
        await using var given = new DispatcherDataSources("Host=127.0.0.1;Database=d;Username=u;Enlist=true");
        Assert.True(new NpgsqlConnectionStringBuilder(given.Durable.ConnectionString).Enlist);
    }
}
