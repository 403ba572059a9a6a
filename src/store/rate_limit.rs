//! Upstream rate limits shared through Postgres by every replica
//! (contract §2.5): a strict sliding window per operation, plus pauses
//! (rate-limit penalties, account-wide errors) that every replica honours.
//!
//! The guarantee lives in the database (`take_upstream_slot`: an advisory
//! lock around count-then-insert), never in process memory.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection, PgExecutor, PgPool, postgres::PgConnectOptions};
use tokio::sync::{mpsc, oneshot};

use super::{Store, StoreResult};

/// One operation's budget, as [`try_take_slot`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct SlotAsk {
    /// Operation name (`place_order`, `get_order_details`).
    pub operation: &'static str,
    /// Calls allowed per window, all replicas together.
    pub per_minute: u32,
    /// The window (normally [`crate::settings::XOXODAY_RATE_WINDOW`]).
    pub window: Duration,
}

/// Every operation at once (account-wide pauses).
pub const ALL_OPERATIONS: &str = "*";

/// Answer of [`try_take_slot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A call may be made now; it has been counted.
    Granted,
    /// No budget (or a pause); ask again after this long.
    Wait(Duration),
}

/// Takes one call slot for `operation` if at most `per_minute - 1` calls
/// were made in the last `window` (normally [`crate::settings::XOXODAY_RATE_WINDOW`]), in one round trip.
/// Inside a transaction the slot (and the advisory lock) last until its
/// end: a rollback gives the slot back.
pub async fn try_take_slot<'e>(
    db: impl PgExecutor<'e>,
    operation: &str,
    per_minute: u32,
    window: Duration,
) -> sqlx::Result<Slot> {
    let wait_ms: i64 = sqlx::query_scalar("select take_upstream_slot($1, $2, $3)")
        .bind(operation)
        .bind(i32::try_from(per_minute).unwrap_or(i32::MAX))
        .bind(i32::try_from(window.as_millis()).unwrap_or(i32::MAX))
        .fetch_one(db)
        .await?;
    Ok(if wait_ms <= 0 {
        Slot::Granted
    } else {
        Slot::Wait(Duration::from_millis(wait_ms.unsigned_abs()))
    })
}

/// Pauses `operation` (or [`ALL_OPERATIONS`]) on every replica for `duration`;
/// an existing longer pause is kept.
pub async fn pause(
    pool: &PgPool,
    operation: &str,
    duration: Duration,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into upstream_pauses (operation, paused_until, reason)
         values ($1, clock_timestamp() + make_interval(secs => $2), $3)
         on conflict (operation) do update
            set paused_until = greatest(upstream_pauses.paused_until, excluded.paused_until),
                reason = case when excluded.paused_until > upstream_pauses.paused_until
                              then excluded.reason else upstream_pauses.reason end",
    )
    .bind(operation)
    .bind(duration.as_secs_f64())
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// Lifts a pause early (e.g. an account-wide error that an operator fixed).
pub async fn resume(pool: &PgPool, operation: &str) -> sqlx::Result<()> {
    sqlx::query("delete from upstream_pauses where operation = $1")
        .bind(operation)
        .execute(pool)
        .await?;
    Ok(())
}

/// A pause in force now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActivePause {
    /// Operation name, or `*`.
    pub operation: String,
    /// When it ends.
    pub paused_until: DateTime<Utc>,
    /// Why (shown in /readyz and logs).
    pub reason: String,
}

/// Pauses in force now, for `/readyz`, metrics and logs.
pub async fn active_pauses(pool: &PgPool) -> sqlx::Result<Vec<ActivePause>> {
    sqlx::query_as(
        "select operation, paused_until, reason from upstream_pauses
          where paused_until > clock_timestamp() order by operation",
    )
    .fetch_all(pool)
    .await
}

