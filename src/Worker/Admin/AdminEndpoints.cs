using System.Security.Cryptography;
using System.Text;
using Dispatcher.Persistence;
using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Inspection;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Prometheus;

namespace Dispatcher.Worker.Admin;

/// <summary>Health, metrics and the admin API (behind the bearer token; off when no token is configured).</summary>
internal static class AdminEndpoints
{
    public static void AddAdminEndpoints(this WebApplicationBuilder builder)
    {
        var urls = builder.Configuration[$"{DispatcherOptions.SectionName}:Admin:Urls"] ?? DispatcherDefaults.AdminUrls;
        var list = urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        builder.WebHost.UseUrls(list);
        // The slim host (DispatcherHostBuilder) configures HTTPS only on request: an https admin URL, or Kestrel's
        // own configuration section (endpoints, certificates).
        if (list.Any(u => u.StartsWith("https:", StringComparison.OrdinalIgnoreCase))
            || builder.Configuration.GetSection("Kestrel").Exists())
            builder.WebHost.UseKestrelHttpsConfiguration();
        builder.Services.AddHealthChecks().AddCheck<PostgresHealthCheck>("postgres", tags: ["ready"]);
    }

    public static void MapAdminEndpoints(this WebApplication app)
    {
        app.MapGet("/health/live", () => Results.Ok(new { status = "Healthy" }));
        app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = c => c.Tags.Contains("ready") });
        app.MapMetrics("/metrics");

        var token = app.Configuration[$"{DispatcherOptions.SectionName}:Admin:Token"];
        if (string.IsNullOrEmpty(token))
            return;
        var expected = SHA256.HashData(Encoding.UTF8.GetBytes(token));
        var api = app.MapGroup("/api").AddEndpointFilter(async (context, next) =>
        {
            var header = context.HttpContext.Request.Headers.Authorization.ToString();
            var presented = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim() : "";
            // Compare digests in constant time: no timing oracle on the token.
            return CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(presented)), expected)
                ? await next(context)
                : Results.Unauthorized();
        });
        api.MapGet("/dispatches/{id:guid}", async (Guid id, DispatchViews views, CancellationToken ct) =>
            await views.GetAsync(id, ct) is { } view ? Results.Json(view, Dispatching.DispatcherJson.Options) : Results.NotFound());
        api.MapDeadLetterEndpoints();
        api.MapGet("/status", async (Status.StatusReporter reporter, CancellationToken ct) =>
            Results.Json(await reporter.BuildAsync(ct), Dispatching.DispatcherJson.Options));
    }

    private sealed class PostgresHealthCheck(DispatcherDataSources dataSources) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            try
            {
                await using var cmd = dataSources.Durable.CreateCommand("SELECT 1");
                await cmd.ExecuteScalarAsync(cancellationToken);
                return HealthCheckResult.Healthy();
            }
            catch (Exception ex)
            {
                return HealthCheckResult.Unhealthy("PostgreSQL is unreachable.", ex);
            }
        }
    }
}
