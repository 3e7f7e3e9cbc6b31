using Dispatcher.Worker.Admin;
using Dispatcher.Worker.Hosting;
using Spectre.Console.Cli;

namespace Dispatcher.Worker.Cli;

/// <summary><c>run</c> (the default): consume requests, call destinations, relay the outbox, serve health and metrics.</summary>
internal sealed class RunCommand : AsyncCommand<CliSettings>
{
    public override Task<int> ExecuteAsync(CommandContext context, CliSettings settings, CancellationToken cancellationToken) =>
        CommandRunner.GuardAsync(async () =>
        {
            var builder = DispatcherHostBuilder.Create(settings.Config, CliOverrides.Values, quietLogs: false);
            builder.AddDispatcherWorker();
            await using var app = builder.Build();
            app.MapAdminEndpoints();
            await app.RunAsync();
            return 0;
        });
}
