using System.Text;
using Dispatcher.Contracts;
using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Destinations;
using Dispatcher.Worker.Dispatching;

namespace Dispatcher.Worker.Tests.Dispatching;

/// <summary>RequestPreparer: body decoding, content type and <see cref="RequestPreparer.Printable"/>.</summary>
public sealed class RequestPreparerBodyTests : IDisposable
{
    private readonly Destination _destination = new("d", new DestinationOptions { BaseUrl = new Uri("http://127.0.0.1:9/") });
    private readonly LimitsOptions _limits = new();

    public void Dispose() => _destination.Dispose();

    private PreparedRequest? Prepare(string? body, string? encoding = null, string? contentType = null) =>
        RequestPreparer.Prepare(
            new DispatchRequest { Destination = "d", Path = "/x", Body = body, BodyEncoding = encoding, ContentType = contentType },
            _destination, _limits, out _);

    private string? Error(string? body, string? encoding = null, string? contentType = null)
    {
        var prepared = RequestPreparer.Prepare(
            new DispatchRequest { Destination = "d", Path = "/x", Body = body, BodyEncoding = encoding, ContentType = contentType },
            _destination, _limits, out var error);
        Assert.Equal(error is null, prepared is not null);
        return error;
    }

    [Theory]
    [InlineData(null)]
    [InlineData("text")]
    [InlineData("TEXT")]
    public void Text_body_is_encoded_as_utf8(string? encoding)
    {
        var prepared = Prepare("{\"name\":\"Zoë €\"}", encoding);

        Assert.Equal(Encoding.UTF8.GetBytes("{\"name\":\"Zoë €\"}"), prepared!.Body);
        Assert.Equal(19, prepared.Body!.Length);
    }

    [Theory]
    [InlineData("base64")]
    [InlineData("Base64")]
    public void Base64_body_is_decoded(string encoding)
    {
        var prepared = Prepare("AAEC/w==", encoding);

        Assert.Equal(new byte[] { 0, 1, 2, 255 }, prepared!.Body);
    }

    [Theory]
    [InlineData("not base64!")]
    [InlineData("AAE")]
    [InlineData("AAEC/w=")]
    public void Invalid_base64_is_rejected(string body)
    {
        Assert.Equal("Body is not valid base64 (BodyEncoding is base64).", Error(body, "base64"));
    }

    [Theory]
    [InlineData("gzip")]
    [InlineData("")]
    [InlineData("utf-8")]
    public void Unknown_body_encoding_is_rejected(string encoding)
    {
        Assert.Equal($"BodyEncoding '{encoding}' is not 'text' or 'base64'.", Error("x", encoding));
    }

    [Fact]
    public void Text_body_over_MaxRequestBodyBytes_is_rejected_counting_utf8_bytes()
    {
        _limits.MaxRequestBodyBytes = 10;

        Assert.Null(Error(new string('a', 10)));
        Assert.Equal("Body is larger than 10 bytes.", Error(new string('a', 11)));
        // Five characters, but ten bytes in UTF-8: at the limit. Six are twelve bytes: over it.
        Assert.Null(Error(new string('é', 5)));
        Assert.Equal("Body is larger than 10 bytes.", Error(new string('é', 6)));
    }

    [Theory]
    [InlineData(10, true)]
    [InlineData(11, false)]
    [InlineData(12, false)]
    [InlineData(100, false)]
    public void Base64_body_over_MaxRequestBodyBytes_is_rejected_counting_decoded_bytes(int decodedBytes, bool accepted)
    {
        _limits.MaxRequestBodyBytes = 10;
        var body = Convert.ToBase64String(new byte[decodedBytes]);

        Assert.Equal(accepted ? null : "Body is larger than 10 bytes.", Error(body, "base64"));
    }

    [Theory]
    [InlineData("not a media type")]
    [InlineData("text/plain\r\nX-Injected: 1")]
    [InlineData("")]
    public void Invalid_content_type_is_rejected(string contentType)
    {
        var error = Error("x", contentType: contentType);

        Assert.NotNull(error);
        Assert.Contains("is not a valid media type", error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error);
    }

    [Fact]
    public void Content_type_defaults_to_json_when_a_body_is_present()
    {
        Assert.Equal("application/json", Prepare("{}")!.ContentType);
        Assert.Equal("application/json", Prepare("")!.ContentType);
    }

    [Fact]
    public void Given_content_type_is_kept()
    {
        Assert.Equal("text/plain; charset=utf-8", Prepare("hi", contentType: "text/plain; charset=utf-8")!.ContentType);
    }

    [Fact]
    public void Content_type_is_dropped_without_a_body()
    {
        var prepared = Prepare(null, contentType: "text/plain");

        Assert.Null(prepared!.Body);
        Assert.Null(prepared.ContentType);
    }

    [Theory]
    [InlineData(null, "(null)")]
    [InlineData("plain", "plain")]
    [InlineData("a\r\nb\tc\0d\u007fe\u0085f", "a??b?c?d?e?f")]
    public void Printable_replaces_control_characters(string? input, string expected)
    {
        Assert.Equal(expected, RequestPreparer.Printable(input));
    }

    [Fact]
    public void Printable_clips_long_input_to_64_characters_and_an_ellipsis()
    {
        var printable = RequestPreparer.Printable(new string('x', 64) + "\nsecret-tail");

        Assert.Equal(new string('x', 64) + "…", printable);
        Assert.Equal(new string('y', 64), RequestPreparer.Printable(new string('y', 64)));
    }
}
