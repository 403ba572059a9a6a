-- Issue 11: settling an order no longer waits on a shared counter row.
--
-- Since 0041 every write-back that entered or left a counted status
-- (completed, failed, canceled) added its +1 or -1 to one of 16 rows of
-- `order_status_totals` (picked by backend pid) and held that row locked
-- until its commit. Under end-to-end load (32 connections, two per row) the
-- write-back's `update orders` took 3.6 ms, 2.7 of them waiting there.
--
-- Now the trigger only appends its +1 or -1 to `order_status_deltas`: an
-- insert without a unique index, so nothing waits on anything. About every
-- 10 s each replica's reconciler folds the deltas into
-- `order_status_totals`, in statements of their own, after its pass
-- committed (a fold must never hold up the pass, which expires leases and
-- claims checks): `fold_order_status_deltas(batch)` deletes up to `batch`
-- deltas and adds their sums in one statement. Only one fold runs at a
-- time (a transaction-scoped advisory lock, tried, never waited for);
-- the others fold nothing. A delta committed after a fold's snapshot is
-- left for the next fold.
--
-- A scrape adds `order_status_totals` and the deltas not folded yet in one
-- statement, so it reads each delta exactly once (before or after a fold):
-- about 10 s of settlements. If folding stops (every reconciler down), the
-- deltas and the scrape grow until it resumes; folds then catch up by
-- 10,000 deltas a statement, up to 100,000 per round (a round that finds
-- another fold running folds nothing and waits for its next turn).
--
-- During a rolling upgrade a replica still on the old code reads only the
-- totals: its gauges for the three statuses lag by the deltas not folded
-- yet (about 10 s); nothing is lost.
create table order_status_deltas (
    status text not null,
    orders integer not null
);
-- Emptied like a queue: a vacuum would truncate it under an ACCESS
-- EXCLUSIVE lock that the triggers' inserts (write-backs) queue behind.
alter table order_status_deltas set (vacuum_truncate = off);

create or replace function order_status_totals_track() returns trigger as $$
begin
    if tg_op in ('UPDATE', 'DELETE') and old.status in ('completed', 'failed', 'canceled') then
        insert into order_status_deltas (status, orders) values (old.status, -1);
    end if;
    if tg_op in ('INSERT', 'UPDATE') and new.status in ('completed', 'failed', 'canceled') then
        insert into order_status_deltas (status, orders) values (new.status, 1);
    end if;
    return null;
end;
$$ language plpgsql;

-- Folds up to `batch` deltas into the totals (shard 0); returns how many
-- it folded. Never waits: when another fold holds the fold lock it folds
-- nothing (the scrape reads the deltas meanwhile). The gateway runs it as
-- a statement of its own (its transaction ends with it), never inside a
-- transaction that goes on to do other work.
create function fold_order_status_deltas(batch integer) returns bigint as $$
declare
    folded bigint;
begin
    if not pg_try_advisory_xact_lock(hashtext('fold_order_status_deltas')) then
        return 0;
    end if;
    with moved as (
        delete from order_status_deltas
         where ctid = any (array(select ctid from order_status_deltas limit batch))
        returning status, orders),
    sums as (
        select status, sum(orders)::bigint as n, count(*) as rows_folded
          from moved group by status),
    added as (
        insert into order_status_totals (status, shard, orders)
        select status, 0, n from sums
        on conflict (status, shard) do update
            set orders = order_status_totals.orders + excluded.orders)
    select coalesce(sum(rows_folded), 0)::bigint into folded from sums;
    return folded;
end;
$$ language plpgsql;
