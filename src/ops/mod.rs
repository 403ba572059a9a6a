//! The operator and finance commands of contract §8, parsed here and run
//! through the use cases of `orders` (like `cli`, this module knows
//! everything): `orders show | recheck | resolve` and `audit books`.
//!
//! Exit codes: 0 done (the books agree); 1 refused, Xoxoday could not be
//! asked, or (audit) findings; 2 the command could not run (a bad flag or
//! setting, no such order, the database down, the audit cut short).

use std::{process::ExitCode, sync::Arc};

use anyhow::Context as _;
use chrono::NaiveDate;
use clap::{Subcommand, ValueEnum};

use crate::{
    cli::{VarArgs, VarSet, listed},
    config::{Env, XoxodayConfig},
    crypto::Cipher,
    http::orders::OrderOut,
    orders::{
        DispatchSettings, RotatingTokens,
        books::{BooksAudit, DEFAULT_PAGE_SIZE},
        review::{Action, Operator, OperatorError, Outcome},
        view::operator_view,
    },
    settings,
    store::{Store, rate_limit::SlotAsk},
    tuning::Tuning,
    xoxoday::{Operation, XoxodayClient},
};

mod render;

const MIRRORS: &str = "Each flag mirrors the environment variable shown with it and wins over it. \
     Exit codes: 0 done, 1 refused (or Xoxoday could not be asked), 2 could not run.";

const AUDIT_HELP: &str = "Days are UTC; Xoxoday is asked for one day more on each side (its days \
     are in an unstated zone). Exit codes: 0 the books agree, 1 findings, 2 the audit could not run.";

/// The variables of `orders show`.
#[derive(Debug)]
pub struct ShowVars;

impl VarSet for ShowVars {
    fn vars() -> Vec<(&'static str, Option<String>, &'static str)> {
        listed(settings::ORDERS_SHOW)
    }
}

/// The variables of the commands that ask Xoxoday.
#[derive(Debug)]
pub struct OperatorVars;

impl VarSet for OperatorVars {
    fn vars() -> Vec<(&'static str, Option<String>, &'static str)> {
        listed(settings::OPERATOR)
    }
}

/// What `resolve --as` may say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Resolution {
    /// Adopt the upstream order a fresh lookup finds.
    Completed,
    /// No upstream order exists (refused while a lookup finds one).
    Failed,
}

/// `orders` subcommands.
#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// The order, its timeline and its upstream exchanges (secrets redacted).
    #[command(after_help = MIRRORS)]
    Show {
        /// The order's id or poNumber.
        reference: String,
        /// One JSON object instead of tables.
        #[arg(long)]
        json: bool,
        /// The variables it reads.
        #[command(flatten)]
        vars: VarArgs<ShowVars>,
    },
    /// Asks Xoxoday now (getOrderDetails, within the shared budget), applies
    /// the answer under the usual rules, prints the status.
    #[command(after_help = MIRRORS)]
    Recheck {
        /// The order's id or poNumber.
        reference: String,
        /// Why (shown in the timeline).
        #[arg(long)]
        reason: Option<String>,
        /// Who (default: the OS user).
        #[arg(long)]
        actor: Option<String>,
        /// The variables it reads.
        #[command(flatten)]
        vars: VarArgs<OperatorVars>,
    },
    /// Settles a needs_review order after a fresh lookup.
    #[command(after_help = MIRRORS)]
    Resolve {
        /// The order's id or poNumber.
        reference: String,
        /// `completed` adopts what Xoxoday has; `failed` says it has nothing.
        #[arg(long = "as", value_enum)]
        resolution: Resolution,
        /// Why (shown in the timeline).
        #[arg(long)]
        reason: String,
        /// Who (default: the OS user).
        #[arg(long)]
        actor: Option<String>,
        /// The variables it reads.
        #[command(flatten)]
        vars: VarArgs<OperatorVars>,
    },
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Compares Xoxoday's order history with our orders for those days,
    /// prints and stores every finding.
    #[command(after_help = AUDIT_HELP)]
    Books {
        /// First day, YYYY-MM-DD (UTC).
        #[arg(long)]
        from: NaiveDate,
        /// Last day, YYYY-MM-DD (UTC), included.
        #[arg(long)]
        to: NaiveDate,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Orders per getOrderHistory page.
        #[arg(long, default_value_t = DEFAULT_PAGE_SIZE, value_parser = clap::value_parser!(u32).range(1..))]
        page_size: u32,
        /// The variables it reads.
        #[command(flatten)]
        vars: VarArgs<OperatorVars>,
    },
}

/// Runs an `orders` command; any error is one line and exit 2.
pub async fn orders(cmd: OrdersCommand) -> ExitCode {
    could_not_run(run_orders(cmd).await)
}

/// Runs an `audit` command; any error is one line and exit 2.
pub async fn audit(cmd: AuditCommand) -> ExitCode {
    could_not_run(run_audit(cmd).await)
}

fn could_not_run(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("order-gateway: {e:#}");
        ExitCode::from(2)
    })
}

/// Writes to stdout; a closed pipe (`| head`) is not an error: the action
/// is done and stored either way.
fn say(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The OS user, for `--actor`.
fn os_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "operator".into())
}

fn actor_or_user(actor: Option<String>) -> anyhow::Result<String> {
    let actor = actor.map_or_else(os_user, |a| a.trim().to_owned());
    if actor.is_empty() || actor.chars().count() > 100 {
        anyhow::bail!("--actor must be 1 to 100 characters");
    }
    Ok(actor)
}

