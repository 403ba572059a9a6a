-- The orders table is both the record and the work queue. A row (with its
-- poNumber) is committed before any placeOrder carries that poNumber
-- (contract §2.2). (caller_id, idempotency_key) is unique for ever: the
-- idempotency gate is a single `insert ... on conflict do nothing`.
-- request_fingerprint is SHA-256 of the canonical validated request; a repeat
-- with another fingerprint is refused (422).
--
-- Leases: a dispatcher claims an `accepted` order by setting status
-- `placing`, a fresh lease_token and a short lease_until in one committed
-- UPDATE (`for update skip locked` for batches), and renews lease_until by
-- heartbeat while its call is in flight. lease_sent records whether this
-- claim reached the point of sending: an expired lease that never sent goes
-- back to `accepted`; one that sent goes to `reconciling`. Every write-back
-- after an upstream call is guarded by `status = 'placing' and lease_token =
-- $token`, so a stale worker changes nothing once a newer claim exists.
-- attempts and last_place_started_at feed the reconciler's settle window.
create table orders (
    order_id uuid primary key,
    caller_id uuid not null references callers (caller_id),
    idempotency_key text not null,
    request_fingerprint bytea not null,
    po_number text not null constraint orders_po_number_key unique
        constraint orders_po_number_check check (length(po_number) between 1 and 100),
    status text not null default 'accepted'
        constraint orders_status_check check (status in (
            'accepted', 'placing', 'completed', 'pending_delivery',
            'failed', 'reconciling', 'canceled', 'needs_review')),
    status_reason text,

    product_id bigint not null constraint orders_product_id_check check (product_id > 0),
    denomination numeric not null constraint orders_denomination_check check (denomination > 0),
    quantity integer not null constraint orders_quantity_check check (quantity between 1 and 10),
    email text,
    contact text,
    tag text,
    notify_receiver_email boolean not null default false,
    notify_admin_email boolean not null default false,
    user_meta jsonb,
    perform_operator_validation boolean,

    xoxoday_order_id bigint,
    currency_code text,
    order_total numeric,
    order_discount numeric,
    amount_charged numeric,
    delivery_status text,
    upstream_order_status text,
    failure jsonb,

    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    lease_token uuid,
    lease_until timestamptz,
    lease_sent boolean not null default false,
    last_place_started_at timestamptz,
    next_check_at timestamptz,

    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    settled_at timestamptz,
    constraint orders_caller_key unique (caller_id, idempotency_key)
);
create trigger orders_set_updated_at before update on orders
    for each row execute function set_updated_at();

-- Work queues (partial, so they stay small).
create index orders_accepted_due_idx on orders (next_attempt_at) where status = 'accepted';
create index orders_placing_lease_idx on orders (lease_until) where status = 'placing';
create index orders_check_due_idx on orders (next_check_at)
    where status in ('reconciling', 'pending_delivery');
-- Keyset pagination (order_id is a UUIDv7, so it sorts by creation time).
create index orders_caller_order_idx on orders (caller_id, order_id);
create index orders_caller_status_order_idx on orders (caller_id, status, order_id);
