using System.Diagnostics;
using MassTransit;

namespace Dispatcher.Worker.Observability;

/// <summary>
/// W3C trace context from the producer's message to the downstream request and onto DispatchCompleted.
/// The parent comes from the consume activity (when a tracer listens to MassTransit), else the message's
/// <c>traceparent</c> header (any AMQP producer), else MassTransit's <c>MT-Activity-Id</c>; a request without one
/// starts a trace. Each downstream attempt is a child span: a real Activity on the <c>Dispatcher</c> source when
/// a tracer (OpenTelemetry) listens, otherwise just a fresh span id under the same trace id, so the partner sees
/// the producer's trace either way.
/// </summary>
internal static class DispatchTracing
{
    public const string SourceName = "Dispatcher";
    public static readonly ActivitySource Source = new(SourceName);

    /// <summary>The trace this message belongs to, as a W3C traceparent.</summary>
    public static string ParentOf(ConsumeContext context)
    {
        if (Activity.Current is { IdFormat: ActivityIdFormat.W3C, Id: { } current })
            return current;
        foreach (var header in (ReadOnlySpan<string>)["traceparent", "MT-Activity-Id"])
        {
            if (context.Headers.Get<string>(header) is { } value && ActivityContext.TryParse(value, null, out _))
                return value;
        }
        return Format(ActivityTraceId.CreateRandom(), ActivitySpanId.CreateRandom(), ActivityTraceFlags.Recorded);
    }

    /// <summary>Starts the span of one downstream attempt; <paramref name="traceParent"/> is what to send as its header.</summary>
    public static Activity? StartAttempt(string? parent, string destination, string method, out string? traceParent)
    {
        traceParent = null;
        if (parent is null || !ActivityContext.TryParse(parent, null, out var context))
            return null;
        var activity = Source.StartActivity($"{method} {destination}", ActivityKind.Client, context);
        traceParent = activity?.Id ?? Format(context.TraceId, ActivitySpanId.CreateRandom(), context.TraceFlags);
        return activity;
    }

    /// <summary>The span of publishing a DispatchCompleted event under its dispatch's trace; null when nobody listens.</summary>
    public static Activity? StartPublish(string? parent, string exchange, string? messageId)
    {
        if (!Source.HasListeners())
            return null;
        ActivityContext.TryParse(parent, null, out var context);
        var activity = Source.StartActivity($"{exchange} publish", ActivityKind.Producer, context);
        activity?.SetTag("messaging.system", "rabbitmq");
        activity?.SetTag("messaging.operation.type", "publish");
        activity?.SetTag("messaging.destination.name", exchange);
        activity?.SetTag("messaging.message.id", messageId);
        return activity;
    }

    /// <summary>The trace id of a traceparent, for logs.</summary>
    public static string? TraceId(string? traceParent) =>
        traceParent is { Length: >= 55 } ? traceParent.Substring(3, 32) : null;

    private static string Format(ActivityTraceId traceId, ActivitySpanId spanId, ActivityTraceFlags flags) =>
        $"00-{traceId.ToHexString()}-{spanId.ToHexString()}-{((int)flags):x2}";
}
