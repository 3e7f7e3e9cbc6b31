using System.ComponentModel;
using Spectre.Console.Cli;

namespace Dispatcher.Worker.Cli;

/// <summary>Options every command accepts.</summary>
internal class CliSettings : CommandSettings
{
    [CommandOption("--config <FILE>")]
    [Description("A JSON configuration file, layered over appsettings.json and watched for changes.")]
    public string? Config { get; init; }
}

/// <summary>Options of the commands that read and print.</summary>
internal class ReadSettings : CliSettings
{
    [CommandOption("--json")]
    [Description("Print JSON instead of tables.")]
    public bool Json { get; init; }
}

/// <summary>Configuration overrides taken off the command line (<c>--Section:Key=Value</c>) before parsing.</summary>
internal static class CliOverrides
{
    public static string[] Values { get; set; } = [];
}
