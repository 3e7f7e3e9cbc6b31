using System.ComponentModel;
using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Hosting;
using Dispatcher.Worker.Inspection;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Dispatcher.Worker.Cli;

internal sealed class DispatchesShowSettings : ReadSettings
{
    [CommandArgument(0, "<REQUEST_ID>")]
    [Description("The RequestId of the dispatch.")]
    public Guid RequestId { get; init; }
}

/// <summary><c>dispatches show ID</c>: a request's state, attempts and history.</summary>
internal sealed class DispatchesShowCommand : AsyncCommand<DispatchesShowSettings>
{
    public override Task<int> ExecuteAsync(CommandContext context, DispatchesShowSettings settings, CancellationToken cancellationToken) =>
        ShowAsync(settings, deadLettersOnly: false, cancellationToken);

    /// <summary>Shared by <c>dispatches show</c> and <c>dead-letters show</c> (which refuses anything not dead-lettered).</summary>
    public static Task<int> ShowAsync(DispatchesShowSettings settings, bool deadLettersOnly, CancellationToken cancellationToken) =>
        CommandRunner.GuardAsync(async () =>
        {
            var builder = DispatcherHostBuilder.Create(settings.Config, CliOverrides.Values, quietLogs: true);
            builder.Services.AddSingleton<DispatchViews>();
            await using var app = builder.Build();
            var view = await app.Services.GetRequiredService<DispatchViews>().GetAsync(settings.RequestId, cancellationToken);
            if (view is null)
            {
                Console.Error.WriteLine($"No dispatch with RequestId {settings.RequestId}.");
                return 1;
            }
            if (deadLettersOnly && view.State != nameof(Persistence.Model.DispatchState.DeadLettered))
            {
                Console.Error.WriteLine($"Dispatch {settings.RequestId} is not a dead letter (state {view.State}).");
                return 1;
            }
            if (settings.Json)
                Console.Out.WriteLine(DispatcherJson.Serialize(view));
            else
                Render(view);
            return 0;
        });

    private static void Render(DispatchView v)
    {
        var grid = new Grid().AddColumn().AddColumn();
        void Row(string k, object? value) => grid.AddRow(new Text(k, new Style(decoration: Decoration.Bold)), new Text(value?.ToString() ?? "-"));
        Row("RequestId", v.RequestId);
        Row("Destination", v.Destination);
        Row("State", v.State);
        Row("Reason", v.Reason);
        Row("Attempts", v.Attempts);
        Row("Cycle", v.Cycle);
        Row("Status code", v.StatusCode);
        Row("Last error", v.LastError);
        Row("Created", v.CreatedAt.ToString("O"));
        Row("First attempt", v.FirstAttemptAt?.ToString("O"));
        Row("Next attempt", v.NextAttemptAt?.ToString("O"));
        Row("Completed", v.CompletedAt?.ToString("O"));
        if (v.Request is { } r)
            Row("Request", $"{r.Method} {r.Path}");
        AnsiConsole.Write(grid);

        var history = new Table().AddColumns("Cycle", "#", "Started", "ms", "Result", "Status", "Error");
        foreach (var a in v.History)
        {
            history.AddRow(a.Cycle.ToString(), a.Number.ToString(), a.StartedAt.ToString("O"), a.DurationMs.ToString("0.0"),
                a.Result, a.StatusCode?.ToString() ?? "-", Markup.Escape(a.Error ?? ""));
        }
        AnsiConsole.Write(history);
    }
}
