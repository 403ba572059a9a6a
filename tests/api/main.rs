//! One integration-test binary; each module tests one part of the service.

mod child;
mod cli;
mod crash;
mod dev;
mod helpers;
mod load;
mod metrics;
mod openapi;
mod openapi_conformance;
mod ops;
mod orders_dispatch;
mod orders_idempotency;
mod orders_read;
mod orders_validation;
mod shutdown;
mod test_db;
mod xoxoday_client;
