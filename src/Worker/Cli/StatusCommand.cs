using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Hosting;
using Dispatcher.Worker.Status;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Dispatcher.Worker.Cli;

/// <summary><c>status</c>: per destination breaker, in flight, rate, waiting retries, dead letters; queues; outbox.</summary>
internal sealed class StatusCommand : AsyncCommand<ReadSettings>
{
    public override Task<int> ExecuteAsync(CommandContext context, ReadSettings settings, CancellationToken cancellationToken) =>
        CommandRunner.GuardAsync(async () =>
        {
            var builder = DispatcherHostBuilder.Create(settings.Config, CliOverrides.Values, quietLogs: true);
            builder.AddStatusReporting();
            await using var app = builder.Build();
            var report = await app.Services.GetRequiredService<StatusReporter>().BuildAsync(cancellationToken);
            if (settings.Json)
            {
                Console.Out.WriteLine(DispatcherJson.Serialize(report));
                return 0;
            }
            var table = new Table().Title($"Dispatcher status at {report.At:yyyy-MM-dd HH:mm:ss}Z ({report.LiveWorkers} live worker(s))")
                .AddColumns("Destination", "Breaker", "In flight", "Rate/s", "In progress", "Waiting (retry/parked)", "Held back", "Dead letters", "Succeeded (1 h)");
            foreach (var d in report.Destinations)
            {
                table.AddRow(Markup.Escape(d.Destination), Markup.Escape(d.Breaker), d.InFlight.ToString(), d.PermitsPerSecond.ToString("0.##"),
                    d.InProgress.ToString(), d.WaitingRetries.ToString(), d.HeldBack.ToString(), d.DeadLetters.ToString(), d.SucceededLastHour.ToString());
            }
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine(Queue("Queue", report.Queue) + "   " + Queue("Error queue", report.ErrorQueue));
            AnsiConsole.MarkupLine($"Outbox: {report.OutboxPending} pending, {report.OutboxDue} due now");
            return 0;
        });

    private static string Queue(string label, QueueInfo? q) =>
        q is null ? $"{label}: (not found)" : Markup.Escape($"{label} {q.Queue}: {q.Messages} ready, {q.Consumers} consumer(s)");
}
