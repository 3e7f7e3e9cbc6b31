using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Dispatcher.Bench;

/// <summary>
/// An instantly answering downstream (optionally with a fixed latency), in a child process so that its CPU
/// is not counted as the worker's.
/// <list type="bullet">
/// <item><c>/delay/{ms}</c>: answers after that latency (the wait ends early when the caller goes away), with the
/// latency as served in a <c>Server-Timing: app;dur=</c> header.</item>
/// <item><c>/status/{code}</c>: answers at once with that status (a destination that is down).</item>
/// <item><c>/down-until-up/{key}</c>: 503 at once until <c>/__up/{key}</c> was called, then 200 (a destination that recovers).</item>
/// <item><c>/record/{key}[/delay/{ms}]</c>: the same, and records the arrival time of the call under <c>key</c>.</item>
/// <item><c>/__stats/{key}[?times=0]</c>: what was recorded under <c>key</c>: the child's clock now, the call count,
/// the most calls in flight at once and (unless <c>times=0</c>) every arrival time, all in ms since the child started.</item>
/// <item>anything else: answers at once.</item>
/// </list>
/// </summary>
internal sealed class Downstream : IAsyncDisposable
{
    public const string ChildArgument = "--downstream-child";
    private readonly Process _process;
    private readonly HttpClient _http;

    private Downstream(Process process, Uri baseUrl)
    {
        _process = process;
        BaseUrl = baseUrl;
        _http = new HttpClient { BaseAddress = baseUrl, Timeout = TimeSpan.FromSeconds(30) };
    }

    public Uri BaseUrl { get; }

    public int ProcessId => _process.Id;

