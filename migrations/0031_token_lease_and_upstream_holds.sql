-- Issue 9, window 5.
--
-- Window 5: a token refresh used to hold the token row's FOR UPDATE across
-- the HTTP call and commit the rotated pair together with its audit row, so
-- an error after Xoxoday rotated lost the only copy, and other replicas hit
-- statement_timeout while they waited. Refreshes are now serialised by a
-- lease: refresh_lease_token/refresh_lease_until are set in one short
-- committed statement (only when no live lease exists), the call runs with
-- no transaction open, and the new pair is committed first, on its own.
alter table xoxoday_tokens
    add column refresh_lease_token uuid,
    add column refresh_lease_until timestamptz;
