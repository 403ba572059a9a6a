-- Issue 12 / contract §8: the wallet balance is read once a minute over all
-- replicas, whether or not a hold exists. The one row is claimed through
-- last_read_at in one statement (at most one read per interval), and keeps
-- the last balance read so /readyz and the low-balance warning agree on
-- every replica.
create table xoxoday_balance (
    balance_id integer primary key
        constraint xoxoday_balance_single_row check (balance_id = 1),
    last_read_at timestamptz,
    balance numeric,
    currency text,
    read_ok_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
insert into xoxoday_balance (balance_id) values (1);
create trigger xoxoday_balance_set_updated_at before update on xoxoday_balance
    for each row execute function set_updated_at();
