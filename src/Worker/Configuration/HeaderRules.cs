namespace Dispatcher.Worker.Configuration;

/// <summary>What may be sent as a header, and what must never be shown.</summary>
internal static class HeaderRules
{
    /// <summary>Hop-by-hop and framing headers: owned by the connection, never forwarded from a request.</summary>
    public static readonly HashSet<string> NotForwarded = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "TE", "Trailer", "Upgrade",
        "Proxy-Authenticate", "Proxy-Authorization", "Host", "Content-Length", "Expect",
    };

    /// <summary>Always redacted in logs, outputs and events; <c>Dispatcher:RedactedHeaders</c> adds more.</summary>
    public static readonly string[] AlwaysRedacted =
        ["Authorization", "Cookie", "Set-Cookie", "Proxy-Authorization", "X-Api-Key"];

    public const string RedactedValue = "[REDACTED]";

    /// <summary>RFC 9110 token: the characters a header name may use.</summary>
    public static bool IsToken(string name)
    {
        if (name.Length == 0)
            return false;
        foreach (var c in name)
        {
            var ok = c is >= 'a' and <= 'z' or >= 'A' and <= 'Z' or >= '0' and <= '9'
                || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal);
            if (!ok)
                return false;
        }
        return true;
    }
}
