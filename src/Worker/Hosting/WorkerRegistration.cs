using Dispatcher.Persistence;
using Dispatcher.Worker.Admin;
using Dispatcher.Worker.DeadLetters;
using Dispatcher.Worker.Destinations;
using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Inspection;
using Dispatcher.Worker.Observability;
using Dispatcher.Worker.Outbox;
using Dispatcher.Worker.Status;
using Microsoft.EntityFrameworkCore;

namespace Dispatcher.Worker.Hosting;

internal static class WorkerRegistration
{
    /// <summary>Everything <c>run</c> needs: the consumer and its services, the outbox relay, the admin HTTP.</summary>
    public static void AddDispatcherWorker(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        // Registered first so that it runs before the bus starts: bad configuration or a missing schema stops the start.
        services.AddHostedService<StartupChecks>();
        services.AddSingleton<DestinationRegistry>();
        services.AddSingleton<DownstreamCaller>();
        services.AddSingleton<DispatchWriter>();
        services.AddSingleton<DurableRetry>();
        services.AddSingleton<DispatchProcessor>();
        services.AddSingleton<WorkerSlots>();
        services.AddSingleton<DispatchViews>();
        services.AddSingleton<DeadLetterReplayer>();
        builder.AddDispatcherBus(consume: true);
        // After the bus: stops first on shutdown; whatever it leaves pending is published by the next relay.
        services.AddHostedService<OutboxRelay>();
        services.AddSingleton<CompletedEventPublisher>();
        services.AddSingleton<EventHandoff>();
        services.AddHostedService(sp => sp.GetRequiredService<EventHandoff>());
        builder.AddStatusReporting();
        services.AddHostedService<WorkerHeartbeatService>();
        builder.AddAdminEndpoints();
        builder.AddDispatcherTracing();
    }

    /// <summary>What <c>status</c> and <c>GET /api/status</c> need.</summary>
    public static void AddStatusReporting(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<QueueInspector>();
        builder.Services.AddSingleton<StatusReporter>();
    }

    /// <summary>Fails the start, with a message naming the key, on invalid configuration or a schema that is not migrated.</summary>
    private sealed class StartupChecks(IServiceProvider services) : IHostedService
    {
        public async Task StartAsync(CancellationToken cancellationToken)
        {
            _ = services.GetRequiredService<DestinationRegistry>();
            // Plain SQL, not EF Core's GetPendingMigrations: see SchemaVersion.
            var applied = await SchemaVersion.LatestAppliedAsync(services.GetRequiredService<DispatcherDataSources>().Durable, cancellationToken);
            if (applied is null || string.CompareOrdinal(applied, SchemaVersion.Latest) < 0)
            {
                throw new InvalidOperationException(
                    $"The database schema is not up to date (latest migration applied: {applied ?? "none"}; this worker needs " +
                    $"{SchemaVersion.Latest}). Run the 'migrate' command first.");
            }
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
