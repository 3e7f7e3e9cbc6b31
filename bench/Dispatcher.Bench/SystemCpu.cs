using System.Globalization;

namespace Dispatcher.Bench;

/// <summary>
/// CPU time of the processes that share the machine during a pass, grouped: this process (the worker, when it runs
/// in-process, plus the bench's own bus), the downstream child, PostgreSQL and RabbitMQ. Read from /proc (Linux);
/// elsewhere it reports nothing.
/// </summary>
internal sealed class SystemCpu
{
    private static readonly double TicksPerSecond = 100; // USER_HZ on Linux
    private readonly Dictionary<string, double> _start = Snapshot();

    public static SystemCpu Start() => new();

    /// <summary>Seconds of CPU per group since <see cref="Start"/>.</summary>
    public IReadOnlyDictionary<string, double> Stop()
    {
        var end = Snapshot();
        return end.ToDictionary(kv => kv.Key, kv => kv.Value - _start.GetValueOrDefault(kv.Key));
    }

    private static Dictionary<string, double> Snapshot()
    {
        var groups = new Dictionary<string, double>();
        if (!Directory.Exists("/proc"))
            return groups;
        var self = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            var pid = Path.GetFileName(dir);
            if (!pid.All(char.IsAsciiDigit))
                continue;
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                var group = pid == self ? "bench process (worker in-process)"
                    : cmdline.Contains(Downstream.ChildArgument, StringComparison.Ordinal) ? "downstream"
                    : cmdline.StartsWith("postgres", StringComparison.Ordinal) || cmdline.Contains("/postgres ", StringComparison.Ordinal) ? "PostgreSQL"
                    : cmdline.Contains("beam", StringComparison.Ordinal) || cmdline.Contains("rabbitmq", StringComparison.Ordinal) ? "RabbitMQ"
                    : null;
                if (group is null)
                    continue;
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                var ticks = double.Parse(fields[11], CultureInfo.InvariantCulture) + double.Parse(fields[12], CultureInfo.InvariantCulture);
                groups[group] = groups.GetValueOrDefault(group) + (ticks / TicksPerSecond);
            }
            catch (IOException)
            {
                // The process ended while being read.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        return groups;
    }
}
