using Dispatcher.Worker.Dispatching;
using Dispatcher.Worker.Resilience;

namespace Dispatcher.Worker.Tests.Resilience;

public sealed class RetryClassifierTests
{
    private static readonly DateTimeOffset StartedAt = new(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);

    private static AttemptOutcome Http(int status) =>
        new(status is >= 200 and < 300 ? AttemptResult.Success : AttemptResult.HttpError, StartedAt, TimeSpan.FromMilliseconds(40), status);

    [Theory]
    [InlineData(nameof(AttemptResult.Timeout))]
    [InlineData(nameof(AttemptResult.ConnectionError))]
    public void Timeouts_and_connection_errors_are_retriable(string result)
    {
        var outcome = new AttemptOutcome(Enum.Parse<AttemptResult>(result), StartedAt, TimeSpan.FromSeconds(30));

        Assert.True(RetryClassifier.IsRetriable(outcome));
    }

    [Theory]
    [InlineData(408)]
    [InlineData(429)]
    [InlineData(500)]
    [InlineData(502)]
    [InlineData(503)]
    [InlineData(504)]
    [InlineData(599)]
    public void Request_timeout_too_many_requests_and_server_errors_are_retriable(int status)
    {
        Assert.True(RetryClassifier.IsRetriable(Http(status)));
        Assert.True(RetryClassifier.IsRetriableStatus(status));
    }

    [Theory]
    [InlineData(200)]
    [InlineData(201)]
    [InlineData(204)]
    [InlineData(301)]
    [InlineData(304)]
    [InlineData(400)]
    [InlineData(401)]
    [InlineData(403)]
    [InlineData(404)]
    [InlineData(409)]
    [InlineData(422)]
    [InlineData(501)]
    public void Success_redirects_client_errors_and_501_are_not_retriable(int status)
    {
        Assert.False(RetryClassifier.IsRetriable(Http(status)));
        Assert.False(RetryClassifier.IsRetriableStatus(status));
    }

    [Fact]
    public void Http_error_without_status_is_not_retriable()
    {
        Assert.False(RetryClassifier.IsRetriable(new AttemptOutcome(AttemptResult.HttpError, StartedAt, TimeSpan.Zero)));
    }

    [Theory]
    [InlineData(429, true)]
    [InlineData(503, true)]
    [InlineData(500, false)]
    [InlineData(502, false)]
    [InlineData(301, false)]
    [InlineData(null, false)]
    public void Retry_after_is_honoured_only_on_429_and_503(int? status, bool honoured)
    {
        Assert.Equal(honoured, RetryClassifier.HonoursRetryAfter(status));
    }
}
