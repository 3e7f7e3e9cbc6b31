using Dispatcher.Worker.Observability;

namespace Dispatcher.Worker.Tests.Observability;

public sealed class RedactorTests
{
    private readonly Redactor _redactor = new(["X-Internal-Token", "x-signature"]);

    [Theory]
    [InlineData("Authorization")]
    [InlineData("authorization")]
    [InlineData("AUTHORIZATION")]
    [InlineData("Cookie")]
    [InlineData("cookie")]
    [InlineData("Set-Cookie")]
    [InlineData("Proxy-Authorization")]
    [InlineData("X-Api-Key")]
    [InlineData("x-api-key")]
    [InlineData("X-API-KEY")]
    [InlineData("x-internal-token")]
    [InlineData("X-Signature")]
    public void Secret_header_is_redacted_in_any_case(string name)
    {
        var redacted = _redactor.Redact(new Dictionary<string, string> { [name] = "s3cret", ["Accept"] = "text/plain" });

        Assert.True(_redactor.IsSecret(name));
        Assert.Equal("[REDACTED]", redacted![name]);
        Assert.Equal("text/plain", redacted["Accept"]);
    }

    [Theory]
    [InlineData("Accept")]
    [InlineData("Content-Type")]
    [InlineData("X-Api-Key-Id")]
    [InlineData("Authorization2")]
    [InlineData("X-Request-Id")]
    public void Other_header_is_kept(string name)
    {
        var redacted = _redactor.Redact(new Dictionary<string, string> { [name] = "visible" });

        Assert.False(_redactor.IsSecret(name));
        Assert.Equal(new Dictionary<string, string> { [name] = "visible" }, redacted);
    }

    [Fact]
    public void Extra_names_only_add_to_the_built_in_ones()
    {
        var redactor = new Redactor([]);

        Assert.True(redactor.IsSecret("Authorization"));
        Assert.False(redactor.IsSecret("X-Internal-Token"));
    }

    [Fact]
    public void Redacted_copy_is_case_insensitive_and_the_input_is_untouched()
    {
        var input = new Dictionary<string, string> { ["Cookie"] = "id=1", ["X-Trace"] = "t" };

        var redacted = _redactor.Redact(input)!;

        Assert.Equal("[REDACTED]", redacted["COOKIE"]);
        Assert.Equal("t", redacted["x-trace"]);
        Assert.Equal("id=1", input["Cookie"]);
        Assert.Equal(2, redacted.Count);
    }

    [Fact]
    public void Null_headers_stay_null()
    {
        Assert.Null(_redactor.Redact(null));
    }
}
