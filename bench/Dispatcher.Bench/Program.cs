using System.Diagnostics;
using Dispatcher.Bench;

// dotnet run -c Release --project bench/Dispatcher.Bench -- <scenario|all> [--count N] [--quick] [--profile-allocations]
// Needs RabbitMQ and PostgreSQL: eval "$(scripts/services.sh)" first.
//
// --count N is each scenario's main count: throughput messages (20,000); littles-law requests (15,000);
// overhead measured requests at 100/s (2,000); rate-accuracy preloaded requests (6,000, raised to cover the
// run); isolation healthy requests (10,000, plus a fifth as many hanging); memory requests in the in-process
// allocation pass (5,000; the load itself is 2,000/s for 30 s); outage preloaded requests (20,000). --quick shrinks
// counts and durations.
if (args.Length > 0 && args[0] == Downstream.ChildArgument)
    return await Downstream.RunChildAsync(args);

var scenarios = new (string Name, Func<BenchEnvironment, BenchOptions, Task> Run)[]
{
    ("throughput", (env, o) => ThroughputScenario.RunAsync(env, o.Count ?? (o.Quick ? 5_000 : 20_000), o.ProfileAllocations)),
    ("littles-law", LittlesLawScenario.RunAsync),
    ("overhead", OverheadScenario.RunAsync),
    ("rate-accuracy", RateAccuracyScenario.RunAsync),
    ("isolation", IsolationScenario.RunAsync),
    ("memory", MemoryScenario.RunAsync),
    // Not one of issue 5's targets, and not in "all": what a backlog at a destination that stays down costs.
    ("outage", OutageScenario.RunAsync),
};

var scenario = args.FirstOrDefault(a => !a.StartsWith("--", StringComparison.Ordinal) && !IsValueOf(args, a)) ?? "all";
var options = new BenchOptions(ArgValue(args, "--count"), args.Contains("--quick"), args.Contains("--profile-allocations"));
var selected = scenario == "all" ? scenarios.Where(s => s.Name != "outage").ToArray() : scenarios.Where(s => s.Name == scenario).ToArray();
if (selected.Length == 0)
{
    Console.Error.WriteLine($"Unknown scenario '{scenario}'. Scenarios: {string.Join(", ", scenarios.Select(s => s.Name))}, all.");
    return 2;
}

Console.WriteLine($"## Dispatcher bench: {string.Join(", ", selected.Select(s => s.Name))}{(options.Quick ? " (--quick)" : "")}");
Console.WriteLine();
Console.WriteLine($"Machine: {Environment.ProcessorCount} cores, {GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1024.0 * 1024 * 1024):0} GB, " +
    $"{System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}. RabbitMQ, PostgreSQL, the downstream " +
    "(a child process) and the worker(s) (in the bench process, or child processes where a scenario says so) all share these cores: " +
    "every number is for the whole system on this machine, not for the worker alone.");

// A scenario's own waits are bounded; this is the backstop.
var scenarioLimit = TimeSpan.FromMinutes(5);
var env = await BenchEnvironment.CreateAsync();
var failed = 0;
try
{
    foreach (var (name, run) in selected)
    {
        var started = Stopwatch.GetTimestamp();
        var running = run(env, options);
        if (await Task.WhenAny(running, Task.Delay(scenarioLimit)) != running)
        {
            // Stop everything this bench started (the finally below drops the databases and the downstream) and exit.
            Console.WriteLine();
            Console.WriteLine($"### {name}: FAILED (not finished within {scenarioLimit.TotalMinutes:0} minutes; stopping)");
            WorkerChild.KillAll();
            return 3;
        }
        try
        {
            await running;
        }
        catch (Exception ex) when (scenario == "all")
        {
            failed++;
            Console.WriteLine();
            Console.WriteLine($"### {name}: FAILED");
            Console.WriteLine();
            Console.WriteLine($"    {ex.GetType().Name}: {ex.Message}");
            Console.Error.WriteLine(ex);
        }
        Console.Error.WriteLine($"{name}: {Stopwatch.GetElapsedTime(started).TotalSeconds:0} s");
    }
}
finally
{
    await env.DisposeAsync();
}
return failed == 0 ? 0 : 1;

static int? ArgValue(string[] args, string name)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length && int.TryParse(args[i + 1], out var v) ? v : null;
}

static bool IsValueOf(string[] args, string arg)
{
    var i = Array.IndexOf(args, arg);
    return i > 0 && args[i - 1] == "--count";
}
