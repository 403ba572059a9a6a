-- Callers are our own services. Idempotency keys and order visibility are
-- scoped per caller. API keys are 256-bit random strings, so they are stored
-- only as their SHA-256 (a slow KDF buys nothing against that entropy and
-- would cost a hash per request). Revocation sets revoked_at; every query that
-- acts for a caller joins `api_keys ... revoked_at is null`, so a revoked key
-- stops working at once even if a replica still caches it.
create table callers (
    caller_id uuid primary key,
    name text not null constraint callers_name_key unique
        constraint callers_name_check check (length(name) between 1 and 100),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create trigger callers_set_updated_at before update on callers
    for each row execute function set_updated_at();

create table api_keys (
    api_key_id uuid primary key,
    caller_id uuid not null references callers (caller_id),
    key_hash bytea not null constraint api_keys_key_hash_key unique
        constraint api_keys_key_hash_check check (length(key_hash) = 32),
    revoked_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index api_keys_caller_idx on api_keys (caller_id) where revoked_at is null;
create trigger api_keys_set_updated_at before update on api_keys
    for each row execute function set_updated_at();
