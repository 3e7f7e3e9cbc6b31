using Dispatcher.Persistence.Model;
using Microsoft.EntityFrameworkCore;

namespace Dispatcher.Persistence;

/// <summary>
/// The schema and its migrations. The hot path does not go through EF Core (see <c>DispatchStore</c>);
/// reads for operators and the migrations do.
/// </summary>
public sealed class DispatcherDbContext(DbContextOptions<DispatcherDbContext> options) : DbContext(options)
{
    public DbSet<DispatchRecord> Dispatches => Set<DispatchRecord>();
    public DbSet<DispatchAttempt> Attempts => Set<DispatchAttempt>();
    public DbSet<OutboxMessage> Outbox => Set<OutboxMessage>();
    public DbSet<RateLimitBucket> RateLimitBuckets => Set<RateLimitBucket>();
    public DbSet<WorkerHeartbeat> WorkerHeartbeats => Set<WorkerHeartbeat>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<DispatchRecord>(e =>
        {
            e.ToTable("dispatches");
            e.HasKey(x => x.RequestId);
            e.Property(x => x.RequestId).HasColumnName("request_id");
            e.Property(x => x.Destination).HasColumnName("destination").IsRequired();
            e.Property(x => x.State).HasColumnName("state").HasConversion<string>().IsRequired();
            e.Property(x => x.Reason).HasColumnName("reason");
            e.Property(x => x.Attempts).HasColumnName("attempts");
            e.Property(x => x.Cycle).HasColumnName("cycle");
            e.Property(x => x.Request).HasColumnName("request").HasColumnType("jsonb").IsRequired();
            e.Property(x => x.MessageId).HasColumnName("message_id");
            e.Property(x => x.LeaseToken).HasColumnName("lease_token");
            e.Property(x => x.LeaseUntil).HasColumnName("lease_until");
            e.Property(x => x.StatusCode).HasColumnName("status_code");
            e.Property(x => x.LastError).HasColumnName("last_error");
            e.Property(x => x.ResponseHeaders).HasColumnName("response_headers").HasColumnType("jsonb");
            e.Property(x => x.ResponseBody).HasColumnName("response_body");
            e.Property(x => x.TraceParent).HasColumnName("trace_parent");
            e.Property(x => x.CreatedAt).HasColumnName("created_at");
            e.Property(x => x.UpdatedAt).HasColumnName("updated_at");
            e.Property(x => x.FirstAttemptAt).HasColumnName("first_attempt_at");
            e.Property(x => x.NextAttemptAt).HasColumnName("next_attempt_at");
            e.Property(x => x.CompletedAt).HasColumnName("completed_at");
            // Operators list dead letters by destination/reason/time.
            e.HasIndex(x => new { x.State, x.Destination, x.CompletedAt }).HasDatabaseName("ix_dispatches_state_destination_completed");
        });

        modelBuilder.Entity<DispatchAttempt>(e =>
        {
            e.ToTable("dispatch_attempts");
            e.HasKey(x => x.Id);
            e.Property(x => x.Id).HasColumnName("id").UseIdentityAlwaysColumn();
            e.Property(x => x.RequestId).HasColumnName("request_id");
            e.Property(x => x.Cycle).HasColumnName("cycle");
            e.Property(x => x.Number).HasColumnName("number");
            e.Property(x => x.StartedAt).HasColumnName("started_at");
            e.Property(x => x.DurationMs).HasColumnName("duration_ms");
            e.Property(x => x.Result).HasColumnName("result").IsRequired();
            e.Property(x => x.StatusCode).HasColumnName("status_code");
            e.Property(x => x.Error).HasColumnName("error");
            e.Property(x => x.LeaseToken).HasColumnName("lease_token");
            e.HasIndex(x => x.RequestId).HasDatabaseName("ix_dispatch_attempts_request_id");
            e.HasIndex(x => x.LeaseToken).IsUnique().HasDatabaseName("ux_dispatch_attempts_lease_token");
        });

        modelBuilder.Entity<OutboxMessage>(e =>
        {
            e.ToTable("outbox");
            e.HasKey(x => x.Id);
            e.Property(x => x.Id).HasColumnName("id").UseIdentityAlwaysColumn();
            e.Property(x => x.MessageId).HasColumnName("message_id");
            e.Property(x => x.Kind).HasColumnName("kind").IsRequired();
            e.Property(x => x.Payload).HasColumnName("payload").HasColumnType("jsonb").IsRequired();
            e.Property(x => x.TraceParent).HasColumnName("trace_parent");
            e.Property(x => x.NotBefore).HasColumnName("not_before");
            e.Property(x => x.CreatedAt).HasColumnName("created_at");
            e.Property(x => x.PublishedAt).HasColumnName("published_at");
            e.Property(x => x.PublishAttempts).HasColumnName("publish_attempts");
            e.Property(x => x.LastError).HasColumnName("last_error");
            e.Property(x => x.HeldFor).HasColumnName("held_for");
            // The relay only ever scans pending rows, in due order.
            e.HasIndex(x => x.NotBefore).HasDatabaseName("ix_outbox_pending_not_before").HasFilter("published_at IS NULL");
            e.HasIndex(x => x.PublishedAt).HasDatabaseName("ix_outbox_published_at").HasFilter("published_at IS NOT NULL");
        });

        modelBuilder.Entity<RateLimitBucket>(e =>
        {
            e.ToTable("rate_limit_buckets");
            e.HasKey(x => x.Destination);
            e.Property(x => x.Destination).HasColumnName("destination");
            e.Property(x => x.Tokens).HasColumnName("tokens");
            e.Property(x => x.UpdatedAt).HasColumnName("updated_at");
            e.Property(x => x.WindowSlots).HasColumnName("window_slots").HasDefaultValueSql("'{}'");
            e.Property(x => x.WindowCounts).HasColumnName("window_counts").HasDefaultValueSql("'{}'");
        });

        modelBuilder.Entity<WorkerHeartbeat>(e =>
        {
            e.ToTable("worker_heartbeats");
            e.HasKey(x => new { x.WorkerId, x.Destination });
            e.Property(x => x.WorkerId).HasColumnName("worker_id");
            e.Property(x => x.Destination).HasColumnName("destination");
            e.Property(x => x.CircuitState).HasColumnName("circuit_state");
            e.Property(x => x.InFlight).HasColumnName("in_flight");
            e.Property(x => x.PermitsPerSecond).HasColumnName("permits_per_second");
            e.Property(x => x.UpdatedAt).HasColumnName("updated_at");
        });
    }
}
