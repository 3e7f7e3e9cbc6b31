using Microsoft.Extensions.Options;
using Spectre.Console;

namespace Dispatcher.Worker.Cli;

internal static class CommandRunner
{
    /// <summary>
    /// Runs a command body and turns configuration and startup errors into one clear line on stderr
    /// (exit code 2) instead of a stack trace.
    /// </summary>
    public static async Task<int> GuardAsync(Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (Exception ex) when (ex is InvalidOperationException or OptionsValidationException or FileNotFoundException or ArgumentException)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            console.MarkupLine($"[red]error:[/] {Markup.Escape(ex.Message)}");
            return 2;
        }
    }
}
