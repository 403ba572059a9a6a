-- Every HTTP exchange with Xoxoday (contract §2.4). The row is inserted with
-- the full request *before* sending and completed once with the response or
-- the error; after that it is immutable (trigger below), and rows are never
-- deleted. Response bodies may hold voucher codes: the raw body is stored
-- encrypted (AEAD, key_id names the key) and a redacted plaintext copy is
-- kept for debugging and finance.
create table upstream_exchanges (
    exchange_id uuid primary key,
    order_id uuid references orders (order_id),
    operation text not null,
    attempt integer,
    method text not null,
    url text not null,
    request_headers jsonb,
    request_body jsonb not null,
    started_at timestamptz not null default now(),
    completed_at timestamptz,
    duration_ms integer,
    response_status integer,
    response_headers jsonb,
    response_body_redacted text,
    response_body_encrypted bytea,
    key_id text,
    error text,
    outcome text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index upstream_exchanges_order_idx on upstream_exchanges (order_id, started_at);

create function upstream_exchanges_append_only() returns trigger as $$
begin
    if tg_op = 'DELETE' then
        raise exception 'upstream_exchanges is append-only';
    end if;
    if old.completed_at is not null then
        raise exception 'upstream exchange % is already complete', old.exchange_id;
    end if;
    new.updated_at = now();
    return new;
end;
$$ language plpgsql;
create trigger upstream_exchanges_append_only before update or delete on upstream_exchanges
    for each row execute function upstream_exchanges_append_only();
