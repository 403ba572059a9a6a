-- Issue 11: placeOrder slots taken in blocks, and counted without scanning
-- the window.
--
-- Until now each call inserted one row and every take counted the rows of
-- the last window under the slot lock: at a high budget that is tens of
-- thousands of rows read per call while every other replica waits for the
-- lock, and each new order held the lock until its own intake transaction
-- committed. Now:
--
-- * one row may hold several slots (`slots`), taken together by one
--   statement of its own for the new orders of one replica that asked at
--   the same moment (`take_upstream_slots`, want = how many asked). The
--   block is granted up to the free budget and never more, and its slots
--   are handed out at once to requests already waiting, so none is held
--   for later: the stamp is still taken just before the sends.
-- * `upto` is the running total of the operation's slots, this row's
--   included. Stamps never go back as `upto` grows (a block is stamped
--   with the later of the clock and the last stamp, under the lock), so
--   the rows of the window are a suffix in `upto` order and the slots in
--   it are (last upto) − (upto before the window's first row): two index
--   probes instead of a count. A clock stepped back holds new stamps at the
--   last one, which keeps them in the window longer, never shorter.
--
-- * at a high rate a replica may take a few slots ahead, for the next
--   quarter second, from the lower half of the budget only, with the row
--   stamped at the end of that quarter second (`take_upstream_block`).
--
-- The guarantee is unchanged: check-and-insert under the per-operation
-- advisory lock, a strict sliding window, pauses honoured.

alter table upstream_call_slots
    add column slots integer not null default 1 check (slots >= 1),
    add column upto bigint;

update upstream_call_slots s set upto = n.upto
  from (select slot_id,
               row_number() over (partition by operation order by taken_at, slot_id) as upto
          from upstream_call_slots) n
 where n.slot_id = s.slot_id;

-- A row stamped later than an earlier one keeps the order (see above).
update upstream_call_slots s set taken_at = m.latest
  from (select slot_id,
               max(taken_at) over (partition by operation order by upto) as latest
          from upstream_call_slots) m
 where m.slot_id = s.slot_id and m.latest > s.taken_at;

alter table upstream_call_slots alter column upto set not null;
create unique index upstream_call_slots_operation_upto on upstream_call_slots (operation, upto);

-- The slots of `op` taken after `window_start`, and the last row's running
-- total and stamp (0 and null when there is none).
create function upstream_window_use(op text, window_start timestamptz,
    out used bigint, out last_upto bigint, out last_at timestamptz)
language plpgsql stable as $$
declare
    first_base bigint;
begin
    select s.upto, s.taken_at into last_upto, last_at
      from upstream_call_slots s where s.operation = op
     order by s.upto desc limit 1;
    select s.upto - s.slots into first_base
      from upstream_call_slots s where s.operation = op and s.taken_at > window_start
     order by s.taken_at, s.upto limit 1;
    used := coalesce(last_upto - first_base, 0);
    last_upto := coalesce(last_upto, 0);
end;
$$;

-- Milliseconds until a slot of `op` frees, when `used` ≥ `per_minute`: the
-- (used − per_minute + 1)-th slot of the window must leave it first (a
-- whole window when there is none: a budget of 0).
create function upstream_slot_wait(op text, used bigint, last_upto bigint,
    per_minute integer, window_ms integer, now_ts timestamptz)
returns bigint
language sql stable as $$
    select greatest(1, coalesce(
        (select ceil(extract(epoch from
                    s.taken_at + make_interval(secs => window_ms / 1000.0) - now_ts) * 1000)::bigint
           from upstream_call_slots s
          where s.operation = op and s.upto >= last_upto - used + (used - per_minute + 1)
          order by s.upto limit 1),
        window_ms))
$$;

-- Takes up to `want` slots of `op` in one row; returns how many were
-- granted (0 when none is free or a pause holds) and, when fewer than
-- `want`, the milliseconds until another may free.
--
-- `ahead` more may be granted for the asker to hand out within `ahead_ms`
-- (a replica taking slots for the next moment of a high rate): only from
-- the lower half of the budget, so a tight budget is never held for
-- later, and the row is then stamped `ahead_ms` later than the clock.
-- The asker hands a slot out before its own clock, read before the
-- statement was sent, passes `ahead_ms`: so before the stamp. Why no 60 s
-- of sends can then hold more than the budget (second review of issue
-- 11): take the last row k inserted with a send in Xoxoday's window
-- [a, a + 60). Every send comes after its row's insert, and at most the
-- margin δ after its stamp (hand-out before the stamp, send within δ of
-- the hand-out). So every other row i with a send in the window has a
-- stamp ≥ a − δ > (insert of k) − 60 − δ ≥ (insert of k) − W when
-- δ ≤ W − 60 s: it was counted when k was granted, within the budget.
-- Returns the slots granted for `want` and, separately, those ahead.
create function take_upstream_block(op text, want integer, ahead integer, ahead_ms integer,
    per_minute integer, window_ms integer)
returns table (granted integer, granted_ahead integer, wait_ms bigint)
language plpgsql as $$
declare
    now_ts timestamptz;
    paused timestamptz;
    u record;
    n integer;
    extra integer;
begin
    if want < 1 or ahead < 0 or ahead_ms < 0 then
        raise exception 'take_upstream_block: want % ahead % ahead_ms %', want, ahead, ahead_ms;
    end if;
    perform pg_advisory_xact_lock(hashtext('upstream_slot:' || op));
    -- Read the clock only once the lock is ours: a slot stamped with a time
    -- from before a wait would leave the window too early.
    now_ts := clock_timestamp();
    select max(paused_until) into paused
      from upstream_pauses
     where operation in (op, '*') and paused_until > now_ts;
    if paused is not null then
        return query select 0, 0, ceil(extract(epoch from paused - now_ts) * 1000)::bigint;
        return;
    end if;
    select * into u
      from upstream_window_use(op, now_ts - make_interval(secs => window_ms / 1000.0));
    delete from upstream_call_slots
     where operation = op and taken_at < now_ts - make_interval(secs => 2 * window_ms / 1000.0);
    n := least(want::bigint, per_minute - u.used);
    if n <= 0 then
        return query select 0, 0, upstream_slot_wait(op, u.used, u.last_upto, per_minute, window_ms, now_ts);
        return;
    end if;
    extra := greatest(0, least(ahead::bigint, per_minute / 2 - (u.used + n)));
    insert into upstream_call_slots (operation, taken_at, slots, upto)
    values (op,
            greatest(now_ts + case when extra > 0
                                   then make_interval(secs => ahead_ms / 1000.0)
                                   else interval '0' end,
                     u.last_at),
            n + extra, u.last_upto + n + extra);
    -- Fewer than asked: the rest learn when the next slot frees.
    return query select n, extra, case when n < want
        then upstream_slot_wait(op, u.used + n, u.last_upto + n, per_minute, window_ms, now_ts)
        else 0::bigint end;
end;
$$;

-- A block with nothing ahead.
create function take_upstream_slots(op text, want integer, per_minute integer, window_ms integer)
returns table (granted integer, wait_ms bigint)
language sql as $$
    select b.granted, b.wait_ms from take_upstream_block(op, want, 0, 0, per_minute, window_ms) b
$$;

-- One slot, as before (the background dispatcher and the reconciler, inside
-- their own transactions): 0 when taken, else the milliseconds to wait.
create or replace function take_upstream_slot(op text, per_minute integer, window_ms integer)
returns bigint
language plpgsql as $$
declare
    t record;
begin
    select * into t from take_upstream_slots(op, 1, per_minute, window_ms);
    return case when t.granted > 0 then 0 else t.wait_ms end;
end;
$$;

-- The read-only look (migration 0042), counted the same way.
create or replace function upstream_slots_free(op text, per_minute integer, window_ms integer)
returns table (free integer, wait_ms bigint)
language plpgsql as $$
declare
    now_ts timestamptz := clock_timestamp();
    paused timestamptz;
    u record;
begin
    select max(paused_until) into paused
      from upstream_pauses
     where operation in (op, '*') and paused_until > now_ts;
    if paused is not null then
        return query select 0, ceil(extract(epoch from paused - now_ts) * 1000)::bigint;
        return;
    end if;
    select * into u
      from upstream_window_use(op, now_ts - make_interval(secs => window_ms / 1000.0));
    if u.used < per_minute then
        return query select (per_minute - u.used)::integer, 0::bigint;
        return;
    end if;
    return query select 0, upstream_slot_wait(op, u.used, u.last_upto, per_minute, window_ms, now_ts);
end;
$$;

-- A new order's first placeOrder once its slot is granted (intake takes the
-- slot in a block, between the insert and this, in the same transaction):
-- claims the order `placing` under the caller's lease, attempt 1, stamps
-- read now, and inserts the exchange row. Returns the attempt, or null when
-- the order is not a fresh `accepted` one (the slot is then wasted, never
-- overspent).
create function begin_granted_place(
    p_order uuid, p_lease_token uuid, p_lease_secs double precision,
    p_exchange_id uuid, p_operation text, p_method text, p_url text, p_request_body jsonb)
