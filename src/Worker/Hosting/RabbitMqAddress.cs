namespace Dispatcher.Worker.Hosting;

/// <summary><c>ConnectionStrings:RabbitMq</c>: <c>amqp://user:pass@host:port/vhost</c>, parsed once, never printed whole.</summary>
internal sealed record RabbitMqAddress(string Host, ushort Port, string VirtualHost, string Username, string Password, bool UseTls)
{
    public const string Key = "ConnectionStrings:RabbitMq";

    public static RabbitMqAddress Parse(string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
            throw new InvalidOperationException($"{Key} is required (amqp://user:pass@host:port/vhost).");
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Scheme is not ("amqp" or "amqps" or "rabbitmq"))
            throw new InvalidOperationException($"{Key} must look like amqp://user:pass@host:port/vhost.");
        var user = "guest";
        var password = "guest";
        if (!string.IsNullOrEmpty(uri.UserInfo))
        {
            var parts = uri.UserInfo.Split(':', 2);
            user = Uri.UnescapeDataString(parts[0]);
            password = parts.Length > 1 ? Uri.UnescapeDataString(parts[1]) : "";
        }
        var vhost = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
        var tls = uri.Scheme == "amqps";
        var port = uri.IsDefaultPort || uri.Port <= 0 ? (tls ? 5671 : 5672) : uri.Port;
        return new RabbitMqAddress(uri.Host, (ushort)port, vhost.Length == 0 ? "/" : vhost, user, password, tls);
    }

    /// <summary>A plain AMQP connection factory for this address (the worker's own tools: queue depth, error queue).</summary>
    public RabbitMQ.Client.ConnectionFactory ConnectionFactory(string clientName) => new()
    {
        HostName = Host, Port = Port, VirtualHost = VirtualHost, UserName = Username, Password = Password,
        Ssl = new RabbitMQ.Client.SslOption { Enabled = UseTls, ServerName = Host },
        ClientProvidedName = clientName,
    };

    /// <summary>The address without credentials, for logs and output.</summary>
    public override string ToString() => $"{(UseTls ? "amqps" : "amqp")}://{Host}:{Port}/{Uri.EscapeDataString(VirtualHost)}";
}
