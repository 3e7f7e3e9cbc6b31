namespace Dispatcher.Worker.Dispatching;

/// <summary>A validated request, ready to be sent: the URL is resolved and the headers filtered.</summary>
internal sealed record PreparedRequest(
    HttpMethod Method,
    Uri Url,
    IReadOnlyList<KeyValuePair<string, string>> Headers,
    byte[]? Body,
    string? ContentType);
