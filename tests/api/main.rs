//! One integration-test binary; each module tests one part of the service.

mod child;
mod cli;
mod crash;
mod crash_recovery;
mod dev;
mod helpers;
mod ledger;
mod load;
mod metrics;
mod openapi;
mod openapi_conformance;
mod ops;
mod orders_dispatch;
mod orders_idempotency;
mod orders_read;
mod orders_validation;
mod rate_limits;
mod reconciler;
mod replicas;
mod shutdown;
mod test_db;
mod webhooks;
mod xoxoday_client;
