using System.ComponentModel;
using Dispatcher.Worker.DeadLetters;
using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Hosting;
using Spectre.Console;
using Spectre.Console.Cli;
using ValidationResult = Spectre.Console.ValidationResult;

namespace Dispatcher.Worker.Cli;

internal sealed class DeadLettersReplaySettings : DeadLetterFilterSettings
{
    [CommandArgument(0, "[REQUEST_IDS]")]
    [Description("Dead letters to replay by RequestId.")]
    public Guid[] RequestIds { get; init; } = [];

    [CommandOption("--all")]
    [Description("Replay every dead letter.")]
    public bool All { get; init; }

    [CommandOption("--dry-run")]
    [Description("Print what would be replayed; change nothing.")]
    public bool DryRun { get; init; }

    [CommandOption("--rate <PER_SECOND>")]
    [Description("Replay at most this many per second.")]
    public double? Rate { get; init; }

    public override ValidationResult Validate()
    {
        var baseResult = base.Validate();
        if (!baseResult.Successful)
            return baseResult;
        if (RequestIds.Length == 0 && !All && Destination is null && Reason is null && Since is null && Until is null)
            return ValidationResult.Error("Say what to replay: REQUEST_IDS, --destination, --reason, --since, --until, or --all.");
        if (All && (RequestIds.Length > 0 || Destination is not null || Reason is not null || Since is not null || Until is not null))
            return ValidationResult.Error("--all replays everything: do not combine it with ids or filters.");
        if (Rate is <= 0)
            return ValidationResult.Error("--rate must be greater than 0.");
        return ValidationResult.Success();
    }
}

/// <summary><c>dead-letters replay</c>: start a new cycle for the chosen dead letters, with a progress bar and a summary.</summary>
internal sealed class DeadLettersReplayCommand : AsyncCommand<DeadLettersReplaySettings>
{
    public override Task<int> ExecuteAsync(CommandContext context, DeadLettersReplaySettings settings, CancellationToken cancellationToken) =>
        CommandRunner.GuardAsync(async () =>
        {
            var builder = DispatcherHostBuilder.Create(settings.Config, CliOverrides.Values, quietLogs: true);
            builder.Services.AddSingleton<DeadLetterReplayer>();
            await using var app = builder.Build();
            var replayer = app.Services.GetRequiredService<DeadLetterReplayer>();
            var filter = settings.ToFilter(settings.RequestIds);

            ReplaySummary summary;
            if (settings.DryRun || settings.Json || Console.IsErrorRedirected)
            {
                summary = await replayer.ReplayAsync(filter, settings.Rate, settings.DryRun, null, cancellationToken);
            }
            else
            {
                summary = null!;
                await AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) }).Progress()
                    .StartAsync(async ctx =>
                    {
                        var task = ctx.AddTask("Replaying", maxValue: 1);
                        summary = await replayer.ReplayAsync(filter, settings.Rate, dryRun: false, (done, total) =>
                        {
                            task.MaxValue = total;
                            task.Value = done;
                        }, cancellationToken);
                        task.Value = task.MaxValue;
                    });
            }

            if (settings.Json)
            {
                Console.Out.WriteLine(DispatcherJson.Serialize(summary));
                return 0;
            }
            var table = new Table().Title(summary.DryRun ? $"Dry run: {summary.Matched} dead letter(s) would be replayed" : $"Replayed {summary.Replayed} of {summary.Matched} matching dead letter(s)")
                .AddColumns("Destination", summary.DryRun ? "Would replay" : "Replayed");
            foreach (var (destination, count) in summary.ByDestination.OrderBy(kv => kv.Key))
                table.AddRow(Markup.Escape(destination), count.ToString());
            AnsiConsole.Write(table);
            return 0;
        });
}
