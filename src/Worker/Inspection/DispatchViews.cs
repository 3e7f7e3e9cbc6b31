using System.Text.Json;
using Dispatcher.Contracts;
using Dispatcher.Persistence;
using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Observability;
using Microsoft.EntityFrameworkCore;

namespace Dispatcher.Worker.Inspection;

/// <summary>A dispatch as operators see it (CLI and API): secrets redacted.</summary>
public sealed record DispatchView(
    Guid RequestId,
    string Destination,
    string State,
    string? Reason,
    int Attempts,
    int Cycle,
    int? StatusCode,
    string? LastError,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt,
    DateTimeOffset? FirstAttemptAt,
    DateTimeOffset? NextAttemptAt,
    DateTimeOffset? CompletedAt,
    DispatchRequest? Request,
    IReadOnlyDictionary<string, string>? ResponseHeaders,
    string? ResponseBody,
    IReadOnlyList<AttemptView> History);

public sealed record AttemptView(int Cycle, int Number, DateTimeOffset StartedAt, double DurationMs, string Result, int? StatusCode, string? Error);

internal sealed class DispatchViews(IServiceScopeFactory scopes, Redactor redactor)
{
    public async Task<DispatchView?> GetAsync(Guid requestId, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<DispatcherDbContext>();
        var d = await db.Dispatches.AsNoTracking().FirstOrDefaultAsync(x => x.RequestId == requestId, cancellationToken);
        if (d is null)
            return null;
        var attempts = await db.Attempts.AsNoTracking()
            .Where(a => a.RequestId == requestId)
            .OrderBy(a => a.Cycle).ThenBy(a => a.Number).ThenBy(a => a.Id)
            .Select(a => new AttemptView(a.Cycle, a.Number, a.StartedAt, a.DurationMs, a.Result, a.StatusCode, a.Error))
            .ToListAsync(cancellationToken);

        DispatchRequest? request = null;
        try
        {
            request = DispatcherJson.Deserialize<DispatchRequest>(d.Request);
            request = request with { Headers = redactor.Redact(request.Headers) };
        }
        catch (JsonException)
        {
            // Stored as received; shown without the request if it cannot be read back.
        }
        var responseHeaders = d.ResponseHeaders is null
            ? null
            : redactor.Redact(DispatcherJson.Deserialize<Dictionary<string, string>>(d.ResponseHeaders));

        return new DispatchView(d.RequestId, d.Destination, d.State.ToString(), d.Reason, d.Attempts, d.Cycle, d.StatusCode,
            d.LastError, d.CreatedAt, d.UpdatedAt, d.FirstAttemptAt, d.NextAttemptAt, d.CompletedAt, request,
            responseHeaders, d.ResponseBody, attempts);
    }
}
