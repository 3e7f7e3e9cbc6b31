namespace Dispatcher.Contracts;

/// <summary>
/// A command asking Dispatcher to make one HTTP call to a configured destination.
/// Send it to <c>queue:dispatch-requests</c> or publish it. Property names are the wire format.
/// </summary>
public sealed record DispatchRequest
{
    /// <summary>Producer-chosen idempotency key, used end to end (and sent as <c>Idempotency-Key</c>).</summary>
    public Guid RequestId { get; init; }

    /// <summary>Name of a destination configured under <c>Dispatcher:Destinations</c>.</summary>
    public string Destination { get; init; } = "";

    /// <summary>GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS. Default: POST.</summary>
    public string Method { get; init; } = "POST";

    /// <summary>Path (and optional query) relative to the destination's BaseUrl; it can never reach another host.</summary>
    public string Path { get; init; } = "";

    /// <summary>Per-request headers. Hop-by-hop and framing headers are not forwarded.</summary>
    public IReadOnlyDictionary<string, string>? Headers { get; init; }

    /// <summary>The request body: text, or base64 when <see cref="BodyEncoding"/> is <c>base64</c>.</summary>
    public string? Body { get; init; }

    /// <summary><c>text</c> (default) or <c>base64</c>.</summary>
    public string? BodyEncoding { get; init; }

    /// <summary>Content type of <see cref="Body"/>; default <c>application/json</c> when a body is present.</summary>
    public string? ContentType { get; init; }

    /// <summary>No attempt starts after this instant; the request is then dead-lettered as <c>DeadlineExceeded</c>.</summary>
    public DateTimeOffset? Deadline { get; init; }

    /// <summary>Tenant or fairness key.</summary>
    public string? PartitionKey { get; init; }

    /// <summary>Echoed back in <see cref="DispatchCompleted"/>.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }
}
