using System.Diagnostics;

namespace Dispatcher.Worker.Tests.Infrastructure;

/// <summary>Stops and starts the real services through <c>scripts/services.sh</c>, for fault injection.</summary>
public static class ServiceControl
{
    public static Task KillPostgresAsync() => RunAsync("kill-postgres");

    public static Task StartPostgresAsync() => RunAsync("start-postgres");

    public static Task StopRabbitMqAsync() => RunAsync("stop-rabbitmq");

    public static Task StartRabbitMqAsync() => RunAsync("start-rabbitmq");

    private static async Task RunAsync(string command)
    {
        var script = Path.Combine(RepositoryRoot(), "scripts", "services.sh");
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(script);
        info.ArgumentList.Add(command);
        using var process = Process.Start(info)!;
        var output = process.StandardError.ReadToEndAsync();
        await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"services.sh {command} exited {process.ExitCode}: {await output}");
    }

    public static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Dispatcher.sln")))
            dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Dispatcher.sln not found above " + AppContext.BaseDirectory);
    }
}
