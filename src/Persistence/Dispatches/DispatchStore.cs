using Dispatcher.Persistence.Model;
using Npgsql;

namespace Dispatcher.Persistence.Dispatches;

/// <summary>
/// The hot-path writes, as plain SQL through Npgsql: each call is one statement for a whole batch of
/// requests (arrays unnested server-side), so concurrent requests share one round trip and one commit.
/// </summary>
public sealed class DispatchStore(DispatcherDataSources dataSources)
{
    // A new RequestId is inserted InProgress. An existing row is taken over only when it is not terminal and
    // (a) it is Scheduled and the message presented owns it (the scheduled retry, park or replay message); or
    // (b) it is InProgress and: the claim is this very claim retried (same lease token); or its owner's lease
    //     expired; or the owning message was redelivered by the broker (its consumer died: same MessageId and
    //     flagged redelivered); or the caller asks to take over (a redelivered message without a MessageId: NULL).
    // Terminal rows, rows owned by another live message and fresh copies of the owning message (published twice:
    // a relay that died between publishing and marking) are duplicates: they return no row.
    // (Before: any copy of the owning message took a live claim over, so a twice-published message was called twice.)
    private const string ClaimSql = """
        INSERT INTO dispatches AS d (request_id, destination, state, attempts, cycle, request, message_id,
                                     lease_token, lease_until, trace_parent, created_at, updated_at)
        SELECT t.request_id, t.destination, 'InProgress', 0, 0, t.request::jsonb, t.message_id,
               t.lease_token, t.lease_until, t.trace_parent, @now, @now
        FROM unnest(@request_ids, @destinations, @requests, @message_ids, @lease_tokens, @lease_untils, @trace_parents)
             AS t(request_id, destination, request, message_id, lease_token, lease_until, trace_parent)
        ON CONFLICT (request_id) DO UPDATE
        SET state = 'InProgress',
            message_id = COALESCE(EXCLUDED.message_id, d.message_id),
            lease_token = EXCLUDED.lease_token,
            lease_until = EXCLUDED.lease_until,
            updated_at = EXCLUDED.updated_at
        WHERE (d.state = 'Scheduled' AND d.message_id = EXCLUDED.message_id)
           OR (d.state = 'InProgress' AND (d.lease_token = EXCLUDED.lease_token
                                           OR EXCLUDED.message_id IS NULL
                                           OR d.lease_until < EXCLUDED.updated_at
                                           OR (d.message_id = EXCLUDED.message_id AND d.request_id = ANY(@redelivered_ids))))
        RETURNING d.request_id, d.attempts, d.cycle, d.first_attempt_at, d.created_at
        """;

