using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Hosting;
using Dispatcher.Worker.Inspection;
using Spectre.Console.Cli;

namespace Dispatcher.Worker.Cli;

/// <summary><c>dead-letters show ID</c>: the full dead letter (request, attempts, last response), secrets redacted.</summary>
internal sealed class DeadLettersShowCommand : AsyncCommand<DispatchesShowSettings>
{
    public override Task<int> ExecuteAsync(CommandContext context, DispatchesShowSettings settings, CancellationToken cancellationToken) =>
        CommandRunner.GuardAsync(async () =>
        {
            var builder = DispatcherHostBuilder.Create(settings.Config, CliOverrides.Values, quietLogs: true);
            builder.Services.AddSingleton<DispatchViews>();
            await using var app = builder.Build();
            var view = await app.Services.GetRequiredService<DispatchViews>().GetAsync(settings.RequestId, cancellationToken);
            if (view is null || view.State != nameof(Persistence.Model.DispatchState.DeadLettered))
            {
                Console.Error.WriteLine(view is null
                    ? $"No dispatch with RequestId {settings.RequestId}."
                    : $"Dispatch {settings.RequestId} is not a dead letter (state {view.State}).");
                return 1;
            }
            if (settings.Json)
                Console.Out.WriteLine(DispatcherJson.Serialize(view));
            else
                DispatchesShowCommand.Render(view);
            return 0;
        });
}
