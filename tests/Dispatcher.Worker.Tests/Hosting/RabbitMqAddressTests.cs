using Dispatcher.Worker.Hosting;

namespace Dispatcher.Worker.Tests.Hosting;

public sealed class RabbitMqAddressTests
{
    [Fact]
    public void Full_address_is_parsed()
    {
        var address = RabbitMqAddress.Parse("amqp://dispatcher:s3cret@rabbit.internal:5673/orders");

        Assert.Equal(new RabbitMqAddress("rabbit.internal", 5673, "orders", "dispatcher", "s3cret", UseTls: false), address);
    }

    [Fact]
    public void Percent_encoded_user_and_password_are_decoded()
    {
        var address = RabbitMqAddress.Parse("amqp://svc%40corp:p%40ss%3Aw%2Frd%25@rabbit:5672/");

        Assert.Equal("svc@corp", address.Username);
        Assert.Equal("p@ss:w/rd%", address.Password);
    }

    [Theory]
    [InlineData("amqp://rabbit/%2f", "/")]
    [InlineData("amqp://rabbit/%2F", "/")]
    [InlineData("amqp://rabbit/", "/")]
    [InlineData("amqp://rabbit", "/")]
    [InlineData("amqp://rabbit/%2fprod", "/prod")]
    [InlineData("amqp://rabbit/team%20a", "team a")]
    public void Virtual_host_is_decoded_and_defaults_to_slash(string value, string vhost)
    {
        Assert.Equal(vhost, RabbitMqAddress.Parse(value).VirtualHost);
    }

    [Theory]
    [InlineData("amqp://rabbit/", 5672, false)]
    [InlineData("rabbitmq://rabbit/", 5672, false)]
    [InlineData("amqps://rabbit/", 5671, true)]
    [InlineData("amqps://rabbit:15671/", 15671, true)]
    [InlineData("amqp://rabbit:5671/", 5671, false)]
    public void Port_defaults_by_scheme(string value, int port, bool tls)
    {
        var address = RabbitMqAddress.Parse(value);

        Assert.Equal(port, address.Port);
        Assert.Equal(tls, address.UseTls);
    }

    [Theory]
    [InlineData("amqp://rabbit/", "guest", "guest")]
    [InlineData("amqp://alice@rabbit/", "alice", "")]
    [InlineData("amqp://alice:@rabbit/", "alice", "")]
    public void Missing_credentials_default_to_guest_or_empty_password(string value, string user, string password)
    {
        var address = RabbitMqAddress.Parse(value);

        Assert.Equal(user, address.Username);
        Assert.Equal(password, address.Password);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    public void Missing_value_names_the_connection_string_key(string? value)
    {
        var ex = Assert.Throws<InvalidOperationException>(() => RabbitMqAddress.Parse(value));

        Assert.StartsWith("ConnectionStrings:RabbitMq is required", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("http://user:hunter2@rabbit/")]
    [InlineData("rabbit:5672")]
    [InlineData("not a url at all")]
    public void Malformed_value_names_the_key_without_echoing_it(string value)
    {
        var ex = Assert.Throws<InvalidOperationException>(() => RabbitMqAddress.Parse(value));

        Assert.StartsWith("ConnectionStrings:RabbitMq must look like", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter2", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("amqp://dispatcher:hunter2@rabbit.internal:5673/orders", "amqp://rabbit.internal:5673/orders")]
    [InlineData("amqps://u:hunter2@rabbit/%2f", "amqps://rabbit:5671/%2F")]
    [InlineData("amqp://u:hunter%32@rabbit/", "amqp://rabbit:5672/%2F")]
    public void ToString_never_contains_the_password(string value, string expected)
    {
        var text = RabbitMqAddress.Parse(value).ToString();

        Assert.Equal(expected, text);
        Assert.DoesNotContain("hunter2", text, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter%32", text, StringComparison.Ordinal);
    }
}