impl Store {
    /// A read-only look at `ask`'s budget (`upstream_slots_free`: no lock,
    /// no write): [`Slot::Granted`] when a slot is free now, else how long
    /// until one frees or a pause ends. Only a hint for not claiming work
    /// that cannot be sent: a call still takes its slot with [`try_take_slot`].
    pub async fn slots_free(&self, ask: SlotAsk) -> StoreResult<Slot> {
        let (free, wait_ms): (i32, i64) =
            sqlx::query_as("select free, wait_ms from upstream_slots_free($1, $2, $3)")
                .bind(ask.operation)
                .bind(i32::try_from(ask.per_minute).unwrap_or(i32::MAX))
                .bind(i32::try_from(ask.window.as_millis()).unwrap_or(i32::MAX))
                .fetch_one(&self.pool)
                .await?;
        Ok(if free > 0 {
            Slot::Granted
        } else {
            Slot::Wait(Duration::from_millis(wait_ms.unsigned_abs().max(1)))
        })
    }

    /// [`pause`] on this store's pool.
    pub async fn pause_operation(
        &self,
        operation: &str,
        duration: Duration,
        reason: &str,
    ) -> StoreResult<()> {
        Ok(pause(&self.pool, operation, duration, reason).await?)
    }

    /// [`active_pauses`] on this store's pool.
    pub async fn active_pauses(&self) -> StoreResult<Vec<ActivePause>> {
        Ok(active_pauses(&self.pool).await?)
    }
}

/// Most slots one block asks for (more cannot be waiting: each waiter holds
/// one of [`crate::settings::fixed::SLOT_LOCK_WAITERS`]).
const MAX_BLOCK: usize = crate::settings::fixed::SLOT_LOCK_WAITERS;

/// How long a block's statement waits for the slot lock before the orders
/// that asked are left to the background dispatcher (their transactions
/// wait meanwhile, holding a pooled connection each).
pub const BLOCK_LOCK_WAIT: Duration = Duration::from_millis(250);

/// The longest a block may take, connecting included: past it the
/// connection is dropped (a half-open one would otherwise hang every new
/// order until TCP gives up) and the asks are told [`Taken::Busy`].
const BLOCK_DEADLINE: Duration = Duration::from_millis(1250);

/// What [`SlotBlocks::take`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// A slot is counted for this call: send it now.
    Granted,
    /// No budget (or a pause); a slot may free after this long.
    Wait(Duration),
    /// The lock was busy or the database did not answer: nothing taken.
    Busy,
}

/// placeOrder slots for new orders, taken in blocks (issue 11).
///
/// A new order asks for its slot in the middle of its intake transaction.
/// Asking there one at a time would hold the slot lock from each take to
/// each commit, so every replica's new orders would queue behind one
/// commit after another. Instead one task per process takes, in one
/// statement on a connection of its own (`take_upstream_slots`, which
/// commits at once), as many slots as requests are waiting, and hands them
/// out: as many orders begin as the budget allows, the rest are told how
/// long until a slot frees. A block is never larger than the requests
/// already waiting, so no slot is held for later (its stamp stays just
/// before the sends), and an order that fails to begin wastes its slot,
/// never overspends the budget.
///
/// Its own connection: intake transactions hold pooled connections while
/// they wait for a block, so the block must not need one.
#[derive(Debug)]
pub struct SlotBlocks {
    opts: PgConnectOptions,
    /// The task's inbox; replaced when the task has ended (it never should).
    asks: std::sync::Mutex<Option<mpsc::UnboundedSender<Asked>>>,
}

type Asked = (SlotAsk, oneshot::Sender<Taken>);

impl SlotBlocks {
    /// Blocks taken on a connection like `store`'s pool's (opened at the first ask).
    pub fn new(store: &Store) -> Self {
        Self {
            opts: (*store.pool.connect_options()).clone(),
            asks: std::sync::Mutex::default(),
        }
    }

