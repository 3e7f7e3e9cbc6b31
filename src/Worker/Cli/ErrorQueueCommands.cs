using System.ComponentModel;
using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.ErrorQueue;
using Dispatcher.Worker.Hosting;
using Spectre.Console;
using Spectre.Console.Cli;
using ValidationResult = Spectre.Console.ValidationResult;

namespace Dispatcher.Worker.Cli;

internal sealed class ErrorQueueListSettings : ReadSettings
{
    [CommandOption("--limit <N>")]
    [DefaultValue(50)]
    public int Limit { get; init; } = 50;
}

internal sealed class ErrorQueueRequeueSettings : CliSettings
{
    [CommandOption("--count <N>")]
    [Description("Move at most N messages.")]
    public int? Count { get; init; }

    [CommandOption("--all")]
    [Description("Move every message.")]
    public bool All { get; init; }

    public override ValidationResult Validate() =>
        Count is null == All
            ? ValidationResult.Success()
            : ValidationResult.Error("Say how many: --count N or --all (one of them).");
}

/// <summary><c>error-queue list</c>: what MassTransit put in the error queue and why (its fault headers).</summary>
internal sealed class ErrorQueueListCommand : AsyncCommand<ErrorQueueListSettings>
{
    public override Task<int> ExecuteAsync(CommandContext context, ErrorQueueListSettings settings, CancellationToken cancellationToken) =>
        CommandRunner.GuardAsync(async () =>
        {
            var builder = DispatcherHostBuilder.Create(settings.Config, CliOverrides.Values, quietLogs: true);
            builder.Services.AddSingleton<ErrorQueueClient>();
            await using var app = builder.Build();
            var client = app.Services.GetRequiredService<ErrorQueueClient>();
            var messages = await client.ListAsync(settings.Limit, cancellationToken);
            if (settings.Json)
            {
                Console.Out.WriteLine(DispatcherJson.Serialize(messages));
                return 0;
            }
            var table = new Table().Title($"{client.ErrorQueueName}: {messages.Count} message(s) shown")
                .AddColumns("MessageId", "Content type", "Fault", "Body (start)");
            foreach (var m in messages)
            {
                table.AddRow(m.MessageId ?? "-", Markup.Escape(m.ContentType ?? "-"),
                    Markup.Escape($"{m.FaultExceptionType}: {m.FaultMessage}"), Markup.Escape(m.BodyPreview));
            }
            AnsiConsole.Write(table);
            return 0;
        });
}

/// <summary><c>error-queue requeue</c>: move messages back to the request queue.</summary>
internal sealed class ErrorQueueRequeueCommand : AsyncCommand<ErrorQueueRequeueSettings>
{
    public override Task<int> ExecuteAsync(CommandContext context, ErrorQueueRequeueSettings settings, CancellationToken cancellationToken) =>
        CommandRunner.GuardAsync(async () =>
        {
            var builder = DispatcherHostBuilder.Create(settings.Config, CliOverrides.Values, quietLogs: true);
            builder.Services.AddSingleton<ErrorQueueClient>();
            await using var app = builder.Build();
            var client = app.Services.GetRequiredService<ErrorQueueClient>();
            var moved = await client.RequeueAsync(settings.All ? int.MaxValue : settings.Count!.Value, null, cancellationToken);
            Console.Out.WriteLine($"Requeued {moved} message(s) from {client.ErrorQueueName}.");
            return 0;
        });
}
