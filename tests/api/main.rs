//! One integration-test binary; each module tests one part of the service.

mod caller_keys;
mod cli;
mod crash;
mod finance;
mod helpers;
mod hostile_input;
mod load;
mod openapi;
mod ops;
mod orders_dispatch;
mod orders_idempotency;
mod orders_read;
mod orders_validation;
mod secrets_scan;
mod test_db;
mod tokens;
mod xoxoday_client;
