using System.Text.RegularExpressions;
using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Tests.Infrastructure;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed partial class ObservabilityTests(ServicesFixture services)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_traceparent_set_by_the_producer_reaches_the_downstream_request_and_the_event()
    {
        await using var s = await Scenario.StartAsync(services);
        const string envelopeTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
        const string plainTrace = "0af7651916cd43dd8448eb211c80319c";
        var viaEnvelope = s.NewRequest("/traced/envelope");
        var viaPlainJson = s.NewRequest("/traced/plain");

        await s.Bus.SendEnvelopeAsync(s.Queue, viaEnvelope, $"00-{envelopeTrace}-00f067aa0ba902b7-01");
        await s.Bus.PublishPlainJsonAsync(s.Queue, DispatcherJson.Serialize(viaPlainJson), traceParent: $"00-{plainTrace}-b7ad6b7169203331-01");
        await Eventually.TrueAsync(() => s.Bus.EventCount(viaEnvelope.RequestId) == 1 && s.Bus.EventCount(viaPlainJson.RequestId) == 1,
            Timeout, "both events");

        var calls = s.Downstream.Calls.ToDictionary(c => c.PathAndQuery);
        AssertChildOf(envelopeTrace, "00f067aa0ba902b7", calls["/traced/envelope"].Headers["traceparent"]);
        AssertChildOf(plainTrace, "b7ad6b7169203331", calls["/traced/plain"].Headers["traceparent"]);
        Assert.Contains(envelopeTrace, s.Bus.Events[viaEnvelope.RequestId].Single().TraceParent, StringComparison.Ordinal);
        Assert.Contains(plainTrace, s.Bus.Events[viaPlainJson.RequestId].Single().TraceParent, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_request_without_trace_context_still_sends_a_valid_traceparent()
    {
        await using var s = await Scenario.StartAsync(services);
        var request = s.NewRequest();
        await s.SendAsync(request);
        await s.WaitForTerminalAsync([request.RequestId], Timeout);
        Assert.Matches(TraceParentPattern(), Assert.Single(s.Downstream.Calls).Headers["traceparent"]);
    }

    [Fact]
    public async Task Publishing_the_event_is_a_producer_span_in_the_dispatch_trace_when_a_tracer_listens()
    {
        const string trace = "5bf92f3577b34da6a3ce929d0e0e4737";
        var spans = new System.Collections.Concurrent.ConcurrentQueue<System.Diagnostics.Activity>();
        using var listener = new System.Diagnostics.ActivityListener
        {
            ShouldListenTo = source => source.Name == Worker.Observability.DispatchTracing.SourceName,
            Sample = (ref System.Diagnostics.ActivityCreationOptions<System.Diagnostics.ActivityContext> _) => System.Diagnostics.ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a =>
            {
                if (a.TraceId.ToHexString() == trace)
                    spans.Enqueue(a);
            },
        };
        System.Diagnostics.ActivitySource.AddActivityListener(listener);
        await using var s = await Scenario.StartAsync(services);
        var request = s.NewRequest("/traced/publish");
        await s.Bus.SendEnvelopeAsync(s.Queue, request, $"00-{trace}-00f067aa0ba902b7-01");
        await Eventually.TrueAsync(() => s.Bus.EventCount(request.RequestId) == 1, Timeout, "the event");
        var received = s.Bus.Events[request.RequestId].Single();

        await Eventually.TrueAsync(() => spans.Any(a => a.Kind == System.Diagnostics.ActivityKind.Producer), Timeout, "the publish span");
        var publish = spans.Single(a => a.Kind == System.Diagnostics.ActivityKind.Producer);
        Assert.Equal("Dispatcher.Contracts:DispatchCompleted publish", publish.DisplayName);
        Assert.Equal(received.MessageId!.Value.ToString(), publish.GetTagItem("messaging.message.id"));
        Assert.Equal("Dispatcher.Contracts:DispatchCompleted", publish.GetTagItem("messaging.destination.name"));
        // Under the dispatch's trace: the attempt's span (a client span of the same trace) is there too.
        Assert.Contains(spans, a => a.Kind == System.Diagnostics.ActivityKind.Client);
    }

    private static void AssertChildOf(string traceId, string parentSpanId, string traceParent)
    {
        var match = TraceParentPattern().Match(traceParent);
        Assert.True(match.Success, $"'{traceParent}' is not a W3C traceparent");
        Assert.Equal(traceId, match.Groups["trace"].Value);
        Assert.NotEqual(parentSpanId, match.Groups["span"].Value);
    }

    [GeneratedRegex("^00-(?<trace>[0-9a-f]{32})-(?<span>[0-9a-f]{16})-0[01]$")]
    private static partial Regex TraceParentPattern();
}
