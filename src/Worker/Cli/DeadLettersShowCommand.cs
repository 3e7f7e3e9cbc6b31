using Spectre.Console.Cli;

namespace Dispatcher.Worker.Cli;

/// <summary><c>dead-letters show ID</c>: the full dead letter (request, attempts, last response), secrets redacted.</summary>
internal sealed class DeadLettersShowCommand : AsyncCommand<DispatchesShowSettings>
{
    public override Task<int> ExecuteAsync(CommandContext context, DispatchesShowSettings settings, CancellationToken cancellationToken) =>
        DispatchesShowCommand.ShowAsync(settings, deadLettersOnly: true, cancellationToken);
}
