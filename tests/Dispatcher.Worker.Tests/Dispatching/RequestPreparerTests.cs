using System.Text;
using Dispatcher.Contracts;
using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Destinations;
using Dispatcher.Worker.Dispatching;

namespace Dispatcher.Worker.Tests.Dispatching;

public sealed class RequestPreparerTests : IDisposable
{
    private readonly Destination _destination = new("d", new DestinationOptions { BaseUrl = new Uri("http://127.0.0.1:9/") });
    private readonly LimitsOptions _limits = new();

    public void Dispose() => _destination.Dispose();

    private static DispatchRequest Request(Func<DispatchRequest, DispatchRequest>? change = null)
    {
        var request = new DispatchRequest { RequestId = Guid.NewGuid(), Destination = "d", Path = "/v1/charges" };
        return change is null ? request : change(request);
    }

    private PreparedRequest Prepared(DispatchRequest request)
    {
        var prepared = RequestPreparer.Prepare(request, _destination, _limits, out var error);
        Assert.Null(error);
        Assert.NotNull(prepared);
        return prepared;
    }

    private string Rejected(DispatchRequest request)
    {
        var prepared = RequestPreparer.Prepare(request, _destination, _limits, out var error);
        Assert.Null(prepared);
        Assert.NotNull(error);
        return error;
    }

    [Fact]
    public void Default_request_is_a_post_to_the_resolved_url_without_body()
    {
        var prepared = Prepared(Request());

        Assert.Equal(HttpMethod.Post, prepared.Method);
        Assert.Equal("http://127.0.0.1:9/v1/charges", prepared.Url.AbsoluteUri);
        Assert.Empty(prepared.Headers);
        Assert.Null(prepared.Body);
        Assert.Null(prepared.ContentType);
    }

    [Theory]
    [InlineData("get", "GET")]
    [InlineData("Patch", "PATCH")]
    [InlineData("DELETE", "DELETE")]
    [InlineData("options", "OPTIONS")]
    public void Known_method_is_accepted_in_any_case(string method, string expected)
    {
        var prepared = Prepared(Request(r => r with { Method = method }));

        Assert.Equal(expected, prepared.Method.Method);
    }

    [Theory]
    [InlineData("BREW")]
    [InlineData("")]
    [InlineData("TRACE")]
    [InlineData("CONNECT")]
    public void Unknown_method_is_rejected(string method)
    {
        var error = Rejected(Request(r => r with { Method = method }));

        Assert.StartsWith($"Method '{method}' is not one of", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Path_leaving_the_base_is_rejected_with_the_url_error()
    {
        var error = Rejected(Request(r => r with { Path = "//evil.example/x" }));

        Assert.Equal("Path contains '//'.", error);
    }

    [Theory]
    [InlineData("a\r\nX-Injected: 1")]
    [InlineData("a\nb")]
    [InlineData("a\rb")]
    [InlineData("a\0b")]
    public void Header_value_with_cr_lf_or_nul_is_rejected(string value)
    {
        var error = Rejected(Request(r => r with { Headers = new Dictionary<string, string> { ["X-Trace"] = value } }));

        Assert.Equal("Header 'X-Trace' contains CR, LF or NUL (header injection).", error);
    }

    [Theory]
    [InlineData("X Trace")]
    [InlineData("X-Trace:")]
    [InlineData("")]
    [InlineData("Bad\nName")]
    [InlineData("Ünicode")]
    public void Invalid_header_name_is_rejected(string name)
    {
        var error = Rejected(Request(r => r with { Headers = new Dictionary<string, string> { [name] = "v" } }));

        Assert.StartsWith("Header name '", error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error);
    }

    [Fact]
    public void Hop_by_hop_headers_are_dropped_and_others_kept_in_order()
    {
        var headers = new Dictionary<string, string>
        {
            ["X-Trace"] = "t1", ["Connection"] = "close", ["transfer-encoding"] = "chunked",
            ["Host"] = "evil.example", ["Content-Length"] = "5", ["Accept"] = "application/json",
        };

        var prepared = Prepared(Request(r => r with { Headers = headers }));

        Assert.Equal(
            [new("X-Trace", "t1"), new("Accept", "application/json")],
            prepared.Headers);
    }

    [Fact]
    public void More_headers_than_MaxHeaderCount_are_rejected()
    {
        _limits.MaxHeaderCount = 3;
        var headers = Enumerable.Range(0, 4).ToDictionary(i => $"X-H{i}", _ => "v");

        var error = Rejected(Request(r => r with { Headers = headers }));

        Assert.Equal("Request has 4 headers; the limit is 3.", error);
    }

    [Fact]
    public void Exactly_MaxHeaderCount_headers_are_accepted()
    {
        _limits.MaxHeaderCount = 3;
        var headers = Enumerable.Range(0, 3).ToDictionary(i => $"X-H{i}", _ => "v");

        Assert.Equal(3, Prepared(Request(r => r with { Headers = headers })).Headers.Count);
    }

    [Fact]
    public void Header_bytes_over_MaxHeaderBytes_are_rejected_counting_names_and_values()
    {
        _limits.MaxHeaderBytes = 10;
        var atLimit = new Dictionary<string, string> { ["X-A"] = "1234567" };
        var overLimit = new Dictionary<string, string> { ["X-A"] = "12345678" };

        Assert.Single(Prepared(Request(r => r with { Headers = atLimit })).Headers);
        Assert.Equal(
            "Request headers take 11 bytes; the limit is 10.",
            Rejected(Request(r => r with { Headers = overLimit })));
    }
}
