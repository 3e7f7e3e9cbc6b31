using Dispatcher.Contracts;
using Dispatcher.Persistence.Dispatches;
using Dispatcher.Persistence.Model;
using Dispatcher.Worker.Destinations;
using Dispatcher.Worker.Observability;
using Dispatcher.Worker.Outbox;
using Dispatcher.Worker.Resilience;

namespace Dispatcher.Worker.Dispatching;

/// <summary>
/// One request, from receipt to its next durable state: validate, claim, call, decide, commit. The caller
/// acknowledges the message only when this returns, that is after the new state has committed.
/// </summary>
internal sealed class DispatchProcessor(
    DestinationRegistry destinations,
    DownstreamCaller caller,
    DispatchWriter writer,
    DurableRetry durably,
    EventHandoff events,
    WorkerSlots slots,
    TimeProvider time,
    ILogger<DispatchProcessor> logger)
{
    public async Task ProcessAsync(IncomingDispatch incoming, CancellationToken cancellationToken)
    {
        using var slot = await slots.EnterAsync(cancellationToken);
        var request = incoming.Request;
        using var scope = logger.BeginScope(new DispatchLogScope(request.RequestId, request.Destination ?? "", DispatchTracing.TraceId(incoming.TraceParent)));
        var options = destinations.Options;
        var requestJson = DispatcherJson.Serialize(request);

        if (request.RequestId == Guid.Empty)
        {
            // Keyed by the MessageId so that a redelivery of the same message records nothing new.
            var key = incoming.MessageId ?? Guid.NewGuid();
            await RejectAsync(incoming, key, DeadLetterReason.InvalidRequest, "RequestId is required.", requestJson, cancellationToken);
            return;
        }
        if (string.IsNullOrWhiteSpace(request.Destination))
        {
            await RejectAsync(incoming, request.RequestId, DeadLetterReason.InvalidRequest, "Destination is required.", requestJson, cancellationToken);
            return;
        }
        if (!destinations.TryGet(request.Destination, out var destination))
        {
            await RejectAsync(incoming, request.RequestId, DeadLetterReason.UnknownDestination,
                $"Destination '{RequestPreparer.Printable(request.Destination)}' is not configured.", requestJson, cancellationToken);
            return;
        }
        var prepared = RequestPreparer.Prepare(request, destination, options.Limits, out var invalid);
        if (prepared is null)
        {
            await RejectAsync(incoming, request.RequestId, DeadLetterReason.InvalidRequest, invalid!, requestJson, cancellationToken);
            return;
        }

        // Held back before the claim: a destination at its cap or with its breaker open would park the request right
        // after claiming it. Writing it back into the outbox unclaimed costs one insert instead of a claim and a
        // completion. It keeps its MessageId, so a Scheduled row this message owns (a scheduled retry, park or
        // replay) stays its own. A redelivered message takes the usual path: it may own a live claim that only its
        // redelivery may take over (a fresh copy of it cannot), and so does a request past its Deadline (it is
        // dead-lettered now rather than later).
        // (Those checked first: a look that holds back takes a place in the destination's line of returns.)
        if (!incoming.Redelivered
            && !(request.Deadline is { } due && time.GetUtcNow() >= due)
            && destination.Policy.ShouldHoldBack(out var holdFor, out var holdReason, request.Deadline))
        {
            await HoldBackAsync(incoming, destination, requestJson, holdFor, holdReason, cancellationToken);
            return;
        }

        var leaseToken = Guid.NewGuid();
        var now = time.GetUtcNow();
        // Built once: a claim retried after a lost connection must present the same owner and lease token, or it
        // would find its own first (committed) claim and take itself for a duplicate.
        var claimCommand = new ClaimCommand(
            request.RequestId,
            destination.Name,
            requestJson,
            incoming.MessageId ?? (incoming.Redelivered ? null : Guid.NewGuid()),
            leaseToken,
            now + destination.Policy.LongestWaitBeforeCall + destination.Options.AttemptTimeout + options.Worker.LeaseMargin,
            incoming.TraceParent,
            incoming.Redelivered);
        // The rate permit this request will want right after its claim: leased meanwhile if none is in hand.
        destination.Policy.AnticipatePermit();
        var claim = await durably.RunAsync(() => writer.ClaimAsync(claimCommand), cancellationToken);
        if (!claim.Claimed)
        {
            destination.Metrics.Duplicates.Inc();
            Log.Duplicate(logger, request.RequestId);
            return;
        }

        var attempt = new DispatchAttemptContext(request, destination, claimCommand, claim);
        if (request.Deadline is { } deadline && time.GetUtcNow() >= deadline)
        {
            await CompleteAsync(attempt, outcome: null, DeadLetterReason.DeadlineExceeded,
                $"Deadline {deadline:O} passed before attempt {claim.Attempts + 1} could start.", cancellationToken);
            return;
        }

        // Waiting on the destination (a rate permit, the call) counts against its cap, not the worker's slots.
        var result = await slot.WithoutSlotAsync(() => destination.Policy.ExecuteAsync(
            ct => CallAsync(destination, prepared, attempt, options.Limits.MaxStoredResponseBytes, ct), cancellationToken, request.Deadline));
        if (result.Outcome is { } outcome)
            await DecideAsync(attempt, outcome, cancellationToken);
        else
            await ParkAsync(attempt, result.ParkFor, result.ParkReason!, cancellationToken);
    }

    private async Task<AttemptOutcome> CallAsync(
        Destination destination, PreparedRequest prepared, DispatchAttemptContext attempt, int maxStoredBytes, CancellationToken cancellationToken)
    {
        var metrics = destination.Metrics;
        metrics.InFlight.Inc();
        using var span = DispatchTracing.StartAttempt(attempt.TraceParent, destination.Name, prepared.Method.Method, out var traceParent);
        try
        {
            var outcome = await caller.CallAsync(destination, prepared, attempt.Request.RequestId, traceParent, maxStoredBytes, cancellationToken);
            span?.SetTag("http.response.status_code", outcome.StatusCode);
            span?.SetTag("dispatcher.attempt", attempt.Number);
            metrics.Attempts(outcome.Result.ToString()).Inc();
            metrics.AttemptDuration.Observe(outcome.Duration.TotalSeconds);
            Log.AttemptFinished(logger, attempt.Request.RequestId, destination.Name, attempt.Number, outcome.Result.ToString(),
                outcome.StatusCode, outcome.Duration.TotalMilliseconds);
            return outcome;
        }
        finally
        {
            metrics.InFlight.Dec();
        }
    }

    /// <summary>
    /// Held back by the destination's policies (at its concurrency cap, out of rate permits, breaker open):
    /// hand the request back to the outbox for later, without counting an attempt or holding a worker slot.
    /// </summary>
    private async Task ParkAsync(DispatchAttemptContext attempt, TimeSpan delay, string reason, CancellationToken cancellationToken)
    {
        var at = SendBackAt(delay);
        if (await RescheduleAsync(attempt, outcome: null, at, cancellationToken, heldFor: reason))
        {
            attempt.Destination.Metrics.Parked(reason).Inc();
            Log.Parked(logger, attempt.Request.RequestId, attempt.Destination.Name, reason, at);
        }
    }

    private async Task HoldBackAsync(
        IncomingDispatch incoming, Destination destination, string requestJson, TimeSpan delay, string reason, CancellationToken cancellationToken)
    {
        var at = SendBackAt(delay);
        var entry = new OutboxEntry(incoming.MessageId ?? Guid.NewGuid(), OutboxKinds.Request, requestJson, at, incoming.TraceParent, HeldFor: reason);
        await durably.RunAsync(() => writer.HoldBackAsync(entry), cancellationToken);
        destination.Metrics.Parked(reason).Inc();
        Log.Parked(logger, incoming.Request.RequestId, destination.Name, reason, at);
    }

    // Spread the returns so that requests sent back together do not all come back in the same instant.
    private DateTimeOffset SendBackAt(TimeSpan delay) => time.GetUtcNow() + delay + TimeSpan.FromMilliseconds(Random.Shared.Next(0, 250));

    private Task DecideAsync(DispatchAttemptContext attempt, AttemptOutcome outcome, CancellationToken cancellationToken)
    {
        if (outcome.Result == AttemptResult.Success)
            return CompleteAsync(attempt, outcome, reason: null, error: null, cancellationToken);
        if (!RetryClassifier.IsRetriable(outcome))
            return CompleteAsync(attempt, outcome, DeadLetterReason.NonRetriableStatus, outcome.Error, cancellationToken);

        var retry = attempt.Destination.Options.Retry;
        if (attempt.Number >= retry.MaxAttempts)
            return CompleteAsync(attempt, outcome, DeadLetterReason.RetriesExhausted, outcome.Error, cancellationToken);

        var nextAt = RetrySchedule.NextAttemptAt(retry, attempt.Number, outcome, time.GetUtcNow(), Random.Shared);
        if (attempt.Request.Deadline is { } deadline && nextAt >= deadline)
        {
            return CompleteAsync(attempt, outcome, DeadLetterReason.DeadlineExceeded,
                $"{outcome.Error}; the next attempt ({nextAt:O}) would start after the Deadline {deadline:O}.", cancellationToken);
        }
        return ScheduleRetryAsync(attempt, outcome, nextAt, cancellationToken);
    }

    private async Task ScheduleRetryAsync(DispatchAttemptContext attempt, AttemptOutcome outcome, DateTimeOffset nextAt, CancellationToken cancellationToken)
    {
        if (await RescheduleAsync(attempt, outcome, nextAt, cancellationToken))
        {
            attempt.Destination.Metrics.RetriesScheduled.Inc();
            Log.RetryScheduled(logger, attempt.Request.RequestId, attempt.Destination.Name, attempt.Number, outcome.Error, nextAt);
        }
    }

    /// <summary>
    /// Commits the request as Scheduled with a copy of it in the outbox, due at <paramref name="at"/> (the durable,
    /// delayed redelivery shared by retries and parking, a park noting why it was <paramref name="heldFor"/>); false
    /// when another owner took the request over.
    /// </summary>
    private async Task<bool> RescheduleAsync(
        DispatchAttemptContext attempt, AttemptOutcome? outcome, DateTimeOffset at, CancellationToken cancellationToken, string? heldFor = null)
    {
        var command = attempt.Completion(outcome, DispatchState.Scheduled, reason: null, outcome?.Error, time.GetUtcNow()) with
        {
            NextAttemptAt = at,
            Outbox = new OutboxEntry(Guid.NewGuid(), OutboxKinds.Request, attempt.RequestJson, at, attempt.TraceParent, heldFor),
        };
        if ((await CommitAsync(attempt, command, cancellationToken)).Applied)
            return true;
        Log.LeaseLost(logger, attempt.Request.RequestId);
        return false;
    }

    /// <summary>
    /// Commits a claimed request's new state. Claims are not flushed before the call (see DispatchStore.ClaimAsync),
    /// so a completion that does not apply may mean that PostgreSQL crashed and lost the claim, not that another
    /// delivery took the request over: claim again, as the same claim, and complete if that succeeds. When another
    /// owner holds the request, or it is already terminal, the claim fails and nothing is written.
    /// </summary>
    private async Task<CompletionResult> CommitAsync(DispatchAttemptContext attempt, CompletionCommand command, CancellationToken cancellationToken)
    {
        var result = await durably.RunAsync(() => writer.CompleteAsync(command), cancellationToken);
        if (result.Applied)
            return result;
        // The same claim again (same message, lease token and redelivery flag: what it could take over then, it may
        // take over now), with a fresh lease.
        var again = attempt.ClaimCommand with { LeaseUntil = time.GetUtcNow() + destinations.Options.Worker.LeaseMargin };
        if (!(await durably.RunAsync(() => writer.ClaimAsync(again), cancellationToken)).Claimed)
            return result;
        Log.Reclaimed(logger, attempt.Request.RequestId);
        return await durably.RunAsync(() => writer.CompleteAsync(command), cancellationToken);
    }

    private async Task CompleteAsync(
        DispatchAttemptContext attempt, AttemptOutcome? outcome, DeadLetterReason? reason, string? error, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var state = reason is null ? DispatchState.Succeeded : DispatchState.DeadLettered;
        var completed = attempt.CompletedEvent(outcome, reason, error, now);
        // Handed off: this worker publishes the event itself right after the commit; the row falls due for the
        // relays only after the grace (see EventHandoff).
        var eventId = Guid.NewGuid();
        var payload = DispatcherJson.Serialize(completed);
        var command = attempt.Completion(outcome, state, reason, error, now) with
        {
            CompletedAt = now,
            Outbox = new OutboxEntry(eventId, OutboxKinds.Completed, payload, events.DueAt(now), attempt.TraceParent),
        };
        var result = await CommitAsync(attempt, command, cancellationToken);
        if (!result.Applied)
        {
            Log.LeaseLost(logger, attempt.Request.RequestId);
            return;
        }
        if (result.OutboxId is { } outboxId)
            events.TryHandOff(new HandedOffEvent(outboxId, eventId, payload, attempt.TraceParent));

        var outcomeLabel = completed.Outcome.ToString();
        var reasonLabel = reason?.ToString() ?? "";
        attempt.Destination.Metrics.Dispatches(outcomeLabel, reasonLabel).Inc();
        attempt.Destination.Metrics.EndToEnd.Observe((now - attempt.Claim.CreatedAt).TotalSeconds);
        if (reason is not null)
            Log.DeadLettered(logger, attempt.Request.RequestId, attempt.Destination.Name, completed.Attempts, reasonLabel, error);
    }

    private async Task RejectAsync(
        IncomingDispatch incoming, Guid key, DeadLetterReason reason, string error, string requestJson, CancellationToken cancellationToken)
    {
        var request = incoming.Request;
        var now = time.GetUtcNow();
        var destination = request.Destination ?? "";
        var completed = new DispatchCompleted
        {
            RequestId = key,
            Destination = destination,
            Outcome = DispatchOutcome.DeadLettered,
            Reason = reason,
            Attempts = 0,
            Error = error,
            CompletedAt = now,
            Metadata = request.Metadata,
        };
        var command = new RejectCommand(key, destination, reason.ToString(), error, requestJson, incoming.MessageId,
            incoming.TraceParent, now,
            new OutboxEntry(Guid.NewGuid(), OutboxKinds.Completed, DispatcherJson.Serialize(completed), now, incoming.TraceParent));
        if (await durably.RunAsync(() => writer.RejectAsync(command, cancellationToken), cancellationToken))
        {
            DispatcherMetrics.Dispatches.WithLabels(RequestPreparer.Printable(destination), nameof(DispatchOutcome.DeadLettered), reason.ToString()).Inc();
            Log.Rejected(logger, key, RequestPreparer.Printable(destination), reason.ToString(), error);
        }
        else
        {
            Log.Duplicate(logger, key);
        }
    }
}