    public static async Task<Downstream> StartChildAsync()
    {
        var info = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
        var self = typeof(Downstream).Assembly.Location;
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet")
            info.ArgumentList.Add(self);
        info.ArgumentList.Add(ChildArgument);
        var process = Process.Start(info)!;
        var url = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60))
            ?? throw new InvalidOperationException("The downstream did not start.");
        return new Downstream(process, new Uri(url));
    }

    /// <summary>From now on <c>/down-until-up/{key}</c> answers 200.</summary>
    public async Task BringUpAsync(string key)
    {
        using var response = await _http.GetAsync($"/__up/{key}");
        response.EnsureSuccessStatusCode();
    }

    /// <summary>What the child recorded under <paramref name="key"/>.</summary>
    public async Task<Stats> GetStatsAsync(string key, bool withTimes = true)
    {
        using var response = await _http.GetAsync($"/__stats/{key}{(withTimes ? "" : "?times=0")}");
        response.EnsureSuccessStatusCode();
        using var json = JsonDocument.Parse(await response.Content.ReadAsStreamAsync());
        var root = json.RootElement;
        var times = root.TryGetProperty("times", out var t) ? t.EnumerateArray().Select(e => e.GetDouble()).ToArray() : [];
        Array.Sort(times);
        return new Stats(root.GetProperty("now").GetDouble(), root.GetProperty("count").GetInt32(), root.GetProperty("maxInFlight").GetInt32(), times,
            root.GetProperty("inFlightArea").GetDouble());
    }

    /// <param name="Now">The child's clock (ms since it started).</param>
    /// <param name="Times">Arrival times, sorted, in ms on the child's clock.</param>
    /// <param name="InFlightArea">Calls in flight integrated over the child's clock up to <paramref name="Now"/> (call-ms).</param>
    public sealed record Stats(double Now, int Count, int MaxInFlight, double[] Times, double InFlightArea)
    {
        /// <summary>Calls in flight on average, time-weighted, from <paramref name="earlier"/> to this snapshot.</summary>
        public double MeanInFlightSince(Stats earlier) => Now > earlier.Now ? (InFlightArea - earlier.InFlightArea) / (Now - earlier.Now) : 0;

        /// <summary>How long a call stayed at the downstream on average (arrival to answer), over the calls that arrived since <paramref name="earlier"/>.</summary>
        public double MeanServedMsSince(Stats earlier) => Count > earlier.Count ? (InFlightArea - earlier.InFlightArea) / (Count - earlier.Count) : 0;
    }

    public static async Task<int> RunChildAsync(string[] args)
    {
        _ = args;
        var clock = Stopwatch.StartNew();
        var recorders = new ConcurrentDictionary<string, Recorder>(StringComparer.Ordinal);
        var up = new ConcurrentDictionary<string, bool>(StringComparer.Ordinal);
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        app.Run(async context =>
        {
            var path = context.Request.Path.Value ?? "";
            if (path.StartsWith("/__stats/", StringComparison.Ordinal))
            {
                var withTimes = context.Request.Query["times"] != "0";
                var recorder = recorders.GetOrAdd(path[9..], _ => new Recorder(clock));
                context.Response.ContentType = "application/json";
                await context.Response.WriteAsync(recorder.ToJson(withTimes));
                return;
            }

            if (path.StartsWith("/__up/", StringComparison.Ordinal))
            {
                up[path[6..]] = true;
                context.Response.StatusCode = 204;
                return;
            }
            if (path.StartsWith("/down-until-up/", StringComparison.Ordinal))
            {
                context.Response.StatusCode = up.ContainsKey(path[15..]) ? 200 : 503;
                return;
            }

            Recorder? recording = null;
            if (path.StartsWith("/record/", StringComparison.Ordinal))
            {
                var end = path.IndexOf('/', 8);
                recording = recorders.GetOrAdd(end < 0 ? path[8..] : path[8..end], _ => new Recorder(clock));
                recording.Arrived();
                path = end < 0 ? "" : path[end..];
            }
            try
            {
                // /status/{code}: that status at once. /delay/{ms}: answer after that latency; anything else: at once.
                if (path.StartsWith("/status/", StringComparison.Ordinal) && int.TryParse(path.AsSpan(8), out var status))
                {
                    context.Response.StatusCode = status;
                    return;
                }
                if (path.StartsWith("/delay/", StringComparison.Ordinal) && int.TryParse(path.AsSpan(7), out var ms))
                {
                    var waited = Stopwatch.GetTimestamp();
                    try
                    {
                        await Task.Delay(ms, context.RequestAborted);
                    }
                    catch (OperationCanceledException)
                    {
                        return; // the caller gave up (its timeout): nothing to answer
                    }
                    // The latency as served (a timer overshoots what was asked), for the overhead scenario.
                    context.Response.Headers["Server-Timing"] =
                        $"app;dur={Stopwatch.GetElapsedTime(waited).TotalMilliseconds.ToString("0.000", CultureInfo.InvariantCulture)}";
                }
                context.Response.StatusCode = 200;
                context.Response.ContentType = "application/json";
                await context.Response.WriteAsync("{\"ok\":true}");
            }
            finally
            {
                recording?.Left();
            }
        });
        await app.StartAsync();
        Console.WriteLine(app.Urls.First());
        await app.WaitForShutdownAsync();
        return 0;
    }

    /// <summary>One key's calls. Times are read from the shared clock under the lock, so they are in order.</summary>
    private sealed class Recorder(Stopwatch clock)
    {
        private readonly Lock _lock = new();
        private readonly List<double> _times = [];
        private int _inFlight;
        private int _maxInFlight;
        private double _lastChange;
        private double _inFlightArea; // calls in flight integrated over time (call-ms), up to _lastChange

        public void Arrived()
        {
            lock (_lock)
            {
                var at = clock.Elapsed.TotalMilliseconds;
                _inFlightArea += _inFlight * (at - _lastChange);
                _lastChange = at;
                _times.Add(at);
                _maxInFlight = Math.Max(_maxInFlight, ++_inFlight);
            }
        }

        public void Left()
        {
            lock (_lock)
            {
                var at = clock.Elapsed.TotalMilliseconds;
                _inFlightArea += _inFlight * (at - _lastChange);
                _lastChange = at;
                _inFlight--;
            }
        }

        public string ToJson(bool withTimes)
        {
            var sb = new StringBuilder();
            lock (_lock)
            {
                var now = clock.Elapsed.TotalMilliseconds;
                // The area up to now: two snapshots give the mean in flight between them, and the mean time per call.
                var area = _inFlightArea + _inFlight * (now - _lastChange);
                sb.Append(CultureInfo.InvariantCulture,
                    $"{{\"now\":{now:0.###},\"count\":{_times.Count},\"maxInFlight\":{_maxInFlight},\"inFlightArea\":{area:0.###}");
                if (withTimes)
                {
                    sb.Append(",\"times\":[");
                    for (var i = 0; i < _times.Count; i++)
                        sb.Append(i == 0 ? "" : ",").Append(_times[i].ToString("0.###", CultureInfo.InvariantCulture));
                    sb.Append(']');
                }
            }
            return sb.Append('}').ToString();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        _process.Kill();
        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}
