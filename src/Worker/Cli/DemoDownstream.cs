using System.Collections.Concurrent;

namespace Dispatcher.Worker.Cli;

/// <summary>
/// A partner API for the demo, on loopback: <c>/orders</c> answers 200 after a short delay, <c>/flaky</c> answers
/// 503 with Retry-After to the first attempt of each request and 200 to the next, <c>/reject</c> answers 422.
/// </summary>
internal sealed class DemoDownstream : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentDictionary<string, int> _attempts = new();

    private DemoDownstream(WebApplication app) => _app = app;

    public Uri BaseUrl { get; private set; } = null!;

    public int Calls => _attempts.Values.Sum();

    public static async Task<DemoDownstream> StartAsync(CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var demo = new DemoDownstream(app);
        app.MapPost("/orders", async (HttpRequest request) =>
        {
            demo.Count(request);
            await Task.Delay(Random.Shared.Next(5, 40));
            return Results.Ok(new { accepted = true });
        });
        app.MapPost("/flaky", (HttpRequest request, HttpResponse response) =>
        {
            if (demo.Count(request) == 1)
            {
                response.Headers.RetryAfter = "1";
                return Results.StatusCode(503);
            }
            return Results.Ok(new { accepted = true, afterRetry = true });
        });
        app.MapPost("/reject", (HttpRequest request) =>
        {
            demo.Count(request);
            return Results.UnprocessableEntity(new { error = "amount must be positive" });
        });
        await app.StartAsync(cancellationToken);
        demo.BaseUrl = new Uri(app.Urls.First());
        return demo;
    }

    private int Count(HttpRequest request) =>
        _attempts.AddOrUpdate(request.Headers["Idempotency-Key"].ToString(), 1, (_, n) => n + 1);

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
