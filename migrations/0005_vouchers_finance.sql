-- Vouchers live apart from orders so that finance and audit reads of orders
-- never touch secrets. Code and pin are AEAD-encrypted with the key named by
-- key_id (rotation: decrypt with the old key, re-encrypt, update key_id).
-- (order_id, position) makes writing the same upstream answer twice harmless.
create table vouchers (
    voucher_id uuid primary key,
    order_id uuid not null references orders (order_id),
    position integer not null,
    code_encrypted bytea not null,
    pin_encrypted bytea,
    key_id text not null,
    validity text,
    voucher_type text,
    amount numeric,
    currency text,
    country text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint vouchers_order_position_key unique (order_id, position)
);
create trigger vouchers_set_updated_at before update on vouchers
    for each row execute function set_updated_at();

-- Contract §6: one row per order, no secrets, money as numeric.
create view finance_orders as
select
    o.po_number,
    o.xoxoday_order_id,
    c.name as caller,
    o.product_id,
    o.denomination,
    o.quantity,
    o.currency_code as currency,
    o.order_total,
    o.order_discount,
    o.amount_charged,
    o.status,
    o.delivery_status,
    o.created_at,
    o.settled_at
from orders o
join callers c on c.caller_id = o.caller_id;
