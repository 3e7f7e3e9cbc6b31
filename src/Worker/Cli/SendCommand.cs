using System.ComponentModel;
using Dispatcher.Contracts;
using Dispatcher.Worker.Hosting;
using MassTransit;
using ValidationResult = Spectre.Console.ValidationResult;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Dispatcher.Worker.Cli;

internal sealed class SendSettings : CliSettings
{
    [CommandOption("-d|--destination <NAME>")]
    [Description("A configured destination.")]
    public string Destination { get; init; } = "";

    [CommandOption("-p|--path <PATH>")]
    [Description("Path (and query) relative to the destination's BaseUrl.")]
    public string Path { get; init; } = "";

    [CommandOption("-m|--method <METHOD>")]
    [DefaultValue("POST")]
    public string Method { get; init; } = "POST";

    [CommandOption("-b|--body <BODY>")]
    public string? Body { get; init; }

    [CommandOption("--content-type <TYPE>")]
    public string? ContentType { get; init; }

    [CommandOption("-H|--header <NAME=VALUE>")]
    [Description("A request header; repeat for more.")]
    public string[] Headers { get; init; } = [];

    [CommandOption("-n|--count <N>")]
    [DefaultValue(1)]
    public int Count { get; init; } = 1;

    [CommandOption("-r|--rate <PER_SECOND>")]
    [Description("Publish at most this many per second (0: as fast as possible).")]
    [DefaultValue(0d)]
    public double Rate { get; init; }

    public override ValidationResult Validate()
    {
        if (string.IsNullOrWhiteSpace(Destination))
            return ValidationResult.Error("--destination is required.");
        if (string.IsNullOrWhiteSpace(Path))
            return ValidationResult.Error("--path is required.");
        if (Count < 1)
            return ValidationResult.Error("--count must be at least 1.");
        if (Rate < 0)
            return ValidationResult.Error("--rate must not be negative.");
        if (Headers.Any(h => !h.Contains('=', StringComparison.Ordinal)))
            return ValidationResult.Error("--header takes NAME=VALUE.");
        return ValidationResult.Success();
    }
}

/// <summary><c>send</c>: publish requests to <c>queue:dispatch-requests</c>, with a progress bar when there are many.</summary>
internal sealed class SendCommand : AsyncCommand<SendSettings>
{
    public override Task<int> ExecuteAsync(CommandContext context, SendSettings settings, CancellationToken cancellationToken) =>
        CommandRunner.GuardAsync(async () =>
        {
            var builder = DispatcherHostBuilder.Create(settings.Config, CliOverrides.Values, quietLogs: true);
            builder.AddDispatcherBus(consume: false);
            await using var app = builder.Build();
            await app.StartAsync(cancellationToken);
            var queue = app.Configuration["Dispatcher:Worker:QueueName"] ?? Configuration.DispatcherDefaults.QueueName;
            var endpoint = await app.Services.GetRequiredService<IBus>().GetSendEndpoint(new Uri($"queue:{queue}"));
            var time = app.Services.GetRequiredService<TimeProvider>();
            var headers = settings.Headers.Length == 0
                ? null
                : settings.Headers.Select(h => h.Split('=', 2)).ToDictionary(p => p[0], p => p[1], StringComparer.OrdinalIgnoreCase);

            var ids = new List<Guid>(settings.Count);
            async Task SendAllAsync(Action<int>? progress)
            {
                var start = time.GetTimestamp();
                for (var i = 0; i < settings.Count; i++)
                {
                    if (settings.Rate > 0)
                    {
                        var due = TimeSpan.FromSeconds(i / settings.Rate) - time.GetElapsedTime(start);
                        if (due > TimeSpan.Zero)
                            await Task.Delay(due, time, cancellationToken);
                    }
                    var request = new DispatchRequest
                    {
                        RequestId = Guid.NewGuid(),
                        Destination = settings.Destination,
                        Method = settings.Method,
                        Path = settings.Path,
                        Body = settings.Body,
                        ContentType = settings.ContentType,
                        Headers = headers,
                    };
                    await endpoint.Send(request, cancellationToken);
                    ids.Add(request.RequestId);
                    progress?.Invoke(i + 1);
                }
            }

            if (settings.Count >= 100 && !Console.IsErrorRedirected)
            {
                await AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) }).Progress()
                    .StartAsync(async ctx =>
                    {
                        var task = ctx.AddTask("Publishing", maxValue: settings.Count);
                        await SendAllAsync(n => task.Value = n);
                    });
            }
            else
            {
                await SendAllAsync(null);
            }
            await app.StopAsync(cancellationToken);

            foreach (var id in ids.Take(20))
                Console.Out.WriteLine(id);
            if (ids.Count > 20)
                Console.Out.WriteLine($"... and {ids.Count - 20} more");
            Console.Error.WriteLine($"Sent {ids.Count} request(s) to queue:{queue}.");
            return 0;
        });
}
