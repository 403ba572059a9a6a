-- Hostile text from Xoxoday (issue 9, window 9). Postgres refuses U+0000 in
-- text and jsonb, so a webhook carrying one used to get a 500 (three of
-- those and Xoxoday disables the account's webhooks). The jsonb `payload` is
-- now a sanitised copy (NUL shown as the text \u0000, lone surrogates as
-- U+FFFD, very long strings cut with a note) and `payload_raw` keeps the
-- bytes exactly as they came, so nothing is lost. Exchange bodies need no new
-- column: `response_body_encrypted` now seals the raw bytes, not a lossy
-- UTF-8 copy. Null for webhooks stored before this migration.
alter table webhook_events add column payload_raw bytea;
