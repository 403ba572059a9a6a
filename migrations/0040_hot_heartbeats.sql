-- Issue 11: heartbeats stay HOT.
--
-- A lease renewal rewrites only lease_until (and updated_at), so no index
-- may cover lease_until: a HOT update needs every indexed column (keys and
-- partial-index predicates) unchanged, and room on the row's page. orders_reconciling_lease_idx was never used by any plan
-- (the reconciler finds its work by next_check_at, orders_check_due_idx).
-- expire_placing_leases finds the few `placing` rows through a partial index
-- on the immutable order_id instead of lease_until. A fillfactor below 100
-- leaves room on each new page for the updated row versions.
drop index orders_reconciling_lease_idx;
drop index orders_placing_lease_idx;
create index orders_placing_idx on orders (order_id) where status = 'placing';
alter table orders set (fillfactor = 80);
