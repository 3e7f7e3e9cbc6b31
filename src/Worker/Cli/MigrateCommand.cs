using Dispatcher.Persistence;
using Dispatcher.Worker.Hosting;
using Microsoft.EntityFrameworkCore;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Dispatcher.Worker.Cli;

/// <summary><c>migrate</c>: create or upgrade the schema, then exit.</summary>
internal sealed class MigrateCommand : AsyncCommand<CliSettings>
{
    public override Task<int> ExecuteAsync(CommandContext context, CliSettings settings, CancellationToken cancellationToken) =>
        CommandRunner.GuardAsync(async () =>
        {
            var builder = DispatcherHostBuilder.Create(settings.Config, CliOverrides.Values, quietLogs: true);
            await using var app = builder.Build();
            var applied = await MigrateAsync(app.Services, cancellationToken);
            AnsiConsole.MarkupLine(applied.Count == 0
                ? "Schema is up to date."
                : $"Applied {applied.Count} migration(s): {Markup.Escape(string.Join(", ", applied))}");
            return 0;
        });

    public static async Task<List<string>> MigrateAsync(IServiceProvider services, CancellationToken cancellationToken)
    {
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<DispatcherDbContext>();
        var pending = (await db.Database.GetPendingMigrationsAsync(cancellationToken)).ToList();
        await db.Database.MigrateAsync(cancellationToken);
        return pending;
    }
}
