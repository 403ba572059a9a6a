-- The Xoxoday OAuth token pair (issue 5). One row: every refresh rotates the
-- pair and kills the old refresh token, so the stored pair is the only truth
-- once the first one (from XOXODAY_ACCESS_TOKEN/XOXODAY_REFRESH_TOKEN) is
-- stored. Replicas serialise refreshes with `select ... for update` on this
-- row and re-read `generation` after the lock: a replica that waited adopts
-- the pair another one just committed instead of spending a dead refresh
-- token. Both tokens are AEAD-encrypted (key_id names the key; the
-- associated data binds each ciphertext to its generation and field).
-- refresh_due_at is computed at write time (7 days, or half the remaining
-- lifetimes, whichever is first); a failure moves it closer for a retry.
-- operator_action_required: Xoxoday refused the refresh token; only a new
-- dashboard pair (`order-gateway tokens reset`) clears it.
create table xoxoday_tokens (
    token_set_id smallint primary key default 1
        constraint xoxoday_tokens_single_row check (token_set_id = 1),
    generation bigint not null constraint xoxoday_tokens_generation_check check (generation > 0),
    access_token_encrypted bytea not null,
    refresh_token_encrypted bytea not null,
    key_id text not null,
    source text not null
        constraint xoxoday_tokens_source_check check (source in ('environment', 'refresh')),
    issued_at timestamptz not null,
    access_expires_at timestamptz,
    refresh_expires_at timestamptz,
    refresh_due_at timestamptz not null,
    last_refresh_at timestamptz,
    last_refresh_failed_at timestamptz,
    last_refresh_error text,
    operator_action_required boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create trigger xoxoday_tokens_set_updated_at before update on xoxoday_tokens
    for each row execute function set_updated_at();

-- Request bodies may hold secrets too (a refresh carries refresh_token and
-- client_secret): request_body keeps the redacted copy, the raw body is
-- sealed here whenever redaction changed anything.
alter table upstream_exchanges
    add column request_body_encrypted bytea,
    add column request_key_id text;
