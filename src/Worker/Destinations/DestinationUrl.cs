namespace Dispatcher.Worker.Destinations;

/// <summary>
/// Resolves a request's Path against its destination's BaseUrl so that the result can never leave the
/// BaseUrl's scheme, host, port or path prefix: anything that could (an absolute URL, <c>//</c>, <c>@</c>,
/// backslashes, dot segments, control characters, or their percent-encoded forms) is refused.
/// </summary>
internal static class DestinationUrl
{
    public static bool TryResolve(Uri baseUrl, string? path, out Uri? url, out string? error)
    {
        url = null;
        error = Check(path);
        if (error is not null)
            return false;

        var prefix = baseUrl.GetLeftPart(UriPartial.Path);
        if (!prefix.EndsWith('/'))
            prefix += "/";
        if (!Uri.TryCreate(prefix + path!.TrimStart('/'), UriKind.Absolute, out var candidate))
        {
            error = "Path does not form a valid URL.";
            return false;
        }

        var sameOrigin = candidate.Scheme == baseUrl.Scheme
            && string.Equals(candidate.IdnHost, baseUrl.IdnHost, StringComparison.OrdinalIgnoreCase)
            && candidate.Port == baseUrl.Port
            && candidate.AbsolutePath.StartsWith(new Uri(prefix).AbsolutePath, StringComparison.Ordinal);
        if (!sameOrigin)
        {
            error = "Path leaves the destination's BaseUrl.";
            return false;
        }
        url = candidate;
        return true;
    }

    private static string? Check(string? path)
    {
        if (string.IsNullOrEmpty(path))
            return "Path is required.";
        if (path.Length > 4096)
            return "Path is longer than 4096 characters.";
        foreach (var c in path)
        {
            if (c < 0x21 || c == 0x7F)
                return c is '\r' or '\n' ? "Path contains CR or LF." : "Path contains whitespace or a control character.";
        }
        if (path.Contains('\\', StringComparison.Ordinal))
            return "Path contains a backslash.";
        if (path.Contains('#', StringComparison.Ordinal))
            return "Path contains a fragment ('#').";

        var queryStart = path.IndexOf('?', StringComparison.Ordinal);
        var pathPart = queryStart < 0 ? path : path[..queryStart];
        if (LooksAbsolute(pathPart))
            return "Path is an absolute URL; it must be relative to the destination's BaseUrl.";

        // Check the path both as written and percent-decoded: %2F, %5C, %40 and %2E%2E must not sneak through.
        string decoded;
        try
        {
            decoded = Uri.UnescapeDataString(pathPart);
        }
        catch (UriFormatException)
        {
            return "Path has invalid percent-encoding.";
        }
        foreach (var form in (ReadOnlySpan<string>)[pathPart, decoded])
        {
            if (form.StartsWith("//", StringComparison.Ordinal) || form.Contains("//", StringComparison.Ordinal))
                return "Path contains '//'.";
            if (form.Contains('@', StringComparison.Ordinal))
                return "Path contains '@'.";
            if (form.Contains('\\', StringComparison.Ordinal))
                return "Path contains a backslash.";
            if (form.AsSpan().IndexOfAny('\r', '\n') >= 0)
                return "Path contains CR or LF.";
            foreach (var segment in form.Split('/'))
            {
                if (segment is "." or "..")
                    return "Path contains a dot segment ('.' or '..').";
            }
        }
        if (!ReferenceEquals(decoded, pathPart) && decoded.Contains('/', StringComparison.Ordinal)
            && pathPart.Contains("%2f", StringComparison.OrdinalIgnoreCase))
            return "Path contains an encoded '/'.";
        return null;
    }

    // "scheme:" at the start (http:, https:, file:, javascript:...), before any '/'.
    private static bool LooksAbsolute(string pathPart)
    {
        var colon = pathPart.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0)
            return false;
        var slash = pathPart.IndexOf('/', StringComparison.Ordinal);
        if (slash >= 0 && slash < colon)
            return false;
        return char.IsAsciiLetter(pathPart[0]);
    }
}
