-- Upstream rate limits shared by every replica (contract §2.5).
--
-- Each permitted Xoxoday call leaves one row in upstream_call_slots. A call is
-- allowed only while fewer than `per_minute` rows fall inside the window, and
-- the check-and-insert runs under a per-operation transaction advisory lock,
-- so two replicas can never both take the last slot. This is a strict sliding
-- window: no window of that length ever holds more than the budget. The window
-- is a little longer than 60 s so network jitter between our clock and
-- Xoxoday's arrival times cannot push two calls into one upstream minute.
--
-- upstream_pauses holds penalties (auth.request_limit_exceeded penaltySeconds)
-- and account-wide stops (invalid client, IP not allow-listed), per operation
-- or for '*' (every operation), so every replica honours them.
create table upstream_call_slots (
    slot_id bigint generated always as identity primary key,
    operation text not null,
    taken_at timestamptz not null default clock_timestamp()
);
create index upstream_call_slots_operation_taken_at on upstream_call_slots (operation, taken_at);

create table upstream_pauses (
    operation text primary key,
    paused_until timestamptz not null,
    reason text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create trigger upstream_pauses_updated_at before update on upstream_pauses
    for each row execute function set_updated_at();

-- One round trip: returns 0 when a slot was taken, else the milliseconds to
-- wait before asking again.
create function take_upstream_slot(op text, per_minute integer, window_ms integer)
returns bigint
language plpgsql as $$
declare
    now_ts timestamptz;
    window_start timestamptz;
    paused timestamptz;
    used integer;
    oldest timestamptz;
begin
    perform pg_advisory_xact_lock(hashtext('upstream_slot:' || op));
    -- Read the clock only once the lock is ours: a slot stamped with a time
    -- from before a wait would leave the window too early.
    now_ts := clock_timestamp();
    window_start := now_ts - make_interval(secs => window_ms / 1000.0);
    select max(paused_until) into paused
      from upstream_pauses
     where operation in (op, '*') and paused_until > now_ts;
    if paused is not null then
        return ceil(extract(epoch from paused - now_ts) * 1000)::bigint;
    end if;
    delete from upstream_call_slots
     where operation = op and taken_at < now_ts - make_interval(secs => 2 * window_ms / 1000.0);
    select count(*) into used
      from upstream_call_slots where operation = op and taken_at > window_start;
    if used < per_minute then
        insert into upstream_call_slots (operation, taken_at) values (op, now_ts);
        return 0;
    end if;
    -- The slot frees when the (used - per_minute + 1)-th oldest call leaves the window.
    select taken_at into oldest
      from upstream_call_slots where operation = op and taken_at > window_start
     order by taken_at offset (used - per_minute) limit 1;
    return greatest(1, ceil(extract(epoch from oldest - window_start) * 1000))::bigint;
end;
$$;