returns integer
language plpgsql as $$
declare
    stamp timestamptz := clock_timestamp();
    n integer;
begin
    update orders o set status = 'placing', status_reason = null,
        lease_token = p_lease_token, lease_sent = true,
        lease_until = stamp + make_interval(secs => p_lease_secs),
        attempts = o.attempts + 1, last_place_started_at = stamp,
        first_sent_at = coalesce(o.first_sent_at, stamp), last_place_ended_at = null
     where o.order_id = p_order and o.status = 'accepted' and o.lease_token is null
    returning o.attempts into n;
    if n is null then
        return null;
    end if;
    insert into upstream_exchanges
        (exchange_id, order_id, operation, attempt, method, url, request_body)
    values (p_exchange_id, p_order, p_operation, n, p_method, p_url, p_request_body);
    return n;
end;
$$;

-- Migration 0043's fused form (a replica not yet upgraded may still call
-- it) now shares the claim above.
create or replace function begin_first_place(
    p_order uuid, p_lease_token uuid, p_lease_secs double precision,
    p_exchange_id uuid, p_operation text, p_method text, p_url text, p_request_body jsonb,
    p_slot_op text, p_per_minute integer, p_window_ms integer, p_lock_wait_ms integer)
returns table (wait_ms bigint, attempt integer)
language plpgsql as $$
declare
    saved text := current_setting('lock_timeout');
    waited bigint;
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
    n := begin_granted_place(p_order, p_lease_token, p_lease_secs, p_exchange_id,
                             p_operation, p_method, p_url, p_request_body);
    return query select case when n is null then -1::bigint else 0::bigint end, n;
end;
$$;
