using Dispatcher.Persistence.DeadLetters;
using Dispatcher.Worker.DeadLetters;
using Dispatcher.Worker.Dispatching;

namespace Dispatcher.Worker.Admin;

/// <summary>Body of <c>POST /api/dead-letters/replay</c>: ids, or filters, or all; optionally a dry run and a rate.</summary>
public sealed record ReplayRequest(
    Guid[]? RequestIds, string? Destination, string? Reason, DateTimeOffset? Since, DateTimeOffset? Until,
    bool All = false, bool DryRun = false, double? Rate = null);

internal static class DeadLetterEndpoints
{
    public static void MapDeadLetterEndpoints(this RouteGroupBuilder api)
    {
        api.MapGet("/dead-letters", async (string? destination, string? reason, DateTimeOffset? since, DateTimeOffset? until, int? limit,
            DeadLetterStore store, CancellationToken ct) =>
        {
            var filter = new DeadLetterFilter { Destination = destination, Reason = reason, Since = since, Until = until };
            var total = await store.CountAsync(filter, ct);
            var groups = await store.GroupAsync(filter, 50, ct);
            var items = await store.ListAsync(filter, Math.Clamp(limit ?? 50, 1, 1000), ct);
            return Results.Json(new { total, groups, items }, DispatcherJson.Options);
        });

        api.MapPost("/dead-letters/replay", async (ReplayRequest request, DeadLetterReplayer replayer, CancellationToken ct) =>
        {
            var hasFilter = request.RequestIds is { Length: > 0 } || request.Destination is not null || request.Reason is not null
                || request.Since is not null || request.Until is not null;
            if (hasFilter == request.All)
            {
                return Results.Problem(
                    "Say what to replay: requestIds, or destination/reason/since/until filters, or all: true (not both).",
                    statusCode: StatusCodes.Status400BadRequest);
            }
            if (request.Rate is <= 0)
                return Results.Problem("rate must be greater than 0.", statusCode: StatusCodes.Status400BadRequest);
            var filter = new DeadLetterFilter
            {
                RequestIds = request.RequestIds is { Length: > 0 } ? request.RequestIds : null,
                Destination = request.Destination,
                Reason = request.Reason,
                Since = request.Since,
                Until = request.Until,
            };
            var summary = await replayer.ReplayAsync(filter, request.Rate, request.DryRun, null, ct);
            return Results.Json(summary, DispatcherJson.Options);
        });
    }
}
