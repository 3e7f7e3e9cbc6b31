using Dispatcher.Worker.Configuration;

namespace Dispatcher.Worker.Tests.Configuration;

public sealed class DispatcherOptionsValidatorTests
{
    private const string Payments = "Dispatcher:Destinations:payments";

    private static DispatcherOptions Valid(Action<DestinationOptions>? change = null)
    {
        var destination = new DestinationOptions { BaseUrl = new Uri("https://payments.example.com/v1/") };
        change?.Invoke(destination);
        return new DispatcherOptions { Destinations = new(StringComparer.OrdinalIgnoreCase) { ["payments"] = destination } };
    }

    private static string SingleError(DispatcherOptions options) => Assert.Single(DispatcherOptionsValidator.Collect(options));

    [Fact]
    public void Defaults_with_one_valid_destination_have_no_errors()
    {
        Assert.Empty(DispatcherOptionsValidator.Collect(Valid()));
        Assert.Empty(DispatcherOptionsValidator.Collect(new DispatcherOptions()));
    }

    [Fact]
    public void Validate_reports_success_or_all_failures()
    {
        var validator = new DispatcherOptionsValidator();
        var invalid = Valid(d => { d.MaxConcurrency = 0; d.Retry.MaxAttempts = 0; });

        Assert.True(validator.Validate(null, Valid()).Succeeded);
        var result = validator.Validate(null, invalid);
        Assert.True(result.Failed);
        Assert.Equal(2, result.Failures!.Count());
    }

