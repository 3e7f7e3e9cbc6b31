using Dispatcher.Worker.Destinations;

namespace Dispatcher.Worker.Tests.Destinations;

public sealed class DestinationUrlTests
{
    private static readonly Uri Base = new("https://api.example.com:8443/");

    [Theory]
    [InlineData("https://api.example.com:8443/", "/v1/charges", "https://api.example.com:8443/v1/charges")]
    [InlineData("https://api.example.com:8443/", "v1/charges", "https://api.example.com:8443/v1/charges")]
    [InlineData("https://api.example.com:8443/", "v1/charges?x=1&y=a%20b", "https://api.example.com:8443/v1/charges?x=1&y=a%20b")]
    [InlineData("https://api.example.com/v2/", "/items", "https://api.example.com/v2/items")]
    [InlineData("https://api.example.com/v2", "/items", "https://api.example.com/v2/items")]
    [InlineData("http://127.0.0.1:9/", "/", "http://127.0.0.1:9/")]
    [InlineData("http://127.0.0.1:9/", "/a?next=//evil.example/x", "http://127.0.0.1:9/a?next=//evil.example/x")]
    public void Relative_path_is_resolved_under_the_base(string baseUrl, string path, string expected)
    {
        var baseUri = new Uri(baseUrl);

        var ok = DestinationUrl.TryResolve(baseUri, path, out var url, out var error);

        Assert.True(ok, error);
        Assert.Null(error);
        Assert.NotNull(url);
        Assert.Equal(expected, url.AbsoluteUri);
        Assert.Equal(baseUri.Scheme, url.Scheme);
        Assert.Equal(baseUri.Host, url.Host);
        Assert.Equal(baseUri.Port, url.Port);
        Assert.StartsWith(baseUri.AbsolutePath.TrimEnd('/'), url.AbsolutePath, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("//evil.example/x", "//")]
    [InlineData("http://169.254.169.254/", "absolute URL")]
    [InlineData("https://evil.example", "absolute URL")]
    [InlineData("javascript:alert(1)", "absolute URL")]
    [InlineData("file:/etc/passwd", "absolute URL")]
    [InlineData("..\\..\\", "backslash")]
    [InlineData("/a%5c..%5cb", "backslash")]
    [InlineData("../admin", "dot segment")]
    [InlineData("/a/../../b", "dot segment")]
    [InlineData("/a/./b", "dot segment")]
    [InlineData("%2e%2e/x", "dot segment")]
    [InlineData("/a/%2E%2e/b", "dot segment")]
    [InlineData("/a%2f%2fb", "//")]
    [InlineData("/a%2fb", "encoded '/'")]
    [InlineData("/x@evil.example", "'@'")]
    [InlineData("/x%40evil.example", "'@'")]
    [InlineData("/a\r\nHost: evil", "CR or LF")]
    [InlineData("/a\nb", "CR or LF")]
    [InlineData("/a\tb", "whitespace or a control character")]
    [InlineData("/a b", "whitespace or a control character")]
    [InlineData("/a\u007fb", "whitespace or a control character")]
    [InlineData("#frag", "fragment")]
    [InlineData("/a#frag", "fragment")]
    public void Path_that_could_leave_the_base_is_rejected(string path, string reason)
    {
        var ok = DestinationUrl.TryResolve(Base, path, out var url, out var error);

        Assert.False(ok);
        Assert.Null(url);
        Assert.NotNull(error);
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    public void Missing_path_is_rejected(string? path)
    {
        var ok = DestinationUrl.TryResolve(Base, path, out var url, out var error);

        Assert.False(ok);
        Assert.Null(url);
        Assert.Equal("Path is required.", error);
    }

    [Fact]
    public void Path_longer_than_4096_characters_is_rejected()
    {
        var ok = DestinationUrl.TryResolve(Base, "/" + new string('a', 4096), out var url, out var error);

        Assert.False(ok);
        Assert.Null(url);
        Assert.Contains("4096", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Path_of_4096_characters_is_accepted()
    {
        var ok = DestinationUrl.TryResolve(Base, "/" + new string('a', 4095), out var url, out _);

        Assert.True(ok);
        Assert.Equal(4096, url!.AbsolutePath.Length);
    }

    [Fact]
    public void Query_of_the_base_is_not_carried_into_the_result()
    {
        var ok = DestinationUrl.TryResolve(new Uri("https://api.example.com/v2/?key=1"), "/items", out var url, out _);

        Assert.True(ok);
        Assert.Equal("https://api.example.com/v2/items", url!.AbsoluteUri);
    }
}
