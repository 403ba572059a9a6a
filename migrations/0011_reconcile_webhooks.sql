-- Reconciliation and delivery (issue 4).
--
-- orders.checks counts getOrderDetails checks since the last placeOrder
-- attempt; it drives the capped exponential backoff of the reconciler and is
-- reset when an attempt begins. The budget itself is attempts and age, so a
-- stuck order reaches needs_review and is never retried automatically after.
--
-- webhook_events is the inbox of Xoxoday delivery webhooks: the raw event is
-- stored before anything else happens, once per webhook id (Xoxoday retries a
-- webhook up to three times), so a repeat changes nothing. Events for a
-- poNumber we do not know are kept with matched = false and reported.
alter table orders add column checks integer not null default 0;

create index orders_reconciling_lease_idx on orders (lease_until)
    where status in ('reconciling', 'pending_delivery');

create table webhook_events (
    webhook_id text primary key,
    po_number text,
    xoxoday_order_id bigint,
    delivery_status text,
    order_id uuid references orders (order_id),
    matched boolean not null,
    payload jsonb not null,
    received_at timestamptz not null default now(),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create trigger webhook_events_set_updated_at before update on webhook_events
    for each row execute function set_updated_at();
create index webhook_events_unmatched_idx on webhook_events (received_at) where not matched;