    // One statement: the state change (fenced by the lease token, so a worker that lost its lease cannot
    // overwrite the new owner), the attempt history (always: the call happened) and the outbox rows (only for
    // rows actually updated), atomically. The outbox trigger NOTIFYs the relays on commit.
    private const string CompleteSql = """
        WITH u AS (
            SELECT * FROM unnest(@request_ids, @lease_tokens, @states, @reasons, @attempt_deltas, @status_codes,
                                 @errors, @response_headers, @response_bodies, @first_attempt_ats, @completed_ats,
                                 @next_attempt_ats, @next_message_ids)
            AS t(request_id, lease_token, state, reason, attempt_delta, status_code, error, response_headers,
                 response_body, first_attempt_at, completed_at, next_attempt_at, next_message_id)
        ), upd AS (
            UPDATE dispatches d
            SET state = u.state,
                reason = u.reason,
                attempts = d.attempts + u.attempt_delta,
                status_code = CASE WHEN u.attempt_delta > 0 THEN u.status_code ELSE d.status_code END,
                response_headers = CASE WHEN u.attempt_delta > 0 THEN u.response_headers::jsonb ELSE d.response_headers END,
                response_body = CASE WHEN u.attempt_delta > 0 THEN u.response_body ELSE d.response_body END,
                last_error = CASE WHEN u.attempt_delta > 0 OR u.error IS NOT NULL THEN u.error ELSE d.last_error END,
                first_attempt_at = COALESCE(d.first_attempt_at, u.first_attempt_at),
                completed_at = u.completed_at,
                next_attempt_at = u.next_attempt_at,
                message_id = COALESCE(u.next_message_id, d.message_id),
                lease_token = NULL,
                lease_until = NULL,
                updated_at = @now
            FROM u
            -- The = ANY gives the planner an indexed condition of known size: with only the join, on a young table
            -- (its statistics lagging behind its growth) it hash-joined a sequential scan of every dispatch.
            WHERE d.request_id = ANY(@request_ids) AND d.request_id = u.request_id AND d.lease_token = u.lease_token
            RETURNING d.request_id, u.lease_token
        ), att AS (
            INSERT INTO dispatch_attempts (request_id, cycle, number, started_at, duration_ms, result, status_code, error, lease_token)
            SELECT * FROM unnest(@a_request_ids, @a_cycles, @a_numbers, @a_started_ats, @a_durations, @a_results,
                                 @a_status_codes, @a_errors, @a_lease_tokens)
            -- A completion retried after its commit's answer was lost must not record the same call twice.
            ON CONFLICT (lease_token) DO NOTHING
        ), ob AS (
            INSERT INTO outbox (message_id, kind, payload, trace_parent, not_before, created_at, publish_attempts, held_for)
            SELECT o.message_id, o.kind, o.payload::jsonb, o.trace_parent, o.not_before, @now, 0, o.held_for
            FROM unnest(@o_request_ids, @o_lease_tokens, @o_message_ids, @o_kinds, @o_payloads, @o_trace_parents, @o_not_befores, @o_held_fors)
                 AS o(request_id, lease_token, message_id, kind, payload, trace_parent, not_before, held_for)
            -- By lease token too: a batch may hold two completions of one request (a copy that took the row over
            -- and the one it fenced out, finishing together); only the owner's message may be written.
            JOIN upd ON upd.request_id = o.request_id AND upd.lease_token = o.lease_token
            RETURNING id, message_id
        )
        -- The completions applied (request and lease token), then the outbox rows written (their ids let the
        -- worker hand its events to its own publisher and mark them published without a search).
        SELECT request_id, lease_token, NULL::bigint, NULL::uuid FROM upd
        UNION ALL
        SELECT NULL, NULL, id, message_id FROM ob
        """;

    // A request that is dead on arrival. A redelivery, or a request that reuses the RequestId of an existing
    // dispatch, changes nothing and publishes nothing (ON CONFLICT ... WHERE false for them). The one exception is
    // the message that owns a Scheduled row (a replayed request that is still invalid, or whose destination is
    // still unknown): that cycle ends as a dead letter again.
    private const string RejectSql = """
        WITH ins AS (
            INSERT INTO dispatches AS d (request_id, destination, state, reason, attempts, cycle, request, message_id,
                                         last_error, trace_parent, created_at, updated_at, completed_at)
            VALUES (@request_id, @destination, 'DeadLettered', @reason, 0, 0, @request::jsonb, @message_id,
                    @error, @trace_parent, @now, @now, @now)
            ON CONFLICT (request_id) DO UPDATE
            SET state = 'DeadLettered', reason = EXCLUDED.reason, last_error = EXCLUDED.last_error,
                completed_at = EXCLUDED.completed_at, updated_at = EXCLUDED.updated_at, next_attempt_at = NULL
            WHERE d.state = 'Scheduled' AND d.message_id = EXCLUDED.message_id
            RETURNING d.request_id
        )
        INSERT INTO outbox (message_id, kind, payload, trace_parent, not_before, created_at, publish_attempts)
        SELECT @event_id, @event_kind, @event_payload::jsonb, @trace_parent, @now, @now, 0 FROM ins
        """;

