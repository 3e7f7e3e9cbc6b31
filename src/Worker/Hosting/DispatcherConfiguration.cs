namespace Dispatcher.Worker.Hosting;

/// <summary>
/// Configuration sources, later overriding earlier: appsettings.json (next to the executable),
/// appsettings.{Environment}.json, the <c>--config</c> file (watched for changes), environment variables
/// (<c>Dispatcher__...</c>), then <c>--Key=Value</c> options on the command line.
/// </summary>
internal static class DispatcherConfiguration
{
    public static void Apply(IConfigurationManager configuration, string environment, string? configFile, string[] overrides)
    {
        configuration.Sources.Clear();
        configuration.SetBasePath(AppContext.BaseDirectory);
        configuration.AddJsonFile("appsettings.json", optional: true, reloadOnChange: false);
        configuration.AddJsonFile($"appsettings.{environment}.json", optional: true, reloadOnChange: false);
        if (configFile is not null)
        {
            var path = Path.GetFullPath(configFile);
            if (!File.Exists(path))
                throw new FileNotFoundException($"--config: the file '{path}' does not exist.", path);
            configuration.AddJsonFile(path, optional: false, reloadOnChange: true);
        }
        configuration.AddEnvironmentVariables();
        configuration.AddCommandLine(overrides);
    }

    /// <summary>
    /// Splits the command line into the command's own arguments and configuration overrides
    /// (<c>--Dispatcher:Worker:MaxConcurrency=32</c>, <c>--ConnectionStrings:Postgres=...</c>).
    /// </summary>
    public static (string[] CommandArgs, string[] Overrides) SplitArgs(string[] args)
    {
        var overrides = args.Where(IsOverride).ToArray();
        return (args.Where(a => !IsOverride(a)).ToArray(), overrides);
    }

    private static bool IsOverride(string arg)
    {
        if (!arg.StartsWith("--", StringComparison.Ordinal))
            return false;
        var equals = arg.IndexOf('=', StringComparison.Ordinal);
        var colon = arg.IndexOf(':', StringComparison.Ordinal);
        return equals > 0 && colon > 2 && colon < equals;
    }
}
