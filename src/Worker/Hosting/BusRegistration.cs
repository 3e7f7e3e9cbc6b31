using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Dispatching;
using MassTransit;

namespace Dispatcher.Worker.Hosting;

internal static class BusRegistration
{
    /// <summary>
    /// MassTransit on RabbitMQ. With <paramref name="consume"/> the request consumer and its endpoint are added;
    /// without, the bus only sends and publishes (the CLI).
    /// </summary>
    public static void AddDispatcherBus(this IHostApplicationBuilder builder, bool consume)
    {
        var address = RabbitMqAddress.Parse(builder.Configuration.GetConnectionString("RabbitMq"));
        var worker = builder.Configuration.GetSection($"{DispatcherOptions.SectionName}:Worker").Get<WorkerOptions>() ?? new WorkerOptions();

        builder.Services.AddMassTransit(x =>
        {
            if (consume)
                x.AddConsumer<DispatchRequestConsumer, DispatchRequestConsumerDefinition>();
            x.UsingRabbitMq((context, cfg) =>
            {
                cfg.Host(address.Host, address.Port, address.VirtualHost, h =>
                {
                    h.Username(address.Username);
                    h.Password(address.Password);
                    if (address.UseTls)
                        h.UseSsl(_ => { });
                });
                if (consume)
                    cfg.ConfigureEndpoints(context);
            });
        });
        builder.Services.AddOptions<MassTransitHostOptions>().Configure(o =>
        {
            o.WaitUntilStarted = true;
            o.StartTimeout = TimeSpan.FromSeconds(60);
            // Shutdown: stop consuming, let in-flight dispatches finish and commit, then cancel what is left
            // (unacknowledged messages go back to the queue).
            o.StopTimeout = worker.ShutdownTimeout;
            o.ConsumerStopTimeout = worker.ShutdownTimeout;
        });
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = worker.ShutdownTimeout + TimeSpan.FromSeconds(15));
    }
}
