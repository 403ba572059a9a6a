-- The outbox trigger no longer calls pg_notify (adversarial review, issue 13):
-- a transaction that has run NOTIFY takes a database-wide lock at commit, so
-- every status write-back of a caller with an endpoint committed one at a
-- time over all replicas, and a full notification queue would fail the
-- write-back itself at commit. The sender polls the outbox instead
-- (NOTIFY_POLL_INTERVAL, a partial index keeps it O(pending)).
create or replace function notify_order_event() returns trigger language plpgsql as $$
begin
    if new.status in ('completed', 'pending_delivery', 'failed', 'canceled', 'needs_review')
       and (tg_op = 'INSERT' or new.status is distinct from old.status)
       and exists (select 1 from notify_endpoints e
                   where e.caller_id = new.caller_id and e.removed_at is null) then
        insert into notify_events (event_id, order_id, caller_id, event_type, snapshot)
        values ('msg_' || replace(gen_random_uuid()::text, '-', ''), new.order_id,
                new.caller_id, 'order.' || new.status, to_jsonb(new));
    end if;
    return null;
end
$$;
