using System.Net.Http.Headers;
using System.Text;
using Dispatcher.Contracts;
using Dispatcher.Worker.Configuration;
using Dispatcher.Worker.Destinations;

namespace Dispatcher.Worker.Dispatching;

/// <summary>
/// Turns a <see cref="DispatchRequest"/> into what will be sent, or says precisely why it cannot be
/// (which then becomes an <c>InvalidRequest</c> dead letter).
/// </summary>
internal static class RequestPreparer
{
    private static readonly Dictionary<string, HttpMethod> Methods = new(StringComparer.OrdinalIgnoreCase)
    {
        ["GET"] = HttpMethod.Get, ["POST"] = HttpMethod.Post, ["PUT"] = HttpMethod.Put, ["PATCH"] = HttpMethod.Patch,
        ["DELETE"] = HttpMethod.Delete, ["HEAD"] = HttpMethod.Head, ["OPTIONS"] = HttpMethod.Options,
    };

    public static PreparedRequest? Prepare(DispatchRequest request, Destination destination, LimitsOptions limits, out string? error)
    {
        error = Validate(request, destination, limits, out var method, out var url, out var headers, out var body);
        return error is null ? new PreparedRequest(method!, url!, headers!, body, body is null ? null : request.ContentType ?? "application/json") : null;
    }

    private static string? Validate(
        DispatchRequest request, Destination destination, LimitsOptions limits,
        out HttpMethod? method, out Uri? url, out List<KeyValuePair<string, string>>? headers, out byte[]? body)
    {
        url = null;
        headers = null;
        body = null;
        if (!Methods.TryGetValue(request.Method ?? "POST", out method))
            return $"Method '{Printable(request.Method)}' is not one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS.";

        if (!DestinationUrl.TryResolve(destination.BaseUrl, request.Path, out url, out var pathError))
            return pathError;

        var headerError = FilterHeaders(request.Headers, limits, out headers);
        if (headerError is not null)
            return headerError;

        if (request.ContentType is { } contentType && !MediaTypeHeaderValue.TryParse(contentType, out _))
            return $"ContentType '{Printable(contentType)}' is not a valid media type.";

        return DecodeBody(request, limits, out body);
    }

    private static string? FilterHeaders(IReadOnlyDictionary<string, string>? source, LimitsOptions limits, out List<KeyValuePair<string, string>> headers)
    {
        headers = [];
        if (source is null)
            return null;
        if (source.Count > limits.MaxHeaderCount)
            return $"Request has {source.Count} headers; the limit is {limits.MaxHeaderCount}.";
        var bytes = 0;
        foreach (var (name, value) in source)
        {
            if (name is null || !HeaderRules.IsToken(name))
                return $"Header name '{Printable(name)}' is not valid.";
            if (value is null || value.AsSpan().IndexOfAny('\r', '\n', '\0') >= 0)
                return $"Header '{name}' contains CR, LF or NUL (header injection).";
            bytes += name.Length + value.Length;
            if (HeaderRules.NotForwarded.Contains(name))
                continue;
            headers.Add(new(name, value));
        }
        return bytes > limits.MaxHeaderBytes ? $"Request headers take {bytes} bytes; the limit is {limits.MaxHeaderBytes}." : null;
    }

    private static string? DecodeBody(DispatchRequest request, LimitsOptions limits, out byte[]? body)
    {
        body = null;
        if (request.Body is null)
            return null;
        var encoding = request.BodyEncoding ?? "text";
        if (string.Equals(encoding, "base64", StringComparison.OrdinalIgnoreCase))
        {
            if (request.Body.Length / 4 * 3 > limits.MaxRequestBodyBytes + 3)
                return $"Body is larger than {limits.MaxRequestBodyBytes} bytes.";
            try
            {
                body = Convert.FromBase64String(request.Body);
            }
            catch (FormatException)
            {
                return "Body is not valid base64 (BodyEncoding is base64).";
            }
        }
        else if (string.Equals(encoding, "text", StringComparison.OrdinalIgnoreCase))
        {
            if (Encoding.UTF8.GetMaxByteCount(request.Body.Length) > limits.MaxRequestBodyBytes
                && Encoding.UTF8.GetByteCount(request.Body) > limits.MaxRequestBodyBytes)
                return $"Body is larger than {limits.MaxRequestBodyBytes} bytes.";
            body = Encoding.UTF8.GetBytes(request.Body);
        }
        else
        {
            return $"BodyEncoding '{Printable(encoding)}' is not 'text' or 'base64'.";
        }
        return body.Length > limits.MaxRequestBodyBytes ? $"Body is larger than {limits.MaxRequestBodyBytes} bytes." : null;
    }

    /// <summary>Quotes user input in an error message without letting it forge lines.</summary>
    internal static string Printable(string? value)
    {
        if (value is null)
            return "(null)";
        var clipped = value.Length > 64 ? value[..64] + "…" : value;
        return string.Create(clipped.Length, clipped, static (span, s) =>
        {
            for (var i = 0; i < s.Length; i++)
                span[i] = char.IsControl(s[i]) ? '?' : s[i];
        });
    }
}