    /// One slot of `ask`'s budget, taken with whatever else this process
    /// asks for at the same moment. Answers within about two block
    /// deadlines whatever the database does (a grant that comes later is
    /// a wasted slot, never an overspent one).
    pub async fn take(&self, ask: SlotAsk) -> Taken {
        let (reply, answer) = oneshot::channel();
        {
            let mut asks = self
                .asks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let tell = match asks.as_ref() {
                Some(tell) if !tell.is_closed() => tell,
                _ => {
                    let (tell, asked) = mpsc::unbounded_channel();
                    tokio::spawn(take_blocks(self.opts.clone(), asked));
                    asks.insert(tell)
                }
            };
            if tell.send((ask, reply)).is_err() {
                return Taken::Busy;
            }
        }
        // The block before this one, then this one.
        match tokio::time::timeout(2 * BLOCK_DEADLINE, answer).await {
            Ok(Ok(taken)) => taken,
            _ => Taken::Busy,
        }
    }
}

/// The task behind [`SlotBlocks`]: one block per batch of waiting asks.
/// Ends when the `SlotBlocks` is dropped.
async fn take_blocks(opts: PgConnectOptions, mut asked: mpsc::UnboundedReceiver<Asked>) {
    let mut conn: Option<PgConnection> = None;
    while let Some(first) = asked.recv().await {
        let ask = first.0;
        let mut batch = vec![first.1];
        while batch.len() < MAX_BLOCK {
            match asked.try_recv() {
                Ok((a, reply)) if same_budget(a, ask) => batch.push(reply),
                Ok((_, reply)) => drop(reply.send(Taken::Busy)),
                Err(_) => break,
            }
        }
        // A request that went away takes nothing.
        batch.retain(|reply| !reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let answer = tokio::time::timeout(
            BLOCK_DEADLINE,
            take_block(&mut conn, &opts, ask, batch.len()),
        )
        .await
        .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
        let (granted, rest) = match answer {
            Ok((granted, wait)) => (granted, wait.map_or(Taken::Busy, Taken::Wait)),
            Err(e) => {
                if !matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("55P03")) {
                    tracing::warn!(error = %e, "taking a block of placeOrder slots failed; the orders wait for the dispatcher");
                    conn = None;
                }
                (0, Taken::Busy)
            }
        };
        for (i, reply) in batch.into_iter().enumerate() {
            let _ = reply.send(if i < granted { Taken::Granted } else { rest });
        }
    }
}

fn same_budget(a: SlotAsk, b: SlotAsk) -> bool {
    (a.operation, a.per_minute, a.window) == (b.operation, b.per_minute, b.window)
}

/// One `take_upstream_slots` for `want` slots: how many were granted, and
/// when fewer than `want`, how long until another frees.
async fn take_block(
    conn: &mut Option<PgConnection>,
    opts: &PgConnectOptions,
    ask: SlotAsk,
    want: usize,
) -> sqlx::Result<(usize, Option<Duration>)> {
    if conn.is_none() {
        let mut c = PgConnection::connect_with(opts).await?;
        sqlx::query(&format!(
            "set lock_timeout = '{}ms'",
            BLOCK_LOCK_WAIT.as_millis()
        ))
        .execute(&mut c)
        .await?;
        *conn = Some(c);
    }
    let c = conn.as_mut().expect("connected above");
    let (granted, wait_ms): (i32, i64) =
        sqlx::query_as("select granted, wait_ms from take_upstream_slots($1, $2, $3, $4)")
            .bind(ask.operation)
            .bind(i32::try_from(want).unwrap_or(i32::MAX))
            .bind(i32::try_from(ask.per_minute).unwrap_or(i32::MAX))
            .bind(i32::try_from(ask.window.as_millis()).unwrap_or(i32::MAX))
            .fetch_one(c)
            .await?;
    let wait = (wait_ms > 0).then(|| Duration::from_millis(wait_ms.unsigned_abs()));
    Ok((usize::try_from(granted).unwrap_or(0), wait))
}
