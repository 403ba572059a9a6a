-- Issue 9: close the reconciler's double-spend windows.
--
-- last_place_ended_at is when the last placeOrder attempt ENDED (its answer,
-- error or timeout), on the database clock. A "not found" from
-- getOrderDetails is trusted only once XOXODAY_SETTLE_WINDOW has passed since
-- then (contract §4): a call abandoned at the client timeout may still be
-- running at Xoxoday, so the window must not start when the call began. It
-- is null while an attempt is in flight; a lease that expires mid-call
-- records its best upper bound (the later of now and start + timeout).
alter table orders add column last_place_ended_at timestamptz;

-- Orders sent before this column existed: their last write-back is no later
-- than updated_at, so that is a safe (late) end.
update orders set last_place_ended_at = updated_at
 where last_place_started_at is not null and status <> 'placing';

-- A stored delivery webhook proves that Xoxoday has the order: the
-- reconciler's re-placement statement checks for one (`not exists`), and the
-- place write-backs look for one, so it is found by order.
create index webhook_events_order_idx on webhook_events (order_id);

-- Aging counts from the FIRST send, not from created_at: an order that
-- waited in `accepted` (rate budget, pauses) must not reach review on its
-- first unknown outcome. Stamped by the first placeOrder attempt; filled in
-- from the audit for orders sent before this column existed.
alter table orders add column first_sent_at timestamptz;
update orders o set first_sent_at = x.first
  from (select order_id, min(started_at) as first from upstream_exchanges
        where operation = 'place_order' group by order_id) x
 where x.order_id = o.order_id;
