using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Dispatcher.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class OutboxNotifyOnlyDue : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // A worker publishes its own DispatchCompleted events right after the commit that wrote them; their rows
            // fall due for the relays only after a grace period (the fallback if that worker dies first). Waking every
            // relay for such rows would cost each of them two queries per commit for nothing, so the trigger
            // notifies only for rows due now and for requests (retries, parks, replays), whose due time a sleeping
            // relay must learn about.
            migrationBuilder.Sql("""
                DROP TRIGGER IF EXISTS outbox_notify ON outbox;
                CREATE OR REPLACE FUNCTION dispatcher_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF EXISTS (SELECT 1 FROM new_rows WHERE kind <> 'completed' OR not_before <= now()) THEN
                        PERFORM pg_notify('dispatcher_outbox', '');
                    END IF;
                    RETURN NULL;
                END $$;
                CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
                    REFERENCING NEW TABLE AS new_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION dispatcher_notify_outbox();
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                DROP TRIGGER IF EXISTS outbox_notify ON outbox;
                CREATE OR REPLACE FUNCTION dispatcher_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_notify('dispatcher_outbox', '');
                    RETURN NULL;
                END $$;
                CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
                    FOR EACH STATEMENT EXECUTE FUNCTION dispatcher_notify_outbox();
                """);
        }
    }
}
