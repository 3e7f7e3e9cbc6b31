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
            root.GetProperty("meanInFlight").GetDouble(), root.GetProperty("meanServedMs").GetDouble());
    }

    /// <param name="Now">The child's clock (ms since it started).</param>
    /// <param name="Times">Arrival times, sorted, in ms on the child's clock.</param>
    /// <param name="MeanInFlight">Calls in flight, time-weighted, from the first arrival to the last answer.</param>
    /// <param name="MeanServedMs">How long a call stayed at the downstream, on average (arrival to answer written).</param>
    public sealed record Stats(double Now, int Count, int MaxInFlight, double[] Times, double MeanInFlight, double MeanServedMs);

    public static async Task<int> RunChildAsync(string[] args)
    {
        _ = args;
        var clock = Stopwatch.StartNew();
        var recorders = new ConcurrentDictionary<string, Recorder>(StringComparer.Ordinal);
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
                var recorder = recorders.GetOrAdd(path[9..], _ => new Recorder());
                context.Response.ContentType = "application/json";
                await context.Response.WriteAsync(recorder.ToJson(clock.Elapsed.TotalMilliseconds, withTimes));
                return;
            }

            Recorder? recording = null;
            if (path.StartsWith("/record/", StringComparison.Ordinal))
            {
                var end = path.IndexOf('/', 8);
                recording = recorders.GetOrAdd(end < 0 ? path[8..] : path[8..end], _ => new Recorder());
                recording.Arrived(clock.Elapsed.TotalMilliseconds);
                path = end < 0 ? "" : path[end..];
            }
            try
            {
                // /delay/{ms}: answer after that latency; anything else: at once.
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
                recording?.Left(clock.Elapsed.TotalMilliseconds);
            }
        });
        await app.StartAsync();
        Console.WriteLine(app.Urls.First());
        await app.WaitForShutdownAsync();
        return 0;
    }

    private sealed class Recorder
    {
        private readonly Lock _lock = new();
        private readonly List<double> _times = [];
        private int _inFlight;
        private int _maxInFlight;
        private double _lastChange;
        private double _lastLeft;
        private double _inFlightArea; // in-flight count integrated over time (ms)

        public void Arrived(double at)
        {
            lock (_lock)
            {
                if (_times.Count > 0)
                    _inFlightArea += _inFlight * (at - _lastChange);
                _lastChange = at;
                _times.Add(at);
                _maxInFlight = Math.Max(_maxInFlight, ++_inFlight);
            }
        }

        public void Left(double at)
        {
            lock (_lock)
            {
                _inFlightArea += _inFlight * (at - _lastChange);
                _lastChange = _lastLeft = at;
                _inFlight--;
            }
        }

        public string ToJson(double now, bool withTimes)
        {
            var sb = new StringBuilder();
            lock (_lock)
            {
                sb.Append(CultureInfo.InvariantCulture, $"{{\"now\":{now:0.###},\"count\":{_times.Count},\"maxInFlight\":{_maxInFlight}");
                // Time-weighted mean of the calls in flight, from the first arrival to the last answer.
                var span = _times.Count > 0 ? _lastLeft - _times[0] : 0;
                sb.Append(CultureInfo.InvariantCulture, $",\"meanInFlight\":{(span > 0 ? _inFlightArea / span : 0):0.###},\"meanServedMs\":{(_times.Count > 0 ? _inFlightArea / _times.Count : 0):0.###}");
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
