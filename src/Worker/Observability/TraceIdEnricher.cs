using System.Diagnostics;
using Serilog.Core;
using Serilog.Events;

namespace Dispatcher.Worker.Observability;

/// <summary>Adds the W3C TraceId of the current activity to every log event.</summary>
internal sealed class TraceIdEnricher : ILogEventEnricher
{
    public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory)
    {
        if (Activity.Current is { } activity && !logEvent.Properties.ContainsKey("TraceId"))
            logEvent.AddPropertyIfAbsent(new LogEventProperty("TraceId", new ScalarValue(activity.TraceId.ToHexString())));
    }
}
