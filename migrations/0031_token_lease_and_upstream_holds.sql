-- Issue 9, windows 4, 5 and 11.
--
-- Window 5: a token refresh used to hold the token row's FOR UPDATE across
-- the HTTP call and commit the rotated pair together with its audit row, so
-- an error after Xoxoday rotated lost the only copy, and other replicas hit
-- statement_timeout while they waited. Refreshes are now serialised by a
-- lease: refresh_lease_token/refresh_lease_until are set in one short
-- committed statement (only when no live lease exists), the call runs with
-- no transaction open, and the new pair is committed first, on its own.
--
-- Window 4: last_rejection_refresh_at stamps the last refresh triggered by a
-- refused access token (written under the lease, before the call). Every
-- replica reads it, so at most one such refresh happens per cooldown across
-- all replicas; a token refused again within it pauses every call instead.
alter table xoxoday_tokens
    add column refresh_lease_token uuid,
    add column refresh_lease_until timestamptz,
    add column last_rejection_refresh_at timestamptz;

-- Windows 4 and 11: an account-wide condition that only Xoxoday can end
-- (a token refused even after a refresh; a wallet too low for an order).
-- While a row exists, the matching upstream_pauses row is kept alive and
-- one replica at a time (last_probe_at, at most once per probe interval)
-- reads getBalance: an accepted token lifts `token_rejected`, a balance
-- above needed_amount lifts `insufficient_balance`. No operator action.
create table upstream_holds (
    hold text primary key
        constraint upstream_holds_hold_check check (hold in ('token_rejected', 'insufficient_balance')),
    reason text not null,
    -- insufficient_balance: the refused order's amount (the largest one).
    needed_amount numeric,
    last_probe_at timestamptz not null default now(),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create trigger upstream_holds_set_updated_at before update on upstream_holds
    for each row execute function set_updated_at();
