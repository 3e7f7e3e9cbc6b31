using Dispatcher.Worker.Outbox;

namespace Dispatcher.Worker.Tests.Outbox;

public sealed class CompletedEventPublisherTests
{
    [Theory]
    [InlineData("rabbitmq://127.0.0.1/vm_DispatcherWorker_bus_abc?temporary=true", "rabbitmq://127.0.0.1/")]
    [InlineData("rabbitmq://broker:5673/payments/vm_DispatcherWorker_bus_abc?temporary=true", "rabbitmq://broker:5673/payments/")]
    [InlineData("rabbitmqs://broker/a%2Fb/bus", "rabbitmqs://broker/a%2Fb/")]
    public void The_host_address_is_the_bus_address_without_its_queue_keeping_the_virtual_host(string bus, string host) =>
        Assert.Equal(new Uri(host), CompletedEventPublisher.HostAddressOf(new Uri(bus)));
}
