using Dispatcher.Bench;

// dotnet run -c Release --project bench/Dispatcher.Bench -- <scenario|all> [--count N]
// Needs RabbitMQ and PostgreSQL: eval "$(scripts/services.sh)" first.
if (args.Length > 0 && args[0] == Downstream.ChildArgument)
    return await Downstream.RunChildAsync(args);

var scenario = args.FirstOrDefault(a => !a.StartsWith("--", StringComparison.Ordinal)) ?? "all";
var count = ArgValue(args, "--count", 20_000);
var env = await BenchEnvironment.CreateAsync();
try
{
    switch (scenario)
    {
        case "throughput" or "all":
            await ThroughputScenario.RunAsync(env, count, args.Contains("--profile-allocations"));
            break;
        default:
            Console.Error.WriteLine($"Unknown scenario '{scenario}'. Scenarios: throughput, all.");
            return 2;
    }
}
finally
{
    await env.DisposeAsync();
}
return 0;

static int ArgValue(string[] args, string name, int fallback)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length && int.TryParse(args[i + 1], out var v) ? v : fallback;
}
