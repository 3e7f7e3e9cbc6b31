using System.Diagnostics;

namespace Dispatcher.Bench;

/// <summary>
/// An instantly answering downstream (optionally with a fixed latency), in a child process so that its CPU
/// is not counted as the worker's.
/// </summary>
internal sealed class Downstream : IAsyncDisposable
{
    public const string ChildArgument = "--downstream-child";
    private readonly Process _process;

    private Downstream(Process process, Uri baseUrl)
    {
        _process = process;
        BaseUrl = baseUrl;
    }

    public Uri BaseUrl { get; }

    public static async Task<Downstream> StartChildAsync()
    {
        var info = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
        var self = typeof(Downstream).Assembly.Location;
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet")
            info.ArgumentList.Add(self);
        info.ArgumentList.Add(ChildArgument);
        var process = Process.Start(info)!;
        var url = await process.StandardOutput.ReadLineAsync() ?? throw new InvalidOperationException("The downstream did not start.");
        return new Downstream(process, new Uri(url));
    }

    public static async Task<int> RunChildAsync(string[] args)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        app.Run(async context =>
        {
            // /delay/{ms}: answer after that latency; anything else: at once.
            var path = context.Request.Path.Value ?? "";
            if (path.StartsWith("/delay/", StringComparison.Ordinal) && int.TryParse(path.AsSpan(7), out var ms))
                await Task.Delay(ms);
            context.Response.StatusCode = 200;
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync("{\"ok\":true}");
        });
        await app.StartAsync();
        Console.WriteLine(app.Urls.First());
        await app.WaitForShutdownAsync();
        return 0;
    }

    public async ValueTask DisposeAsync()
    {
        _process.Kill();
        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}
