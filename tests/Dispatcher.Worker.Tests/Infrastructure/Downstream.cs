using System.Collections.Concurrent;
using Microsoft.AspNetCore.Http;

namespace Dispatcher.Worker.Tests.Infrastructure;

/// <summary>One call the downstream received.</summary>
public sealed record RecordedCall(string Method, string PathAndQuery, string? IdempotencyKey, IReadOnlyDictionary<string, string> Headers, string Body, DateTimeOffset At)
{
    /// <summary>The status the handler answered with, once it has (0 while in progress or when the connection was dropped).</summary>
    public int Status { get; set; }
}

/// <summary>
/// The partner API of a test: Kestrel on loopback, recording every call, answering with <see cref="Handler"/>.
/// </summary>
public sealed class Downstream : IAsyncDisposable
{
    private readonly WebApplication _app;

    private Downstream(WebApplication app) => _app = app;

    public Func<HttpContext, Task> Handler { get; set; } = static _ => Task.CompletedTask;

    public ConcurrentQueue<RecordedCall> Calls { get; } = new();

    public Uri BaseUrl { get; private set; } = null!;

    public static async Task<Downstream> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var downstream = new Downstream(app);
        app.Run(async context =>
        {
            using var reader = new StreamReader(context.Request.Body);
            var body = await reader.ReadToEndAsync(context.RequestAborted);
            var call = new RecordedCall(
                context.Request.Method,
                context.Request.Path + context.Request.QueryString,
                context.Request.Headers["Idempotency-Key"].FirstOrDefault(),
                context.Request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase),
                body,
                DateTimeOffset.UtcNow);
            downstream.Calls.Enqueue(call);
            await downstream.Handler(context);
            call.Status = context.RequestAborted.IsCancellationRequested ? 0 : context.Response.StatusCode;
        });
        await app.StartAsync();
        downstream.BaseUrl = new Uri(app.Urls.First());
        return downstream;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