    /// <summary>Claims a batch of distinct RequestIds; the results are in the order of <paramref name="commands"/>.</summary>
    /// <remarks>
    /// Claims commit without waiting for the WAL flush (<c>synchronous_commit = off</c>): nothing is acknowledged
    /// on a claim, and the completion that follows is durable (its flush covers the claim too). A claim lost in a
    /// PostgreSQL crash shows up as a completion that does not apply; the worker then claims again and, if that
    /// succeeds, completes (DispatchProcessor.CommitAsync).
    /// </remarks>
    public async Task<ClaimResult[]> ClaimAsync(IReadOnlyList<ClaimCommand> commands, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var cmd = dataSources.Relaxed.CreateCommand(ClaimSql);
        cmd.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now));
        cmd.AddArray("request_ids", commands, c => c.RequestId);
        cmd.AddArray("destinations", commands, c => c.Destination);
        cmd.AddArray("requests", commands, c => c.RequestJson);
        cmd.AddArray("message_ids", commands, c => c.MessageId);
        cmd.AddArray("lease_tokens", commands, c => c.LeaseToken);
        cmd.AddArray("lease_untils", commands, c => c.LeaseUntil);
        cmd.AddArray("trace_parents", commands, c => c.TraceParent);
        // Redeliveries are rare (a consumer died): most batches send an empty array.
        cmd.AddArray("redelivered_ids", commands.Any(c => c.Redelivered) ? commands.Where(c => c.Redelivered).ToList() : [], c => c.RequestId);

        var claimed = new Dictionary<Guid, ClaimResult>(commands.Count);
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                claimed[reader.GetGuid(0)] = new ClaimResult(
                    true,
                    reader.GetInt32(1),
                    reader.GetInt32(2),
                    reader.IsDBNull(3) ? null : reader.GetFieldValue<DateTimeOffset>(3),
                    reader.GetFieldValue<DateTimeOffset>(4));
            }
        }

        var results = new ClaimResult[commands.Count];
        for (var i = 0; i < commands.Count; i++)
            results[i] = claimed.TryGetValue(commands[i].RequestId, out var r) ? r : default;
        return results;
    }

    /// <summary>
    /// Commits a batch of completions; returns, per command, whether it still owned its row and the id of the
    /// outbox row it wrote.
    /// </summary>
    public async Task<CompletionResult[]> CompleteAsync(IReadOnlyList<CompletionCommand> commands, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var attempts = commands.Where(c => c.Attempt is not null).ToList();
        var outbox = commands.Where(c => c.Outbox is not null).ToList();

        await using var cmd = dataSources.Durable.CreateCommand(CompleteSql);
        cmd.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now));
        cmd.AddArray("request_ids", commands, c => c.RequestId);
        cmd.AddArray("lease_tokens", commands, c => c.LeaseToken);
        cmd.AddArray("states", commands, c => StateName(c.State));
        cmd.AddArray("reasons", commands, c => c.Reason);
        cmd.AddArray("attempt_deltas", commands, c => c.Attempt is null ? 0 : 1);
        cmd.AddArray("status_codes", commands, c => c.StatusCode);
        cmd.AddArray("errors", commands, c => c.LastError);
        cmd.AddArray("response_headers", commands, c => c.ResponseHeadersJson);
        cmd.AddArray("response_bodies", commands, c => c.ResponseBody);
        cmd.AddArray("first_attempt_ats", commands, c => c.FirstAttemptAt);
        cmd.AddArray("completed_ats", commands, c => c.CompletedAt);
        cmd.AddArray("next_attempt_ats", commands, c => c.NextAttemptAt);
        cmd.AddArray("next_message_ids", commands, c => c.State == DispatchState.Scheduled ? c.Outbox?.MessageId : null);

        cmd.AddArray("a_request_ids", attempts, c => c.RequestId);
        cmd.AddArray("a_cycles", attempts, c => c.Cycle);
        cmd.AddArray("a_numbers", attempts, c => c.Attempt!.Number);
        cmd.AddArray("a_started_ats", attempts, c => c.Attempt!.StartedAt);
        cmd.AddArray("a_durations", attempts, c => c.Attempt!.DurationMs);
        cmd.AddArray("a_results", attempts, c => c.Attempt!.Result);
        cmd.AddArray("a_status_codes", attempts, c => c.Attempt!.StatusCode);
        cmd.AddArray("a_errors", attempts, c => c.Attempt!.Error);
        cmd.AddArray("a_lease_tokens", attempts, c => c.LeaseToken);

        cmd.AddArray("o_request_ids", outbox, c => c.RequestId);
        cmd.AddArray("o_lease_tokens", outbox, c => c.LeaseToken);
        cmd.AddArray("o_message_ids", outbox, c => c.Outbox!.MessageId);
        cmd.AddArray("o_kinds", outbox, c => c.Outbox!.Kind);
        cmd.AddArray("o_payloads", outbox, c => c.Outbox!.Payload);
        cmd.AddArray("o_trace_parents", outbox, c => c.Outbox!.TraceParent);
        cmd.AddArray("o_not_befores", outbox, c => c.Outbox!.NotBefore);
        cmd.AddArray("o_held_fors", outbox, c => c.Outbox!.HeldFor);

        var applied = new HashSet<(Guid RequestId, Guid LeaseToken)>(commands.Count);
        var outboxIds = new Dictionary<Guid, long>(outbox.Count);
        await using (var reader = await cmd.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                if (!reader.IsDBNull(0))
                    applied.Add((reader.GetGuid(0), reader.GetGuid(1)));
                else
                    outboxIds[reader.GetGuid(3)] = reader.GetInt64(2);
            }
        }

        var results = new CompletionResult[commands.Count];
        for (var i = 0; i < commands.Count; i++)
        {
            var c = commands[i];
            results[i] = applied.Contains((c.RequestId, c.LeaseToken))
                ? new CompletionResult(true, c.Outbox is { } o && outboxIds.TryGetValue(o.MessageId, out var id) ? id : null)
                : default;
        }
        return results;
    }

    /// <summary>Records a dead-on-arrival request; false when the RequestId already existed (nothing changed).</summary>
    public async Task<bool> RejectAsync(RejectCommand command, CancellationToken cancellationToken)
    {
        await using var cmd = dataSources.Durable.CreateCommand(RejectSql);
        var p = cmd.Parameters;
        p.Add(new NpgsqlParameter<Guid>("request_id", command.RequestId));
        p.Add(new NpgsqlParameter<string>("destination", command.Destination));
        p.Add(new NpgsqlParameter<string>("reason", command.Reason));
        p.Add(new NpgsqlParameter<string>("error", command.Error));
        p.Add(new NpgsqlParameter<string>("request", command.RequestJson));
        p.Add(new NpgsqlParameter("message_id", (object?)command.MessageId ?? DBNull.Value) { NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Uuid });
        p.Add(new NpgsqlParameter("trace_parent", (object?)command.TraceParent ?? DBNull.Value) { NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
        p.Add(new NpgsqlParameter<DateTimeOffset>("now", command.Now));
        p.Add(new NpgsqlParameter<Guid>("event_id", command.Event.MessageId));
        p.Add(new NpgsqlParameter<string>("event_kind", command.Event.Kind));
        p.Add(new NpgsqlParameter<string>("event_payload", command.Event.Payload));
        return await cmd.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    private static string StateName(DispatchState state) => state switch
    {
        DispatchState.InProgress => nameof(DispatchState.InProgress),
        DispatchState.Scheduled => nameof(DispatchState.Scheduled),
        DispatchState.Succeeded => nameof(DispatchState.Succeeded),
        DispatchState.DeadLettered => nameof(DispatchState.DeadLettered),
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, null),
    };
}
