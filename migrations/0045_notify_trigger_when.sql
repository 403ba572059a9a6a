-- Issue 11: the notification outbox trigger fires only for the statuses it
-- writes an event for. It used to run for every insert and status change
-- (a PL/pgSQL call each) and return early for `accepted`, `placing` and
-- `reconciling`: about a tenth of the cost of inserting an order. The
-- function keeps its own checks; this only skips calls that do nothing.
drop trigger orders_notify_status on orders;
create trigger orders_notify_status after insert or update of status on orders
    for each row
    when (new.status in ('completed', 'pending_delivery', 'failed', 'canceled', 'needs_review'))
    execute function notify_order_event();
