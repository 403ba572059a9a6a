-- Issue 11: /metrics is O(orders in flight), not O(all orders). The
-- statuses that only grow (completed, failed, canceled: orders leave them
-- only through an operator) are counted here by triggers, in 16 shards per
-- status so concurrent write-backs do not queue on one row; a scrape sums
-- at most 48 rows. The other statuses are counted live, each through a
-- partial index (needs_review gets one here).
create table order_status_totals (
    status text not null,
    shard integer not null,
    orders bigint not null,
    primary key (status, shard)
);

create function order_status_totals_track() returns trigger as $$
declare
    this_shard integer := pg_backend_pid() % 16;
begin
    if tg_op in ('UPDATE', 'DELETE') and old.status in ('completed', 'failed', 'canceled') then
        insert into order_status_totals (status, shard, orders) values (old.status, this_shard, -1)
        on conflict (status, shard) do update set orders = order_status_totals.orders - 1;
    end if;
    if tg_op in ('INSERT', 'UPDATE') and new.status in ('completed', 'failed', 'canceled') then
        insert into order_status_totals (status, shard, orders) values (new.status, this_shard, 1)
        on conflict (status, shard) do update set orders = order_status_totals.orders + 1;
    end if;
    return null;
end;
$$ language plpgsql;

-- WHEN clauses keep the trigger off the intake insert and off every update
-- that does not enter or leave a counted status.
create trigger orders_status_totals_insert after insert on orders
    for each row when (new.status in ('completed', 'failed', 'canceled'))
    execute function order_status_totals_track();
create trigger orders_status_totals_update after update of status on orders
    for each row when (old.status is distinct from new.status
        and (old.status in ('completed', 'failed', 'canceled')
             or new.status in ('completed', 'failed', 'canceled')))
    execute function order_status_totals_track();
create trigger orders_status_totals_delete after delete on orders
    for each row when (old.status in ('completed', 'failed', 'canceled'))
    execute function order_status_totals_track();

create index orders_needs_review_idx on orders (order_id) where status = 'needs_review';

-- Existing orders, counted once while writes wait (the triggers above are
-- in place for everything after).
lock table orders in share mode;
insert into order_status_totals (status, shard, orders)
select status, 0, count(*) from orders
 where status in ('completed', 'failed', 'canceled') group by status;
