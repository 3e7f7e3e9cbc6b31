using System.ComponentModel;
using System.Globalization;
using Dispatcher.Persistence.DeadLetters;
using Spectre.Console.Cli;
using ValidationResult = Spectre.Console.ValidationResult;

namespace Dispatcher.Worker.Cli;

/// <summary>The dead-letter filters shared by <c>list</c> and <c>replay</c>.</summary>
internal class DeadLetterFilterSettings : ReadSettings
{
    [CommandOption("--destination <NAME>")]
    public string? Destination { get; init; }

    [CommandOption("--reason <REASON>")]
    [Description("NonRetriableStatus, RetriesExhausted, DeadlineExceeded, UnknownDestination or InvalidRequest.")]
    public string? Reason { get; init; }

    [CommandOption("--since <TIME>")]
    [Description("Dead-lettered at or after this time (ISO 8601, e.g. 2026-11-27T08:00Z).")]
    public string? Since { get; init; }

    [CommandOption("--until <TIME>")]
    [Description("Dead-lettered before this time.")]
    public string? Until { get; init; }

    public override ValidationResult Validate()
    {
        if (Since is not null && !TryParseTime(Since, out _))
            return ValidationResult.Error($"--since: '{Since}' is not a date and time (ISO 8601).");
        if (Until is not null && !TryParseTime(Until, out _))
            return ValidationResult.Error($"--until: '{Until}' is not a date and time (ISO 8601).");
        if (Reason is not null && !Enum.TryParse<Contracts.DeadLetterReason>(Reason, ignoreCase: true, out _))
            return ValidationResult.Error($"--reason: '{Reason}' is not one of {string.Join(", ", Enum.GetNames<Contracts.DeadLetterReason>())}.");
        return ValidationResult.Success();
    }

    public DeadLetterFilter ToFilter(IReadOnlyList<Guid>? ids = null) => new()
    {
        RequestIds = ids is { Count: > 0 } ? ids : null,
        Destination = Destination,
        Reason = Reason is null ? null : Enum.Parse<Contracts.DeadLetterReason>(Reason, ignoreCase: true).ToString(),
        Since = Since is null ? null : Parse(Since),
        Until = Until is null ? null : Parse(Until),
    };

    private static DateTimeOffset Parse(string value) => TryParseTime(value, out var t) ? t : throw new FormatException(value);

    private static bool TryParseTime(string value, out DateTimeOffset time) =>
        DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out time);
}
