-- Issue 11: settling an order no longer waits on a shared counter row.
--
-- Since 0041 every write-back that entered or left a counted status
-- (completed, failed, canceled) added its +1 or -1 to one of 16 rows of
-- `order_status_totals` (picked by backend pid) and held that row locked
-- until its commit. Under end-to-end load (32 connections, two per row) the
-- write-back's `update orders` took 3.6 ms, 2.7 of them waiting there.
--
-- Now the trigger only appends its +1 or -1 to `order_status_deltas`: an
-- insert without a unique index, so nothing waits on anything. The
-- reconciler's pass folds the deltas into `order_status_totals` (at most
-- once a pass per replica, in the pass's own transaction):
-- `fold_order_status_deltas()` deletes the deltas it sees and adds their
-- sums. Two folds at once cannot count a delta twice: the second waits on
-- the rows the first deleted and, once the first commits, skips them. A
-- delta committed after a fold's snapshot is left for the next fold.
--
-- A scrape adds `order_status_totals` and the deltas not folded yet in one
-- statement, so it reads each delta exactly once (before or after a fold),
-- and reads at most a pass's worth of deltas per replica.
--
-- During a rolling upgrade a replica still on the old code reads only the
-- totals: its gauges for the three statuses lag by the deltas not folded
-- yet (about a second); nothing is lost.
create table order_status_deltas (
    status text not null,
    orders integer not null
);

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

-- Folds the deltas this snapshot sees into the totals (shard 0); returns
-- how many deltas it folded.
create function fold_order_status_deltas() returns bigint as $$
    with moved as (
        delete from order_status_deltas returning status, orders),
    sums as (
        select status, sum(orders)::bigint as n, count(*) as folded
          from moved group by status),
    added as (
        insert into order_status_totals (status, shard, orders)
        select status, 0, n from sums
        on conflict (status, shard) do update
            set orders = order_status_totals.orders + excluded.orders)
    select coalesce(sum(folded), 0)::bigint from sums;
$$ language sql;
