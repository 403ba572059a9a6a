-- Notifications to callers (contract §9, Standard Webhooks).
--
-- notify_endpoints: at most one endpoint per caller. The signing secret is
-- stored encrypted with the gateway's cipher (AAD `notify-secret:{caller_id}`);
-- removed_at set = no deliveries.
--
-- notify_events is an outbox: the trigger below writes one row in the SAME
-- transaction as the status change that causes it, for every statement that
-- changes orders.status (no Rust path can forget it), and only for callers
-- with an active endpoint at that moment. `snapshot` is the order row as it
-- was then (to_jsonb(NEW)); the sender renders the body from it once, stores
-- it in `body`, and every retry signs those same bytes. `seq` orders events:
-- an order's event is claimable only when no earlier event of that order is
-- still pending. Claims are leases (lease_token, lease_until), as for orders.
create table notify_endpoints (
    caller_id uuid primary key references callers (caller_id),
    url text not null constraint notify_endpoints_url_check check (length(url) between 8 and 2000),
    secret_key_id text not null,
    secret_encrypted bytea not null,
    removed_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create trigger notify_endpoints_set_updated_at before update on notify_endpoints
    for each row execute function set_updated_at();

create table notify_events (
    seq bigint generated always as identity primary key,
    event_id text not null constraint notify_events_event_id_key unique,
    order_id uuid not null references orders (order_id),
    caller_id uuid not null references callers (caller_id),
    event_type text not null constraint notify_events_type_check check (event_type in (
        'order.completed', 'order.pending_delivery', 'order.failed',
        'order.canceled', 'order.needs_review')),
    snapshot jsonb not null,
    body text,
    state text not null default 'pending'
        constraint notify_events_state_check check (state in ('pending', 'delivered', 'failed', 'dropped')),
    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    lease_token uuid,
    lease_until timestamptz,
    -- the 3-day retry window runs from here (creation, or the last replay)
    window_from timestamptz not null default now(),
    created_at timestamptz not null default now(),
    finished_at timestamptz
);
-- Work queue and metrics: partial, so they stay O(pending).
create index notify_events_due_idx on notify_events (next_attempt_at) where state = 'pending';
create index notify_events_order_pending_idx on notify_events (order_id, seq) where state = 'pending';
create index notify_events_leased_idx on notify_events (caller_id) where state = 'pending' and lease_until is not null;
create index notify_events_failed_idx on notify_events (seq) where state = 'failed';
-- Replay by caller and time.
create index notify_events_caller_created_idx on notify_events (caller_id, created_at);

-- Every delivery attempt, append-only.
create table notify_attempts (
    attempt_id bigint generated always as identity primary key,
    event_seq bigint not null references notify_events (seq),
    started_at timestamptz not null,
    duration_ms integer not null,
    outcome text not null,
    status_code integer,
    error text,
    response text
);
create index notify_attempts_event_idx on notify_attempts (event_seq);

create function notify_order_event() returns trigger language plpgsql as $$
begin
    if new.status in ('completed', 'pending_delivery', 'failed', 'canceled', 'needs_review')
       and (tg_op = 'INSERT' or new.status is distinct from old.status)
       and exists (select 1 from notify_endpoints e
                   where e.caller_id = new.caller_id and e.removed_at is null) then
        insert into notify_events (event_id, order_id, caller_id, event_type, snapshot)
        values ('msg_' || replace(gen_random_uuid()::text, '-', ''), new.order_id,
                new.caller_id, 'order.' || new.status, to_jsonb(new));
        perform pg_notify('ogw_notify_events', '');
    end if;
    return null;
end
$$;
create trigger orders_notify_status after insert or update of status on orders
    for each row execute function notify_order_event();
