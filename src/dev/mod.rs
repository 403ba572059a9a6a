//! `order-gateway dev`: the one-command local stack (contract §3).

/// Throwaway PostgreSQL cluster.
pub mod pg;
/// The `dev` command: emulator + gateway with generated settings.
pub mod run;
