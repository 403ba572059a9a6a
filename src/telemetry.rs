//! Tracing set-up: one subscriber per process, JSON for machines or pretty for
//! people, filtered by `RUST_LOG` (defaults in [`crate::settings`]).

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::{
    config::{ConfigError, Env, LogFormat},
    settings::{LOG_FORMAT, RUST_LOG},
};

/// Reads `LOG_FORMAT` and `RUST_LOG` and installs the global subscriber.
///
/// Calling it twice is harmless (the second call changes nothing), so tests
/// and `dev` can share start-up code with `serve`.
pub fn init(env: &Env) -> Result<(), ConfigError> {
    let format: LogFormat = env.parse(&LOG_FORMAT)?;
    let raw = env.value(&RUST_LOG).unwrap_or_default();
    let filter = EnvFilter::try_new(&raw).map_err(|e| ConfigError {
        var: RUST_LOG.name,
        problem: format!("is not a valid filter ({e})"),
    })?;
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    // every enclosing span's fields (request_id, caller,
                    // order.id, po_number) on each line
                    .with_span_list(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    Ok(())
}
