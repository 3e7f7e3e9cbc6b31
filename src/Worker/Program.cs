using Dispatcher.Worker.Cli;
using Dispatcher.Worker.Hosting;
using Spectre.Console.Cli;

var (commandArgs, overrides) = DispatcherConfiguration.SplitArgs(args);
// Piped or redirected (grep, a file, a CI log), tables keep one row per line instead of wrapping at 80 columns.
if (Console.IsOutputRedirected)
    Spectre.Console.AnsiConsole.Profile.Width = 240;
CliOverrides.Values = overrides;

var app = new CommandApp<RunCommand>();
app.Configure(config =>
{
    config.SetApplicationName("dispatcher");
    config.AddCommand<RunCommand>("run").WithDescription("Run a worker (the default).");
    config.AddCommand<MigrateCommand>("migrate").WithDescription("Create or upgrade the database schema, then exit.");
    config.AddCommand<SendCommand>("send").WithDescription("Publish requests to the request queue.")
        .WithExample("send", "--destination", "payments", "--path", "/v1/charges", "--body", "{\"amount\":100}", "--count", "10");
    config.AddCommand<StatusCommand>("status").WithDescription("Per destination: breaker, in flight, rate, waiting retries, held-back requests, dead letters; queues; outbox.");
    config.AddBranch("dispatches", b =>
    {
        b.SetDescription("Inspect dispatches.");
        b.AddCommand<DispatchesShowCommand>("show").WithDescription("A request's state, attempts and history.");
    });
    config.AddBranch("dead-letters", b =>
    {
        b.SetDescription("Triage and replay dead letters.");
        b.AddCommand<DeadLettersListCommand>("list").WithDescription("Counts by destination, reason, status and error, then the newest dead letters.");
        b.AddCommand<DeadLettersShowCommand>("show").WithDescription("One dead letter in full (secrets redacted).");
        b.AddCommand<DeadLettersReplayCommand>("replay").WithDescription("Start a new cycle for dead letters chosen by id or filter.")
            .WithExample("dead-letters", "replay", "--destination", "payments", "--reason", "RetriesExhausted", "--rate", "20");
    });
    config.AddBranch("error-queue", b =>
    {
        b.SetDescription("Messages MassTransit put in dispatch-requests_error.");
        b.AddCommand<ErrorQueueListCommand>("list").WithDescription("List them with the fault MassTransit recorded.");
        b.AddCommand<ErrorQueueRequeueCommand>("requeue").WithDescription("Move them back to the request queue.");
    });
    config.AddCommand<DemoCommand>("demo").WithDescription("Run a worker against a local demo downstream with demo traffic, then print a summary.");
});
return await app.RunAsync(commandArgs);

/// <summary>The entry point, visible to tests that start the worker in-process or as a process.</summary>
public partial class Program;
