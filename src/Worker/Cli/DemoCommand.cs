using System.ComponentModel;
using Dispatcher.Contracts;
using Dispatcher.Persistence;
using Dispatcher.Persistence.Model;
using Dispatcher.Worker.Admin;
using Dispatcher.Worker.Hosting;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Dispatcher.Worker.Cli;

internal sealed class DemoSettings : CliSettings
{
    [CommandOption("-n|--count <N>")]
    [Description("Requests to send.")]
    [DefaultValue(300)]
    public int Count { get; init; } = 300;

    [CommandOption("--timeout <SECONDS>")]
    [DefaultValue(120)]
    public int TimeoutSeconds { get; init; } = 120;
}

/// <summary>
/// <c>demo</c>: migrate, start a demo downstream and a worker, send mixed traffic (mostly successes, some that
/// need a retry after a 503 with Retry-After, a few rejected with 422), wait until every request is terminal,
/// then print a summary of the outcomes.
/// </summary>
internal sealed class DemoCommand : AsyncCommand<DemoSettings>
{
    public override Task<int> ExecuteAsync(CommandContext context, DemoSettings settings, CancellationToken cancellationToken) =>
        CommandRunner.GuardAsync(async () =>
        {
            await using var downstream = await DemoDownstream.StartAsync(cancellationToken);
            string[] demoConfig =
            [
                $"--Dispatcher:Destinations:demo:BaseUrl={downstream.BaseUrl}",
                "--Dispatcher:Destinations:demo:MaxConcurrency=32",
                "--Dispatcher:Destinations:demo:RateLimit:PermitsPerSecond=500",
                "--Dispatcher:Destinations:demo:Retry:BaseDelay=00:00:00.200",
                "--Dispatcher:Logging:Level=Error",
                "--Dispatcher:Logging:Format=text",
            ];
            var builder = DispatcherHostBuilder.Create(settings.Config, [.. demoConfig, .. CliOverrides.Values], quietLogs: false);
            builder.AddDispatcherWorker();
            await using var app = builder.Build();
            app.MapAdminEndpoints();
            await MigrateCommand.MigrateAsync(app.Services, cancellationToken);
            await app.StartAsync(cancellationToken);
            AnsiConsole.MarkupLine($"Worker running; demo downstream at [blue]{downstream.BaseUrl}[/]; metrics at [blue]{Markup.Escape(string.Join(" ", app.Urls))}/metrics[/]");

            var time = app.Services.GetRequiredService<TimeProvider>();
            var started = time.GetTimestamp();
            var ids = await SendTrafficAsync(app, settings.Count, cancellationToken);
            var summary = await WaitForOutcomesAsync(app, ids, TimeSpan.FromSeconds(settings.TimeoutSeconds), cancellationToken);
            var elapsed = time.GetElapsedTime(started);
            await app.StopAsync(CancellationToken.None);

            var table = new Table().Title("Demo outcomes").AddColumns("State", "Reason", "Requests");
            foreach (var row in summary.OrderBy(r => r.State).ThenBy(r => r.Reason))
                table.AddRow(row.State, row.Reason ?? "-", row.Count.ToString());
            AnsiConsole.Write(table);
            var terminal = summary.Where(r => r.State is nameof(DispatchState.Succeeded) or nameof(DispatchState.DeadLettered)).Sum(r => r.Count);
            AnsiConsole.MarkupLine($"{terminal} of {ids.Count} requests terminal in {elapsed.TotalSeconds:0.0} s; " +
                $"{downstream.Calls} downstream calls. Inspect one: [blue]dispatches show {ids[0]}[/]");
            return terminal == ids.Count ? 0 : 1;
        });

    private static async Task<List<Guid>> SendTrafficAsync(WebApplication app, int count, CancellationToken cancellationToken)
    {
        var endpoint = await app.Services.GetRequiredService<IBus>().GetSendEndpoint(new Uri("queue:dispatch-requests"));
        var ids = new List<Guid>(count);
        for (var i = 0; i < count; i++)
        {
            var path = (i % 20) switch { 0 => "/reject", 1 or 2 or 3 => "/flaky", _ => "/orders" };
            var request = new DispatchRequest
            {
                RequestId = Guid.NewGuid(),
                Destination = "demo",
                Path = path,
                Body = $$"""{"order":{{i}},"amount":{{(i % 7) + 1}}}""",
                Metadata = new Dictionary<string, string> { ["demo"] = "true" },
            };
            await endpoint.Send(request, cancellationToken);
            ids.Add(request.RequestId);
        }
        return ids;
    }

    private sealed record SummaryRow(string State, string? Reason, int Count);

    private static async Task<List<SummaryRow>> WaitForOutcomesAsync(WebApplication app, List<Guid> ids, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var time = app.Services.GetRequiredService<TimeProvider>();
        var deadline = time.GetUtcNow() + timeout;
        List<SummaryRow> summary = [];
        await AnsiConsole.Progress().StartAsync(async ctx =>
        {
            var task = ctx.AddTask("Dispatching", maxValue: ids.Count);
            while (time.GetUtcNow() < deadline)
            {
                await using (var scope = app.Services.CreateAsyncScope())
                {
                    var db = scope.ServiceProvider.GetRequiredService<DispatcherDbContext>();
                    summary = (await db.Dispatches.Where(d => ids.Contains(d.RequestId))
                            .GroupBy(d => new { d.State, d.Reason })
                            .Select(g => new { g.Key.State, g.Key.Reason, Count = g.Count() })
                            .ToListAsync(cancellationToken))
                        .Select(g => new SummaryRow(g.State.ToString(), g.Reason, g.Count)).ToList();
                }
                var terminal = summary.Where(r => r.State is nameof(DispatchState.Succeeded) or nameof(DispatchState.DeadLettered)).Sum(r => r.Count);
                task.Value = terminal;
                if (terminal == ids.Count)
                    break;
                await Task.Delay(TimeSpan.FromMilliseconds(250), time, cancellationToken);
            }
        });
        return summary;
    }
}
