using Dispatcher.Worker.Admin;
using Dispatcher.Worker.Hosting;

namespace Dispatcher.Worker.Tests.Infrastructure;

/// <summary>A worker host in the test process, built exactly as <c>run</c> builds it, with test settings layered on.</summary>
public sealed class InProcessWorker : IAsyncDisposable
{
    private readonly WebApplication _app;

    private InProcessWorker(WebApplication app) => _app = app;

    public IServiceProvider Services => _app.Services;

    public string AdminUrl => _app.Urls.First();

    public static async Task<InProcessWorker> StartAsync(
        string postgres, string rabbitMq, string queue, IReadOnlyDictionary<string, string> settings, string? configFile = null)
    {
        var overrides = new Dictionary<string, string>
        {
            ["ConnectionStrings:Postgres"] = postgres,
            ["ConnectionStrings:RabbitMq"] = rabbitMq,
            ["Dispatcher:Worker:QueueName"] = queue,
            ["Dispatcher:Admin:Urls"] = "http://127.0.0.1:0",
            ["Dispatcher:Logging:Level"] = "Warning",
            ["Dispatcher:Logging:Format"] = "text",
        };
        foreach (var (k, v) in settings)
            overrides[k] = v;
        var builder = DispatcherHostBuilder.Create(configFile, [.. overrides.Select(kv => $"--{kv.Key}={kv.Value}")], quietLogs: false);
        builder.AddDispatcherWorker();
        var app = builder.Build();
        app.MapAdminEndpoints();
        await app.StartAsync();
        return new InProcessWorker(app);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