    [Fact]
    public void Missing_base_url_names_its_key()
    {
        var error = SingleError(Valid(d => d.BaseUrl = null));

        Assert.StartsWith($"{Payments}:BaseUrl is required", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("ftp://x")]
    [InlineData("file:///etc/passwd")]
    [InlineData("/relative")]
    public void Base_url_that_is_not_absolute_http_names_its_key(string baseUrl)
    {
        var error = SingleError(Valid(d => d.BaseUrl = new Uri(baseUrl, UriKind.RelativeOrAbsolute)));

        Assert.StartsWith($"{Payments}:BaseUrl must be an absolute http or https URL", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("https://user:secret@payments.example.com/")]
    [InlineData("https://payments.example.com/?key=1")]
    [InlineData("https://payments.example.com/#top")]
    public void Base_url_with_user_info_query_or_fragment_names_its_key(string baseUrl)
    {
        var error = SingleError(Valid(d => d.BaseUrl = new Uri(baseUrl)));

        Assert.StartsWith($"{Payments}:BaseUrl must not carry user info", error, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", error, StringComparison.Ordinal);
    }

    public static TheoryData<string, Action<DestinationOptions>> InvalidDestinationValues => new()
    {
        { "MaxConcurrency", d => d.MaxConcurrency = 0 },
        { "AttemptTimeout", d => d.AttemptTimeout = TimeSpan.Zero },
        { "IdempotencyHeader", d => d.IdempotencyHeader = "Idempotency Key" },
        { "IdempotencyHeader", d => d.IdempotencyHeader = "" },
        { "RateLimit:PermitsPerSecond", d => d.RateLimit.PermitsPerSecond = 0 },
        { "RateLimit:PermitsPerSecond", d => d.RateLimit.PermitsPerSecond = -1 },
        { "RateLimit:PermitsPerSecond", d => d.RateLimit.PermitsPerSecond = double.NaN },
        { "RateLimit:Burst", d => d.RateLimit.Burst = -1 },
        { "Retry:MaxAttempts", d => d.Retry.MaxAttempts = 0 },
        { "Retry:MaxDelay", d => { d.Retry.BaseDelay = TimeSpan.FromSeconds(10); d.Retry.MaxDelay = TimeSpan.FromSeconds(5); } },
        { "CircuitBreaker:FailureRatio", d => d.CircuitBreaker.FailureRatio = 1.5 },
        { "CircuitBreaker:FailureRatio", d => d.CircuitBreaker.FailureRatio = 0 },
        { "CircuitBreaker:MinimumThroughput", d => d.CircuitBreaker.MinimumThroughput = 1 },
        { "CircuitBreaker:SamplingDuration", d => d.CircuitBreaker.SamplingDuration = TimeSpan.FromMilliseconds(499) },
        { "CircuitBreaker:BreakDuration", d => d.CircuitBreaker.BreakDuration = TimeSpan.Zero },
        { "Headers:X-Bad", d => d.Headers["X-Bad"] = "a\nb" },
        { "Headers:X-Bad", d => d.Headers["X-Bad"] = "a\rb" },
        { "Headers:Bad Name", d => d.Headers["Bad Name"] = "v" },
    };

    [Theory]
    [MemberData(nameof(InvalidDestinationValues))]
    public void Invalid_destination_value_yields_one_error_naming_its_full_key(string key, Action<DestinationOptions> change)
    {
        var error = SingleError(Valid(change));

        Assert.StartsWith($"{Payments}:{key} ", error, StringComparison.Ordinal);
    }

    // SocketsHttpHandler.ConnectTimeout (set from AttemptTimeout) accepts at most int.MaxValue ms (~24.8 days):
    // a larger value passes validation and then throws ArgumentOutOfRangeException from new Destination(...).
    [Fact]
    public void Attempt_timeout_beyond_what_the_http_handler_accepts_names_its_key()
    {
        var error = SingleError(Valid(d => d.AttemptTimeout = TimeSpan.FromDays(30)));

        Assert.StartsWith($"{Payments}:AttemptTimeout ", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Retry_max_delay_equal_to_base_delay_is_valid()
    {
        var options = Valid(d => { d.Retry.BaseDelay = TimeSpan.FromSeconds(5); d.Retry.MaxDelay = TimeSpan.FromSeconds(5); });

        Assert.Empty(DispatcherOptionsValidator.Collect(options));
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(0.01)]
    public void Failure_ratio_within_range_is_valid(double ratio)
    {
        Assert.Empty(DispatcherOptionsValidator.Collect(Valid(d => d.CircuitBreaker.FailureRatio = ratio)));
    }

    public static TheoryData<string, Action<DispatcherOptions>> InvalidGlobalValues => new()
    {
        { "Dispatcher:Worker:MaxConcurrency", o => o.Worker.MaxConcurrency = 0 },
        { "Dispatcher:Worker:PrefetchCount", o => o.Worker.PrefetchCount = -1 },
        { "Dispatcher:Worker:QueueName", o => o.Worker.QueueName = " " },
        { "Dispatcher:Worker:ShutdownTimeout", o => o.Worker.ShutdownTimeout = TimeSpan.Zero },
        { "Dispatcher:Worker:LeaseMargin", o => o.Worker.LeaseMargin = TimeSpan.FromSeconds(-1) },
        { "Dispatcher:Limits:MaxRequestBodyBytes", o => o.Limits.MaxRequestBodyBytes = 0 },
        { "Dispatcher:Limits:MaxStoredResponseBytes", o => o.Limits.MaxStoredResponseBytes = -1 },
        { "Dispatcher:Limits:MaxHeaderCount", o => o.Limits.MaxHeaderCount = 0 },
        { "Dispatcher:Limits:MaxHeaderBytes", o => o.Limits.MaxHeaderBytes = 0 },
        { "Dispatcher:Outbox:PollInterval", o => o.Outbox.PollInterval = TimeSpan.Zero },
        { "Dispatcher:Outbox:BatchSize", o => o.Outbox.BatchSize = 0 },
        { "Dispatcher:Outbox:HandoffGrace", o => o.Outbox.HandoffGrace = TimeSpan.FromSeconds(-1) },
        { "Dispatcher:Outbox:HandoffGrace", o => o.Outbox.HandoffGrace = TimeSpan.FromMinutes(11) },
        { "Dispatcher:Outbox:Retention", o => o.Outbox.Retention = TimeSpan.Zero },
        { "Dispatcher:Admin:Urls", o => o.Admin.Urls = "" },
    };

    [Theory]
    [MemberData(nameof(InvalidGlobalValues))]
    public void Invalid_global_value_yields_one_error_naming_its_full_key(string key, Action<DispatcherOptions> change)
    {
        var options = Valid();
        change(options);

        Assert.StartsWith($"{key} ", SingleError(options), StringComparison.Ordinal);
    }

    [Fact]
    public void Every_invalid_destination_is_reported_under_its_own_name()
    {
        var options = Valid(d => d.Retry.MaxAttempts = 0);
        options.Destinations["search"] = new DestinationOptions { BaseUrl = new Uri("ftp://search") };

        var errors = DispatcherOptionsValidator.Collect(options);

        Assert.Equal(2, errors.Count);
        Assert.Contains(errors, e => e.StartsWith("Dispatcher:Destinations:payments:Retry:MaxAttempts ", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("Dispatcher:Destinations:search:BaseUrl ", StringComparison.Ordinal));
    }
}
