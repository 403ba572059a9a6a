-- Issue 12: every status change of an order, with when, from, to, why and
-- who, written in the SAME transaction as the change by construction: a
-- trigger on `orders` inserts the row, so no UPDATE anywhere can forget it.
--
-- Who and why come from transaction-local settings that the writer sets
-- before its statements (`set_config(..., true)`, reset at commit):
--   order_gateway.actor   `webhook`, `reconciler`, an operator's name;
--                          unset: `system` (intake, dispatcher, aging)
--   order_gateway.reason  the operator's --reason; unset: the order's new
--                          status_reason
-- A recheck that leaves the status as it was inserts its own row (from =
-- to), in the transaction that records its lookup.
create table order_timeline (
    timeline_id bigint generated always as identity primary key,
    order_id uuid not null references orders (order_id),
    at timestamptz not null default clock_timestamp(),
    from_status text,
    to_status text not null,
    reason text,
    actor text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index order_timeline_order_idx on order_timeline (order_id, timeline_id);

create function record_order_timeline() returns trigger as $$
begin
    if tg_op = 'UPDATE' and old.status is not distinct from new.status then
        return null;
    end if;
    insert into order_timeline (order_id, from_status, to_status, reason, actor)
    values (
        new.order_id,
        case when tg_op = 'UPDATE' then old.status end,
        new.status,
        coalesce(nullif(current_setting('order_gateway.reason', true), ''), new.status_reason),
        coalesce(nullif(current_setting('order_gateway.actor', true), ''), 'system'));
    return null;
end;
$$ language plpgsql;

create trigger orders_timeline after insert or update of status on orders
    for each row execute function record_order_timeline();

-- Orders from before the timeline start with one row saying so.
insert into order_timeline (order_id, at, from_status, to_status, reason, actor)
select order_id, updated_at, null, status, 'status when the timeline began', 'system'
from orders;
