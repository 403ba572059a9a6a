-- Issue 11: a new order and its first placeOrder in one transaction.
--
-- Intake inserts the order `accepted` (the idempotency gate: a same-key
-- request waits on the unique index there and replays, before any lock
-- is taken), then, in the same transaction, calls this function: it takes
-- the placeOrder slot and, when one is granted, claims the order `placing`
-- under the caller's lease and inserts the exchange row. Every time it
-- stamps (lease, last_place_started_at, first_sent_at) is read after the
-- slot lock is held, so a wait for the lock can never leave a lease or a
-- send time older than the send (adversarial review of issue 11).
--
-- The wait for the slot lock is bounded by `lock_wait_ms`: a busy lock
-- means "not now" (wait_ms = -1, nothing written here); the order stays
-- `accepted` and the background dispatcher sends it. Intake never waits
-- long on the shared budget, so a slow slot holder cannot fail a request.
--
-- Returns wait_ms = 0 and the attempt when begun (send now); wait_ms > 0
-- when the budget (or a pause) has no slot for that long; -1 when the lock
-- was busy or the order is no longer a fresh `accepted` one.
create function begin_first_place(
    p_order uuid, p_lease_token uuid, p_lease_secs double precision,
    p_exchange_id uuid, p_operation text, p_method text, p_url text, p_request_body jsonb,
    p_slot_op text, p_per_minute integer, p_window_ms integer, p_lock_wait_ms integer)
returns table (wait_ms bigint, attempt integer)
language plpgsql as $$
declare
    saved text := current_setting('lock_timeout');
    waited bigint;
    stamp timestamptz;
    n integer;
begin
    perform set_config('lock_timeout', p_lock_wait_ms || 'ms', true);
    begin
        waited := take_upstream_slot(p_slot_op, p_per_minute, p_window_ms);
    exception when lock_not_available then
        waited := -1;
    end;
    perform set_config('lock_timeout', saved, true);
    if waited <> 0 then
        return query select waited, null::integer;
        return;
    end if;
    stamp := clock_timestamp();
    update orders o set status = 'placing', status_reason = null,
        lease_token = p_lease_token, lease_sent = true,
        lease_until = stamp + make_interval(secs => p_lease_secs),
        attempts = o.attempts + 1, last_place_started_at = stamp,
        first_sent_at = coalesce(o.first_sent_at, stamp), last_place_ended_at = null
     where o.order_id = p_order and o.status = 'accepted' and o.lease_token is null
    returning o.attempts into n;
    if n is null then
        -- Not ours to send (cannot happen for the row this transaction just
        -- inserted); the slot is wasted, never overspent.
        return query select -1::bigint, null::integer;
        return;
    end if;
    insert into upstream_exchanges
        (exchange_id, order_id, operation, attempt, method, url, request_body)
    values (p_exchange_id, p_order, p_operation, n, p_method, p_url, p_request_body);
    return query select 0::bigint, n;
end;
$$;
