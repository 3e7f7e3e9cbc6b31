using Dispatcher.Worker.Configuration;

namespace Dispatcher.Worker.Observability;

/// <summary>Replaces the values of secret-bearing headers before anything is shown, logged or published.</summary>
internal sealed class Redactor(IEnumerable<string> extraNames)
{
    private readonly HashSet<string> _names = new(HeaderRules.AlwaysRedacted.Concat(extraNames), StringComparer.OrdinalIgnoreCase);

    public bool IsSecret(string headerName) => _names.Contains(headerName);

    public Dictionary<string, string>? Redact(IReadOnlyDictionary<string, string>? headers)
    {
        if (headers is null)
            return null;
        var result = new Dictionary<string, string>(headers.Count, StringComparer.OrdinalIgnoreCase);
        foreach (var (name, value) in headers)
            result[name] = _names.Contains(name) ? HeaderRules.RedactedValue : value;
        return result;
    }
}
