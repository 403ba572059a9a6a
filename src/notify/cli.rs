//! `order-gateway callers webhook set|remove|replay` (contract §9).

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use secrecy::ExposeSecret as _;

use super::{address::validate_endpoint_url, sender::secret_aad, sign::generate_secret};
use crate::{
    cli::{MIRRORS, VarArgs, VarSet, listed, migrated_store},
    crypto::Cipher,
    settings,
    store::Store,
};

/// The variables of `callers webhook set`.
#[derive(Debug)]
pub struct WebhookSetVars;

impl VarSet for WebhookSetVars {
    fn vars() -> Vec<(&'static str, Option<String>, &'static str)> {
        listed(settings::WEBHOOK_SET)
    }
}

/// The variables of `callers webhook remove` and `replay`.
#[derive(Debug)]
pub struct WebhookManageVars;

impl VarSet for WebhookManageVars {
    fn vars() -> Vec<(&'static str, Option<String>, &'static str)> {
        listed(settings::WEBHOOK_MANAGE)
    }
}

/// `callers` subcommands.
#[derive(Debug, Subcommand)]
pub enum CallersCommand {
    /// Manages the caller's notification endpoint (docs/notifications.md).
    #[command(subcommand)]
    Webhook(WebhookCommand),
}

/// `callers webhook` subcommands.
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Sets (or replaces) the caller's endpoint and prints a new signing
    /// secret once, alone on the last line. Only status changes from now on
    /// produce events.
    #[command(after_help = MIRRORS)]
    Set {
        /// Caller name (as given to `api-key create`).
        #[arg(long)]
        caller: String,
        /// https:// URL (http:// only to loopback, for development).
        #[arg(long)]
        url: String,
        /// The variables it reads.
        #[command(flatten)]
        vars: VarArgs<WebhookSetVars>,
    },
    /// Removes the caller's endpoint: nothing more is sent to it.
    #[command(after_help = MIRRORS)]
    Remove {
        /// Caller name.
        #[arg(long)]
        caller: String,
        /// The variables it reads.
        #[command(flatten)]
        vars: VarArgs<WebhookManageVars>,
    },
    /// Sends the caller's stored events created since TIME again (same
    /// webhook-id, in order per order).
    #[command(after_help = MIRRORS)]
    Replay {
        /// Caller name.
        #[arg(long)]
        caller: String,
        /// RFC 3339 time (`2026-12-01T12:00:00Z`) or a duration ago (`2h`).
        #[arg(long)]
        since: String,
        /// The variables it reads.
        #[command(flatten)]
        vars: VarArgs<WebhookManageVars>,
    },
}

/// Runs a `callers` command.
pub async fn run(cmd: CallersCommand) -> anyhow::Result<ExitCode> {
    let CallersCommand::Webhook(cmd) = cmd;
    match cmd {
        WebhookCommand::Set { caller, url, vars } => {
            let url = validate_endpoint_url(&url).map_err(anyhow::Error::msg)?;
            let env = vars.env();
            let key = crate::config::encryption_key(&env)?;
            let store = migrated_store(&env).await?;
            let caller_id = known_caller(&store, &caller).await?;
            let secret = generate_secret();
            let cipher = Cipher::new(&key);
            let sealed = cipher.encrypt(
                secret.expose_secret().as_bytes(),
                secret_aad(caller_id).as_bytes(),
            );
            store
                .set_notify_endpoint(caller_id, url.as_str(), cipher.key_id(), &sealed)
                .await?;
            println!(
                "caller {} is notified at {url}; events are signed with this secret, shown only once:",
                caller.trim()
            );
            println!("{}", secret.expose_secret());
        }
        WebhookCommand::Remove { caller, vars } => {
            let store = migrated_store(&vars.env()).await?;
            let caller_id = known_caller(&store, &caller).await?;
            match store.remove_notify_endpoint(caller_id).await? {
                Some(dropped) => println!(
                    "removed the webhook of caller {}; {dropped} pending event(s) will not be sent",
                    caller.trim()
                ),
                None => anyhow::bail!("caller {:?} has no webhook", caller.trim()),
            }
        }
        WebhookCommand::Replay {
            caller,
            since,
            vars,
        } => {
            let since = parse_since(&since, Utc::now()).map_err(anyhow::Error::msg)?;
            let store = migrated_store(&vars.env()).await?;
            let caller_id = known_caller(&store, &caller).await?;
            match store.replay_notify_events(caller_id, since).await? {
                Some(n) => println!(
                    "{n} event(s) of caller {} since {} will be sent again",
                    caller.trim(),
                    since.to_rfc3339()
                ),
                None => anyhow::bail!("caller {:?} has no webhook; set one first", caller.trim()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn known_caller(store: &Store, caller: &str) -> anyhow::Result<uuid::Uuid> {
    store
        .caller_id_by_name(caller.trim())
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no caller named {:?}; create it with `order-gateway api-key create --caller NAME`",
                caller.trim()
            )
        })
}

/// `--since`: RFC 3339, or a humantime duration before `now`.
fn parse_since(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    humantime::parse_duration(raw)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| {
            format!("--since {raw:?} is neither an RFC 3339 time nor a duration like 2h")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration_ago() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T13:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("2h", now).unwrap().to_rfc3339(),
            "2026-12-01T11:00:00+00:00"
        );
        assert_eq!(
            parse_since("2026-12-01T12:00:00+01:00", now)
                .unwrap()
                .to_rfc3339(),
            "2026-12-01T11:00:00+00:00"
        );
        assert!(parse_since("yesterday", now).is_err());
    }
}
