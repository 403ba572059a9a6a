//! order-gateway: turns internal reward requests into exactly one Xoxoday Plum
//! order each, keeps a full audit of every upstream exchange, and settles every
//! uncertain outcome by asking Xoxoday before it ever places again.

/// Command-line interface: the subcommands of contract §3.
pub mod cli;
/// Typed configuration read from the environment (contract §4).
pub mod config;
/// Encryption at rest (vouchers, raw upstream bodies).
pub mod crypto;
/// The one-command local stack (`order-gateway dev`).
pub mod dev;
/// Pure types and rules: ids, money, order requests, statuses.
pub mod domain;
/// The Xoxoday emulator (contract §7); independent of `xoxoday`.
pub mod emulator;
/// Reading settings from the environment: `Env` and `ConfigError`.
pub mod env;
/// HTTP API (axum): routes, extractors, problem+json.
pub mod http;
/// Prometheus metrics: hooks for counters, the `/metrics` text.
pub mod metrics;
/// Signed, durable notifications to callers (Standard Webhooks).
pub mod notify;
/// The operator and finance commands (contract §8).
pub mod ops;
/// Use cases: intake, dispatch, views.
pub mod orders;
/// The gateway's variables: names, defaults and meanings, written once.
pub mod settings;
/// Signals → one cancellation token.
pub mod shutdown;
/// Application::build / run: the one start-up path for serve and tests.
pub mod startup;
/// Persistence: all SQL.
pub mod store;
/// Tracing subscriber set-up.
pub mod telemetry;
/// Worker tunables: leases, retry schedule, review budget, rate window.
pub mod tuning;
/// The Xoxoday Plum client: transport, wire shapes, outcome classification.
pub mod xoxoday;
