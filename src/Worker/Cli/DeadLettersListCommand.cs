using System.ComponentModel;
using Dispatcher.Persistence.DeadLetters;
using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Hosting;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Dispatcher.Worker.Cli;

internal sealed class DeadLettersListSettings : DeadLetterFilterSettings
{
    [CommandOption("--limit <N>")]
    [Description("Dead letters listed (the grouped counts always cover all that match).")]
    [DefaultValue(50)]
    public int Limit { get; init; } = 50;
}

/// <summary><c>dead-letters list</c>: counts grouped by destination, reason, status and error, then the newest ones.</summary>
internal sealed class DeadLettersListCommand : AsyncCommand<DeadLettersListSettings>
{
    public override Task<int> ExecuteAsync(CommandContext context, DeadLettersListSettings settings, CancellationToken cancellationToken) =>
        CommandRunner.GuardAsync(async () =>
        {
            var builder = DispatcherHostBuilder.Create(settings.Config, CliOverrides.Values, quietLogs: true);
            await using var app = builder.Build();
            var store = app.Services.GetRequiredService<DeadLetterStore>();
            var filter = settings.ToFilter();
            var total = await store.CountAsync(filter, cancellationToken);
            var groups = await store.GroupAsync(filter, 50, cancellationToken);
            var items = await store.ListAsync(filter, settings.Limit, cancellationToken);
            if (settings.Json)
            {
                Console.Out.WriteLine(DispatcherJson.Serialize(new { total, groups, items }));
                return 0;
            }

            var summary = new Table().Title($"{total} dead letter(s)").AddColumns("Destination", "Reason", "Status", "Error", "Count");
            foreach (var g in groups)
                summary.AddRow(Markup.Escape(g.Destination), g.Reason ?? "-", g.StatusCode?.ToString() ?? "-", Markup.Escape(g.Error ?? "-"), g.Count.ToString());
            AnsiConsole.Write(summary);

            var list = new Table().AddColumns("RequestId", "Destination", "Reason", "Status", "Attempts", "Request", "Dead-lettered");
            foreach (var d in items)
            {
                list.AddRow(d.RequestId.ToString(), Markup.Escape(d.Destination), d.Reason ?? "-", d.StatusCode?.ToString() ?? "-",
                    d.Attempts.ToString(), Markup.Escape($"{d.Method} {d.Path}"), d.CompletedAt?.ToString("yyyy-MM-dd HH:mm:ss") ?? "-");
            }
            AnsiConsole.Write(list);
            return 0;
        });
}
