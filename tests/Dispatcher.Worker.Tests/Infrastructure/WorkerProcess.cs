using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Dispatcher.Worker.Tests.Infrastructure;

/// <summary>
/// A real worker process (<c>dotnet Dispatcher.Worker.dll run</c>), for faults that only a process shows:
/// SIGKILL mid-flight, restart.
/// </summary>
public sealed class WorkerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private WorkerProcess(Process process, string adminUrl)
    {
        _process = process;
        AdminUrl = adminUrl;
    }

    public string AdminUrl { get; }

    public string Output
    {
        get
        {
            lock (_output)
                return _output.ToString();
        }
    }

    /// <summary>
    /// Starts <c>dispatcher run</c> and waits until <c>/health/ready</c> answers on its admin URL (plain HTTP on a free
    /// port, or <paramref name="scheme"/> https, read with <paramref name="readiness"/>, e.g. one that accepts a
    /// test certificate).
    /// </summary>
    public static async Task<WorkerProcess> StartAsync(IReadOnlyDictionary<string, string> settings, string scheme = "http", HttpMessageHandler? readiness = null)
    {
        var workerDll = Path.Combine(AppContext.BaseDirectory, "Dispatcher.Worker.dll");
        var adminUrl = $"{scheme}://127.0.0.1:{FreePort()}";
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(workerDll);
        info.ArgumentList.Add("run");
        info.Environment["Dispatcher__Admin__Urls"] = adminUrl;
        info.Environment["Dispatcher__Logging__Format"] = "text";
        foreach (var (k, v) in settings)
            info.Environment[k.Replace(":", "__", StringComparison.Ordinal)] = v;

        var process = Process.Start(info) ?? throw new InvalidOperationException("Could not start the worker process.");
        var worker = new WorkerProcess(process, adminUrl);
        process.OutputDataReceived += (_, e) => worker.Append(e.Data);
        process.ErrorDataReceived += (_, e) => worker.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var http = readiness is null ? new HttpClient() : new HttpClient(readiness, disposeHandler: false);
        await Eventually.TrueAsync(async () =>
        {
            if (process.HasExited)
                throw new InvalidOperationException($"The worker exited with {process.ExitCode}:\n{worker.Output}");
            try
            {
                return (await http.GetAsync($"{adminUrl}/health/ready")).StatusCode == HttpStatusCode.OK;
            }
            catch (HttpRequestException)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(60), "the worker process to be ready");
        return worker;
    }

    /// <summary>SIGKILL: no shutdown, no drain, no acknowledgement.</summary>
    public async Task KillAsync()
    {
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
    }

    /// <summary>SIGTERM: a graceful shutdown; waits for the process to exit and returns its exit code.</summary>
    public async Task<int> TerminateAsync(TimeSpan timeout)
    {
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            await kill.WaitForExitAsync();
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    private void Append(string? line)
    {
        if (line is null)
            return;
        lock (_output)
            _output.AppendLine(line);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}
