using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Dispatcher.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class OutboxNotifyDueTime : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // The NOTIFY carries when the earliest of the rows it announces falls due (microseconds since the Unix
            // epoch): a relay asleep until an earlier time need not wake for rows due later (each request held back or
            // parked notifies; a backlog sent back by a breaker woke every relay for a claim and a query per commit).
            // No payload (the previous trigger) still means "look now".
            migrationBuilder.Sql("""
                CREATE OR REPLACE FUNCTION dispatcher_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
                DECLARE
                    due timestamptz;
                BEGIN
                    SELECT min(not_before) INTO due FROM new_rows WHERE kind <> 'completed' OR not_before <= now();
                    IF due IS NOT NULL THEN
                        -- (An infinite not_before, written by hand: no time to announce; '' means look now.)
                        PERFORM pg_notify('dispatcher_outbox',
                            CASE WHEN isfinite(due) THEN floor(extract(epoch FROM due) * 1000000)::bigint::text ELSE '' END);
                    END IF;
                    RETURN NULL;
                END $$;
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                CREATE OR REPLACE FUNCTION dispatcher_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF EXISTS (SELECT 1 FROM new_rows WHERE kind <> 'completed' OR not_before <= now()) THEN
                        PERFORM pg_notify('dispatcher_outbox', '');
                    END IF;
                    RETURN NULL;
                END $$;
                """);
        }
    }
}
