-- Issue 11: the dispatcher claims only what the shared placeOrder budget
-- can send now: a read-only look at take_upstream_slot's window (no lock,
-- no write). Returns how many slots are free, and when none, the
-- milliseconds until one frees (or the pause ends). A hint only: the slot
-- itself is still taken by take_upstream_slot under its advisory lock.
create function upstream_slots_free(op text, per_minute integer, window_ms integer)
returns table (free integer, wait_ms bigint)
language plpgsql as $$
declare
    now_ts timestamptz := clock_timestamp();
    window_start timestamptz := now_ts - make_interval(secs => window_ms / 1000.0);
    paused timestamptz;
    used integer;
    oldest timestamptz;
begin
    select max(paused_until) into paused
      from upstream_pauses
     where operation in (op, '*') and paused_until > now_ts;
    if paused is not null then
        return query select 0, ceil(extract(epoch from paused - now_ts) * 1000)::bigint;
        return;
    end if;
    select count(*) into used
      from upstream_call_slots where operation = op and taken_at > window_start;
    if used < per_minute then
        return query select per_minute - used, 0::bigint;
        return;
    end if;
    select taken_at into oldest
      from upstream_call_slots where operation = op and taken_at > window_start
     order by taken_at offset (used - per_minute) limit 1;
    return query select 0, greatest(1, ceil(extract(epoch from oldest - window_start) * 1000))::bigint;
end;
$$;
