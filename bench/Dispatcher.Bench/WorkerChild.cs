using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Dispatcher.Bench;

/// <summary>
/// A real worker process, <c>dotnet Dispatcher.Worker.dll run</c> (the Worker's build that sits next to the bench),
/// configured through environment variables, with its admin HTTP on a free loopback port: its metrics are
/// scraped from <c>/metrics</c>, its memory read from <c>/proc/{pid}/status</c>.
/// </summary>
internal sealed class WorkerChild : IAsyncDisposable
{
    private static readonly ConcurrentDictionary<int, Process> Live = new();
    private readonly Process _process;
    private readonly HttpClient _http;
    private readonly Queue<string> _lastLines = new();

    private WorkerChild(Process process, string adminUrl)
    {
        _process = process;
        AdminUrl = adminUrl;
        _http = new HttpClient { BaseAddress = new Uri(adminUrl), Timeout = TimeSpan.FromSeconds(10) };
    }

    public string AdminUrl { get; }

    public int ProcessId => _process.Id;

    public static async Task<WorkerChild> StartAsync(BenchEnvironment env, string postgres, string queue, IReadOnlyDictionary<string, string> settings)
    {
        // DISPATCHER_BENCH_WORKER_DLL measures another build of the worker, e.g. a ReadyToRun publish. Only the scenarios
        // that run the worker as a child process (rate-accuracy, memory) use it: the others run it in the bench
        // process, from the bench's own build (compare builds there with a second build of the bench).
        var dll = Environment.GetEnvironmentVariable("DISPATCHER_BENCH_WORKER_DLL") is { Length: > 0 } other
            ? other
            : Path.Combine(AppContext.BaseDirectory, "Dispatcher.Worker.dll");
        if (!File.Exists(dll))
            throw new InvalidOperationException($"{dll} is missing: build the bench (it references the Worker project).");
        var adminUrl = $"http://127.0.0.1:{FreePort()}";
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(dll);
        info.ArgumentList.Add("run");
        info.Environment["ConnectionStrings__Postgres"] = postgres;
        info.Environment["ConnectionStrings__RabbitMq"] = env.RabbitMq;
        info.Environment["Dispatcher__Worker__QueueName"] = queue;
        info.Environment["Dispatcher__Admin__Urls"] = adminUrl;
        info.Environment["Dispatcher__Logging__Format"] = "text";
        info.Environment["Dispatcher__Logging__Level"] = "Warning";
        foreach (var (k, v) in settings)
            info.Environment[k.Replace(":", "__", StringComparison.Ordinal)] = v;

        var process = Process.Start(info) ?? throw new InvalidOperationException("Could not start the worker process.");
        Live[process.Id] = process;
        var child = new WorkerChild(process, adminUrl);
        process.OutputDataReceived += (_, e) => child.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => child.Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var deadline = Stopwatch.GetTimestamp() + (long)(60 * Stopwatch.Frequency);
        while (true)
        {
            if (process.HasExited)
                throw new InvalidOperationException($"The worker exited with {process.ExitCode}:\n{child.Output}");
            try
            {
                if ((await child._http.GetAsync("/health/ready")).StatusCode == HttpStatusCode.OK)
                    return child;
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
                // not listening yet
            }
            if (Stopwatch.GetTimestamp() > deadline)
            {
                await child.DisposeAsync();
                throw new InvalidOperationException($"The worker was not ready within 60 s:\n{child.Output}");
            }
            await Task.Delay(200);
        }
    }

    /// <summary>The last lines the worker wrote (warnings and errors only).</summary>
    public string Output
    {
        get
        {
            lock (_lastLines)
                return string.Join('\n', _lastLines);
        }
    }

    /// <summary>Current and peak resident set size in bytes (VmRSS, VmHWM).</summary>
    public (long Rss, long Peak) ReadMemory()
    {
        var status = ReadKilobytes($"/proc/{_process.Id}/status");
        return (status.GetValueOrDefault("VmRSS") * 1024, status.GetValueOrDefault("VmHWM") * 1024);
    }

    /// <summary>
    /// Resident memory split by kind, in bytes (<c>/proc/{pid}/smaps_rollup</c>): proportional set size (shared pages
    /// divided among the processes sharing them), anonymous (heaps, JIT), and file-backed pages shared with other
    /// processes (the runtime's and the application's DLLs, clean and reclaimable).
    /// </summary>
    public (long Pss, long Anonymous, long SharedFile) ReadMemoryKinds()
    {
        var rollup = ReadKilobytes($"/proc/{_process.Id}/smaps_rollup");
        return (rollup.GetValueOrDefault("Pss") * 1024, rollup.GetValueOrDefault("Anonymous") * 1024, rollup.GetValueOrDefault("Shared_Clean") * 1024);
    }

    private static Dictionary<string, long> ReadKilobytes(string path)
    {
        var values = new Dictionary<string, long>(StringComparer.Ordinal);
        try
        {
            foreach (var line in File.ReadLines(path))
            {
                var parts = line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length == 3 && parts[2] == "kB" && long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var kb))
                    values[parts[0].TrimEnd(':')] = kb;
            }
        }
        catch (IOException)
        {
            // exited
        }
        return values;
    }

    /// <summary>The worker's Prometheus metrics: series (name with labels, as exposed) to value.</summary>
    public async Task<Scrape> ScrapeAsync()
    {
        var text = await _http.GetStringAsync("/metrics");
        var series = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
                continue;
            var space = line.LastIndexOf(' ');
            if (space > 0 && double.TryParse(line.AsSpan(space + 1), NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
                series[line[..space]] = value;
        }
        return new Scrape(series);
    }

    public sealed record Scrape(IReadOnlyDictionary<string, double> Series)
    {
        /// <summary>Sum of the series of metric <paramref name="name"/> whose labels contain every one of <paramref name="labels"/> (<c>key="value"</c>).</summary>
        public double Sum(string name, params string[] labels) =>
            Series.Where(kv => (kv.Key == name || kv.Key.StartsWith(name + "{", StringComparison.Ordinal))
                    && labels.All(l => kv.Key.Contains(l, StringComparison.Ordinal)))
                .Sum(kv => kv.Value);
    }

    private void Keep(string? line)
    {
        if (line is null)
            return;
        lock (_lastLines)
        {
            _lastLines.Enqueue(line);
            while (_lastLines.Count > 40)
                _lastLines.Dequeue();
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Kills every worker process this bench started and has not disposed yet (a scenario over its time limit).</summary>
    public static void KillAll()
    {
        foreach (var process in Live.Values)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // already gone
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        Live.TryRemove(_process.Id, out _);
        _http.Dispose();
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            }
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
        _process.Dispose();
    }
}
