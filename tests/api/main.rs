//! One integration-test binary; each module tests one part of the service.

mod cli;
mod crash;
mod crash_recovery;
mod helpers;
mod ledger;
mod load;
mod openapi;
mod ops;
mod orders_dispatch;
mod orders_idempotency;
mod orders_read;
mod orders_validation;
mod rate_limits;
mod reconciler;
mod replicas;
mod test_db;
mod webhooks;
mod xoxoday_client;
