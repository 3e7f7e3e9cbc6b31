using Dispatcher.Persistence;
using Dispatcher.Persistence.Dispatches;
using Dispatcher.Persistence.DeadLetters;
using Dispatcher.Persistence.Outbox;
using Dispatcher.Persistence.Status;
using Dispatcher.Persistence.RateLimiting;
using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Observability;
using Microsoft.EntityFrameworkCore;
using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace Dispatcher.Worker.Hosting;

/// <summary>What every command shares: configuration, logging, PostgreSQL.</summary>
internal static class DispatcherHostBuilder
{
    public const string PostgresKey = "ConnectionStrings:Postgres";

    public static WebApplicationBuilder Create(string? configFile, string[] overrides, bool quietLogs)
    {
        // The slim builder: Kestrel without IIS integration, HTTP/3 (QUIC) or regex route constraints, none of
        // which the worker uses; HTTPS is added when an admin URL asks for it (AdminEndpoints). Measured: a few MB
        // less resident memory per worker process (docs/benchmarks.md).
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ContentRootPath = AppContext.BaseDirectory,
            Args = [],
        });
        DispatcherConfiguration.Apply(builder.Configuration, builder.Environment.EnvironmentName, configFile, overrides);
        builder.AddDispatcherLogging(quietLogs);
        builder.AddDispatcherPersistence();
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddOptions<DispatcherOptions>().BindConfiguration(DispatcherOptions.SectionName);
        builder.Services.AddSingleton(sp => new Redactor(
            sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<DispatcherOptions>>().Value.RedactedHeaders));
        return builder;
    }

    public static void AddDispatcherPersistence(this IHostApplicationBuilder builder)
    {
        var connectionString = builder.Configuration.GetConnectionString("Postgres");
        if (string.IsNullOrWhiteSpace(connectionString))
            throw new InvalidOperationException($"{PostgresKey} is required (an Npgsql connection string).");
        builder.Services.AddSingleton(new DispatcherDataSources(connectionString));
        builder.Services.AddDbContext<DispatcherDbContext>((sp, o) =>
            o.UseNpgsql(sp.GetRequiredService<DispatcherDataSources>().Durable));
        builder.Services.AddSingleton<DispatchStore>();
        builder.Services.AddSingleton<OutboxStore>();
        builder.Services.AddSingleton<RateLimitStore>();
        builder.Services.AddSingleton<DeadLetterStore>();
        builder.Services.AddSingleton<StatusStore>();
    }

    /// <summary>
    /// Serilog as the only provider: readable text, or compact JSON (<c>Dispatcher:Logging:Format</c> = json, or
    /// auto in Production). CLI commands log warnings only, to stderr, so their output stays clean.
    /// </summary>
    public static void AddDispatcherLogging(this IHostApplicationBuilder builder, bool quiet)
    {
        var format = builder.Configuration["Dispatcher:Logging:Format"] ?? "auto";
        var json = !quiet && (format.Equals("json", StringComparison.OrdinalIgnoreCase)
            || (format.Equals("auto", StringComparison.OrdinalIgnoreCase) && builder.Environment.IsProduction() && Console.IsOutputRedirected));
        var level = Enum.TryParse<LogEventLevel>(builder.Configuration["Dispatcher:Logging:Level"], true, out var l) ? l : LogEventLevel.Information;
        if (quiet)
            level = LogEventLevel.Warning;

        builder.Services.AddSerilog(lc =>
        {
            lc.MinimumLevel.Is(level)
                .MinimumLevel.Override("Microsoft", LogEventLevel.Warning)
                .MinimumLevel.Override("Microsoft.Hosting.Lifetime", quiet ? LogEventLevel.Warning : LogEventLevel.Information)
                .MinimumLevel.Override("MassTransit", LogEventLevel.Error)
                // Failed commands surface as exceptions where they matter; EF Core's own error line for the
                // first look at a missing migrations table is noise.
                .MinimumLevel.Override("Microsoft.EntityFrameworkCore.Database.Command", LogEventLevel.Fatal)
                .MinimumLevel.Override("System.Net.Http", LogEventLevel.Warning)
                .Enrich.FromLogContext()
                .Enrich.With<TraceIdEnricher>();
            var stderr = quiet ? LogEventLevel.Verbose : (LogEventLevel?)null;
            if (json)
                lc.WriteTo.Console(new RenderedCompactJsonFormatter(), standardErrorFromLevel: stderr);
            else
                lc.WriteTo.Console(
                    outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {Message:lj} {Properties:j}{NewLine}{Exception}",
                    standardErrorFromLevel: stderr);
        });
    }
}
