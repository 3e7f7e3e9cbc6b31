using Dispatcher.Worker.Configuration;
using MassTransit.Logging;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Dispatcher.Worker.Observability;

internal static class TracingRegistration
{
    /// <summary>
    /// OpenTelemetry tracing of MassTransit and the Dispatcher attempt spans, when <c>Dispatcher:Tracing:Exporter</c>
    /// is console or otlp. With none (the default) no tracer runs; trace context is still propagated.
    /// </summary>
    public static void AddDispatcherTracing(this IHostApplicationBuilder builder)
    {
        var tracing = builder.Configuration.GetSection($"{DispatcherOptions.SectionName}:Tracing").Get<TracingOptions>() ?? new TracingOptions();
        if (tracing.Exporter == "none")
            return;
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("dispatcher-worker", serviceInstanceId: $"{Environment.MachineName}:{Environment.ProcessId}"))
            .WithTracing(t =>
            {
                t.AddSource(DispatchTracing.SourceName, DiagnosticHeaders.DefaultListenerName);
                if (tracing.Exporter == "console")
                    t.AddConsoleExporter();
                else
                    t.AddOtlpExporter(o =>
                    {
                        if (tracing.OtlpEndpoint is not null)
                            o.Endpoint = tracing.OtlpEndpoint;
                    });
            });
    }
}
