// Integration tests share one RabbitMQ and one PostgreSQL on a 2-core machine: they run one class at a time
// (see Infrastructure/IntegrationCollection.cs); unit tests are cheap either way.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