async fn store_of(env: &Env) -> anyhow::Result<Store> {
    let url = crate::config::database_url(env)?;
    let store = Store::connect_lazy(&url, 2)?;
    store.migrate().await.context("the database")?;
    Ok(store)
}

fn cipher_of(env: &Env) -> anyhow::Result<Cipher> {
    let key = crate::config::encryption_key(env)?;
    let previous = crate::config::encryption_key_previous(env)?;
    Ok(Cipher::new(&key).with_previous(previous.as_ref()))
}

/// What every command that asks Xoxoday shares.
struct Upstream {
    store: Store,
    cipher: Arc<Cipher>,
    client: Arc<XoxodayClient>,
    tokens: Arc<RotatingTokens>,
    xoxoday: XoxodayConfig,
    tuning: Tuning,
}

async fn upstream(env: &Env) -> anyhow::Result<Upstream> {
    let xoxoday = XoxodayConfig::from_env(env)?;
    let tuning = Tuning::from_env(env)?;
    let cipher = Arc::new(cipher_of(env)?);
    let store = store_of(env).await?;
    let client = Arc::new(XoxodayClient::new(&xoxoday).context("building the Xoxoday client")?);
    let tokens = Arc::new(
        RotatingTokens::new(store.clone(), client.clone(), cipher.clone())
            .with_timing(xoxoday.request_timeout, tuning.probe_interval),
    );
    tokens.seed(None, None).await.context(
        "no usable Xoxoday token pair is stored (start `serve` once, or `tokens reset`)",
    )?;
    Ok(Upstream {
        store,
        cipher,
        client,
        tokens,
        xoxoday,
        tuning,
    })
}

impl Upstream {
    fn slot(&self, op: Operation, per_minute: u32) -> SlotAsk {
        SlotAsk {
            operation: op.as_str(),
            per_minute,
            window: self.tuning.rate_window,
        }
    }
}

async fn run_orders(cmd: OrdersCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OrdersCommand::Show {
            reference,
            json,
            vars,
        } => show(&vars.env(), &reference, json).await,
        OrdersCommand::Recheck {
            reference,
            reason,
            actor,
            vars,
        } => {
            let actor = actor_or_user(actor)?;
            act(
                &vars.env(),
                &reference,
                Action::Recheck,
                &actor,
                reason.as_deref(),
            )
            .await
        }
        OrdersCommand::Resolve {
            reference,
            resolution,
            reason,
            actor,
            vars,
        } => {
            let actor = actor_or_user(actor)?;
            if reason.trim().is_empty() {
                anyhow::bail!("--reason must say why");
            }
            let action = match resolution {
                Resolution::Completed => Action::ResolveCompleted,
                Resolution::Failed => Action::ResolveFailed,
            };
            act(&vars.env(), &reference, action, &actor, Some(reason.trim())).await
        }
    }
}

async fn show(env: &Env, reference: &str, json: bool) -> anyhow::Result<ExitCode> {
    let cipher = cipher_of(env)?;
    let store = store_of(env).await?;
    let order = store
        .find_order_by_ref(reference)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no order has the id or poNumber {reference}"))?;
    let id = order.id;
    let view = operator_view(&store, &cipher, order).await?;
    let timeline = store.timeline(id).await?;
    let exchanges = store.exchange_summaries(id).await?;
    if json {
        let out = render::show_json(&OrderOut::from(&view), &timeline, &exchanges);
        say(&format!("{}\n", serde_json::to_string_pretty(&out)?));
    } else {
        say(&render::show_text(&view, &timeline, &exchanges));
    }
    Ok(ExitCode::SUCCESS)
}

async fn act(
    env: &Env,
    reference: &str,
    action: Action,
    actor: &str,
    reason: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let up = upstream(env).await?;
    let details = up.slot(Operation::GetOrderDetails, up.xoxoday.order_details_rate);
    let operator = Operator::new(
        up.store.clone(),
        up.client.clone(),
        up.tokens.clone(),
        up.cipher.clone(),
        DispatchSettings::from_tuning(&up.tuning),
        details,
        up.xoxoday.settle_window,
    );
    match operator.act(reference, action, actor, reason).await {
        Ok(Outcome::Done(order)) => {
            let reason = order.status_reason.as_deref().unwrap_or_default();
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            };
            say(&format!(
                "order {} ({}) is {}{reason}\n",
                order.po_number,
                order.id,
                order.status.as_str()
            ));
            Ok(ExitCode::SUCCESS)
        }
        Ok(Outcome::Refused(why)) => {
            eprintln!("order-gateway: refused: {why}");
            Ok(ExitCode::from(1))
        }
        Ok(Outcome::Unreachable(why)) => {
            eprintln!("order-gateway: {why}; nothing changed");
            Ok(ExitCode::from(1))
        }
        Err(OperatorError::NoSuchOrder(r)) => {
            anyhow::bail!("no order has the id or poNumber {r}")
        }
        Err(e) => Err(e.into()),
    }
}

async fn run_audit(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let AuditCommand::Books {
        from,
        to,
        json,
        page_size,
        vars,
    } = cmd;
    if from > to {
        anyhow::bail!("--from {from} is after --to {to}");
    }
    let up = upstream(&vars.env()).await?;
    let history = up.slot(Operation::GetOrderHistory, up.xoxoday.order_history_rate);
    let audit = BooksAudit::new(
        up.store.clone(),
        up.client.clone(),
        up.tokens.clone(),
        up.cipher.clone(),
        history,
    )
    .with_page_size(page_size);
    let report = audit.run(from, to, "cli").await?;
    if json {
        let text = serde_json::to_string_pretty(&render::audit_json(&report))?;
        say(&format!("{text}\n"));
    } else {
        say(&render::audit_text(&report));
    }
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
