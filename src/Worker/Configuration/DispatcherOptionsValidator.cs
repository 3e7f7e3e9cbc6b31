using Microsoft.Extensions.Options;

namespace Dispatcher.Worker.Configuration;

/// <summary>
/// Validates the whole section; every failure names its configuration key, so that a bad value stops the start
/// (or is refused on reload) with a message an operator can act on.
/// </summary>
public sealed class DispatcherOptionsValidator : IValidateOptions<DispatcherOptions>
{
    private static readonly TimeSpan MaxAttemptTimeout = TimeSpan.FromHours(1);

    public ValidateOptionsResult Validate(string? name, DispatcherOptions options)
    {
        var errors = Collect(options);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    public static List<string> Collect(DispatcherOptions options)
    {
        var errors = new List<string>();
        const string root = DispatcherOptions.SectionName;

        var w = options.Worker;
        Positive(errors, $"{root}:Worker:MaxConcurrency", w.MaxConcurrency);
        if (w.PrefetchCount < 0)
            errors.Add($"{root}:Worker:PrefetchCount must be 0 (the consumer's message limit: Worker:MaxConcurrency + 2 x the destinations' MaxConcurrency) or more, was {w.PrefetchCount}.");
        if (string.IsNullOrWhiteSpace(w.QueueName))
            errors.Add($"{root}:Worker:QueueName must not be empty.");
        Positive(errors, $"{root}:Worker:ShutdownTimeout", w.ShutdownTimeout);
        NotNegative(errors, $"{root}:Worker:LeaseMargin", w.LeaseMargin);

        foreach (var (name, d) in options.Destinations)
            ValidateDestination(errors, $"{root}:Destinations:{name}", d);

        var l = options.Limits;
        Positive(errors, $"{root}:Limits:MaxRequestBodyBytes", l.MaxRequestBodyBytes);
        Positive(errors, $"{root}:Limits:MaxStoredResponseBytes", l.MaxStoredResponseBytes);
        Positive(errors, $"{root}:Limits:MaxHeaderCount", l.MaxHeaderCount);
        Positive(errors, $"{root}:Limits:MaxHeaderBytes", l.MaxHeaderBytes);

        var o = options.Outbox;
        Positive(errors, $"{root}:Outbox:PollInterval", o.PollInterval);
        Positive(errors, $"{root}:Outbox:BatchSize", o.BatchSize);
        Positive(errors, $"{root}:Outbox:Retention", o.Retention);
        NotNegative(errors, $"{root}:Outbox:HandoffGrace", o.HandoffGrace);
        if (o.HandoffGrace > TimeSpan.FromMinutes(10))
            errors.Add($"{root}:Outbox:HandoffGrace must be at most 00:10:00 (a dead worker's events wait that long), was {o.HandoffGrace}.");

        var format = options.Logging.Format;
        if (format is not ("auto" or "text" or "json"))
            errors.Add($"{root}:Logging:Format must be auto, text or json, was '{format}'.");
        if (!Enum.TryParse<Serilog.Events.LogEventLevel>(options.Logging.Level, ignoreCase: true, out _))
            errors.Add($"{root}:Logging:Level must be Verbose, Debug, Information, Warning, Error or Fatal, was '{options.Logging.Level}'.");

        if (options.Tracing.Exporter is not ("none" or "console" or "otlp"))
            errors.Add($"{root}:Tracing:Exporter must be none, console or otlp, was '{options.Tracing.Exporter}'.");

        if (string.IsNullOrWhiteSpace(options.Admin.Urls))
            errors.Add($"{root}:Admin:Urls must not be empty.");
        return errors;
    }

    private static void ValidateDestination(List<string> errors, string key, DestinationOptions d)
    {
        if (d.BaseUrl is null)
            errors.Add($"{key}:BaseUrl is required (an absolute http or https URL).");
        else if (!d.BaseUrl.IsAbsoluteUri || (d.BaseUrl.Scheme != Uri.UriSchemeHttp && d.BaseUrl.Scheme != Uri.UriSchemeHttps))
            errors.Add($"{key}:BaseUrl must be an absolute http or https URL, was '{d.BaseUrl}'.");
        else if (!string.IsNullOrEmpty(d.BaseUrl.UserInfo) || !string.IsNullOrEmpty(d.BaseUrl.Query) || !string.IsNullOrEmpty(d.BaseUrl.Fragment))
            errors.Add($"{key}:BaseUrl must not carry user info, a query or a fragment (put credentials in {key}:Headers).");

        Positive(errors, $"{key}:MaxConcurrency", d.MaxConcurrency);
        Positive(errors, $"{key}:AttemptTimeout", d.AttemptTimeout);
        if (d.AttemptTimeout > MaxAttemptTimeout)
            errors.Add($"{key}:AttemptTimeout must be at most {MaxAttemptTimeout}, was {d.AttemptTimeout}.");
        if (string.IsNullOrWhiteSpace(d.IdempotencyHeader) || !HeaderRules.IsToken(d.IdempotencyHeader))
            errors.Add($"{key}:IdempotencyHeader must be a valid header name, was '{d.IdempotencyHeader}'.");
        foreach (var (header, value) in d.Headers)
        {
            if (!HeaderRules.IsToken(header))
                errors.Add($"{key}:Headers:{header} is not a valid header name.");
            else if (value is null || value.AsSpan().IndexOfAny('\r', '\n') >= 0)
                errors.Add($"{key}:Headers:{header} must not contain CR or LF.");
        }

        Positive(errors, $"{key}:RateLimit:PermitsPerSecond", d.RateLimit.PermitsPerSecond);
        if (d.RateLimit.Burst < 0)
            errors.Add($"{key}:RateLimit:Burst must be 0 (one second's worth) or more, was {d.RateLimit.Burst}.");

        Positive(errors, $"{key}:Retry:MaxAttempts", d.Retry.MaxAttempts);
        Positive(errors, $"{key}:Retry:BaseDelay", d.Retry.BaseDelay);
        Positive(errors, $"{key}:Retry:MaxDelay", d.Retry.MaxDelay);
        if (d.Retry.MaxDelay < d.Retry.BaseDelay)
            errors.Add($"{key}:Retry:MaxDelay ({d.Retry.MaxDelay}) must not be less than {key}:Retry:BaseDelay ({d.Retry.BaseDelay}).");

        var cb = d.CircuitBreaker;
        if (!(cb.FailureRatio > 0 && cb.FailureRatio <= 1))
            errors.Add($"{key}:CircuitBreaker:FailureRatio must be greater than 0 and at most 1, was {cb.FailureRatio}.");
        if (cb.MinimumThroughput < 2)
            errors.Add($"{key}:CircuitBreaker:MinimumThroughput must be at least 2, was {cb.MinimumThroughput}.");
        if (cb.SamplingDuration < TimeSpan.FromMilliseconds(500))
            errors.Add($"{key}:CircuitBreaker:SamplingDuration must be at least 500 ms, was {cb.SamplingDuration}.");
        if (cb.BreakDuration < TimeSpan.FromMilliseconds(500))
            errors.Add($"{key}:CircuitBreaker:BreakDuration must be at least 500 ms, was {cb.BreakDuration}.");
    }

    private static void Positive(List<string> errors, string key, double value)
    {
        if (!(value > 0) || double.IsInfinity(value))
            errors.Add($"{key} must be greater than 0, was {value}.");
    }

    private static void Positive(List<string> errors, string key, TimeSpan value)
    {
        if (value <= TimeSpan.Zero)
            errors.Add($"{key} must be greater than 0, was {value}.");
    }

    private static void NotNegative(List<string> errors, string key, TimeSpan value)
    {
        if (value < TimeSpan.Zero)
            errors.Add($"{key} must not be negative, was {value}.");
    }
}
