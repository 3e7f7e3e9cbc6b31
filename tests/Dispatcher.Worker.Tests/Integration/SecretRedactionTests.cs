using Dispatcher.Worker.Tests.Infrastructure;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed class SecretRedactionTests(ServicesFixture services)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_planted_secret_never_appears_in_logs_events_or_cli_output()
    {
        await using var s = await Scenario.StartAsync(services, new Dictionary<string, string>
        {
            ["Dispatcher:RedactedHeaders:0"] = "X-Partner-Secret",
            ["Dispatcher:Logging:Level"] = "Debug",
            ["Dispatcher:Logging:Format"] = "json",
        }, startWorker: false);
        s.Downstream.Handler = context =>
        {
            context.Response.Headers.SetCookie = "session=planted-cookie";
            context.Response.Headers["X-Partner-Secret"] = "planted-response-secret";
            context.Response.StatusCode = context.Request.Path == "/fail" ? 400 : 200;
            return Task.CompletedTask;
        };
        var secretHeaders = new Dictionary<string, string>
        {
            ["Authorization"] = "Bearer planted-token",
            ["X-Api-Key"] = "planted-key",
            ["Cookie"] = "sid=planted-sid",
            ["X-Partner-Secret"] = "planted-partner",
        };
        var ok = s.NewRequest("/ok") with { Headers = secretHeaders };
        var failed = s.NewRequest("/fail") with { Headers = secretHeaders };

        string logs;
        await using (var worker = await WorkerProcess.StartAsync(s.Settings))
        {
            await s.SendAsync(ok);
            await s.SendAsync(failed);
            await s.WaitForTerminalAsync([ok.RequestId, failed.RequestId], Timeout);
            await Eventually.TrueAsync(() => s.Bus.EventCount(ok.RequestId) == 1 && s.Bus.EventCount(failed.RequestId) == 1, Timeout, "both events");
            logs = worker.Output;
        }

        // The secrets did reach the partner...
        Assert.All(s.Downstream.Calls, c => Assert.Equal("Bearer planted-token", c.Headers["Authorization"]));
        // ...and appear nowhere else.
        Assert.Contains(failed.RequestId.ToString(), logs, StringComparison.Ordinal);
        Assert.Contains("TraceId", logs, StringComparison.Ordinal);
        Assert.DoesNotContain("planted", logs, StringComparison.Ordinal);
        var events = s.Bus.Events[ok.RequestId].Concat(s.Bus.Events[failed.RequestId]).Select(e => e.Event).ToList();
        Assert.All(events, e =>
        {
            Assert.Equal("[REDACTED]", e.ResponseHeaders!["Set-Cookie"]);
            Assert.Equal("[REDACTED]", e.ResponseHeaders!["X-Partner-Secret"]);
            Assert.DoesNotContain("planted", Worker.Dispatching.DispatcherJson.Serialize(e), StringComparison.Ordinal);
        });

        foreach (var command in new[] { new[] { "dispatches", "show", ok.RequestId.ToString(), "--json" },
                     ["dead-letters", "show", failed.RequestId.ToString(), "--json"], ["dead-letters", "list", "--json"] })
        {
            var output = await s.RunCliAsync(command, new Dictionary<string, string> { ["Dispatcher__RedactedHeaders__0"] = "X-Partner-Secret" });
            Assert.DoesNotContain("planted", output, StringComparison.Ordinal);
            if (command[1] == "show")
                Assert.Contains("[REDACTED]", output, StringComparison.Ordinal);
        }
    }
}
