//! Upstream rate limits shared through Postgres by every replica
//! (contract §2.5): a strict sliding window per operation, plus pauses
//! (rate-limit penalties, account-wide errors) that every replica honours.
//!
//! The guarantee lives in the database (`take_upstream_slot`: an advisory
//! lock around count-then-insert), never in process memory.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection, PgExecutor, PgPool, postgres::PgConnectOptions};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

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

/// How long slots taken ahead may be handed out; their row is stamped
/// this much later than the clock (`take_upstream_block`).
const AHEAD_FOR: Duration = Duration::from_millis(250);

/// Most slots one block takes ahead.
const MAX_AHEAD: usize = 64;

/// The longest a block may take, connecting included: past it the
/// connection is dropped (a half-open one would otherwise hang every new
/// order until TCP gives up) and the asks are told [`Taken::Busy`].
const BLOCK_DEADLINE: Duration = Duration::from_millis(1250);

/// What [`SlotBlocks::take`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// A slot is counted for this call: send it now, and not later than
    /// the send margin after this instant, which is no later than the
    /// slot's stamp ([`crate::tuning::send_margin`]).
    Granted(Instant),
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
/// statement on a connection of its own (`take_upstream_block`, which
/// commits at once), as many slots as requests are waiting, and hands them
/// out: as many orders begin as the budget allows, the rest are told how
/// long until a slot frees. An order that fails to begin wastes its slot,
/// never overspends the budget.
///
/// At a high rate of new orders a block also takes slots ahead, as many as
/// the last blocks' rate asks for in [`AHEAD_FOR`], handed out from memory
/// until then: only from the lower half of the budget (a tight budget is
/// never held for later), and their row is stamped at the end of that time,
/// so each leaves the window no earlier than if it were taken at its use.
///
/// Its own connection: intake transactions hold pooled connections while
/// they wait for a block, so the block must not need one.
#[derive(Debug)]
pub struct SlotBlocks {
    opts: PgConnectOptions,
    /// The task's inbox; replaced when the task has ended (it never should).
    asks: std::sync::Mutex<Option<mpsc::UnboundedSender<Asked>>>,
    /// Slots granted ahead, handed out without a statement.
    stock: Arc<std::sync::Mutex<Stock>>,
    /// Asks so far: the rate that sizes the slots taken ahead.
    demand: Arc<AtomicU64>,
}

/// Slots a block took ahead ([`AHEAD_FOR`]), for asks of `ask`'s budget
/// until `until`: measured from before the block's statement was sent,
/// so never later than the end of the quarter second its row is stamped
/// with.
#[derive(Debug, Default)]
struct Stock {
    ask: Option<SlotAsk>,
    left: usize,
    until: Option<Instant>,
}

type Asked = (SlotAsk, oneshot::Sender<Taken>);

impl SlotBlocks {
    /// Blocks taken on a connection like `store`'s pool's (opened at the first ask).
    pub fn new(store: &Store) -> Self {
        Self {
            opts: (*store.pool.connect_options()).clone(),
            asks: std::sync::Mutex::default(),
            stock: Arc::default(),
            demand: Arc::default(),
        }
    }

    /// One slot of `ask`'s budget: from the slots taken ahead while they
    /// last, else taken with whatever else this process asks for at the
    /// same moment. Answers within about two block deadlines whatever the
    /// database does (a grant that comes later is a wasted slot, never an
    /// overspent one).
    pub async fn take(&self, ask: SlotAsk) -> Taken {
        if let Some(slot) = self.take_stocked(ask) {
            return Taken::Granted(slot.stamp_floor());
        }
        self.demand.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        {
            let mut asks = lock(&self.asks);
            let tell = match asks.as_ref() {
                Some(tell) if !tell.is_closed() => tell,
                _ => {
                    let (tell, asked) = mpsc::unbounded_channel();
                    let task = BlockTask {
                        opts: self.opts.clone(),
                        stock: self.stock.clone(),
                        demand: self.demand.clone(),
                    };
                    tokio::spawn(task.run(asked));
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

/// A slot taken from the stock before its order was stored: spent by
/// that order's transaction, or given back ([`SlotBlocks::give_back`]).
#[derive(Debug)]
pub struct Stocked {
    ask: SlotAsk,
    until: Instant,
}

impl Stocked {
    /// No later than its row's stamp: the end of the quarter second it was
    /// taken for, measured from before the block's statement, while the row
    /// is stamped that long after the statement's clock.
    pub fn stamp_floor(&self) -> Instant {
        self.until
    }
}

impl SlotBlocks {
    /// A slot of `ask` from the slots taken ahead, if one is left and in
    /// time: the order that holds it needs no block (nor a lock waiter).
    pub fn take_stocked(&self, ask: SlotAsk) -> Option<Stocked> {
        let mut stock = lock(&self.stock);
        let until = stock.until?;
        if !stock.hand_out(ask, Instant::now()) {
            return None;
        }
        self.demand.fetch_add(1, Ordering::Relaxed);
        Some(Stocked { ask, until })
    }

    /// Forgets the slots taken ahead: they are wasted, never sent (a pause
    /// began).
    pub fn drop_stock(&self) {
        *lock(&self.stock) = Stock::default();
    }

    /// A stocked slot its order did not use (the key was taken: a replay):
    /// back to the stock while that is the same batch and still in time,
    /// else it is wasted (never overspent).
    pub fn give_back(&self, slot: Stocked) {
        let mut stock = lock(&self.stock);
        let same =
            stock.until == Some(slot.until) && stock.ask.is_some_and(|a| same_budget(a, slot.ask));
        if same && Instant::now() < slot.until {
            stock.left += 1;
        }
    }
}

impl Stock {
    /// One slot of `ask` if one is left and still in time.
    fn hand_out(&mut self, ask: SlotAsk, now: Instant) -> bool {
        let fresh = self.until.is_some_and(|until| now < until);
        if self.left > 0 && fresh && self.ask.is_some_and(|a| same_budget(a, ask)) {
            self.left -= 1;
            true
        } else {
            false
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The task behind [`SlotBlocks`]: one block per batch of waiting asks.
/// Ends when the `SlotBlocks` is dropped.
struct BlockTask {
    opts: PgConnectOptions,
    stock: Arc<std::sync::Mutex<Stock>>,
    demand: Arc<AtomicU64>,
}

impl BlockTask {
    async fn run(self, mut asked: mpsc::UnboundedReceiver<Asked>) {
        let mut conn: Option<PgConnection> = None;
        let mut rate = AskRate::new(self.demand.load(Ordering::Relaxed));
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
            // A request that went away takes nothing; those that queued
            // while the last block was out may find its slots ahead.
            batch.retain(|reply| !reply.is_closed());
            let sent = Instant::now();
            let stocked = {
                let mut stock = lock(&self.stock);
                let mut served = 0;
                while served < batch.len() && stock.hand_out(ask, sent) {
                    served += 1;
                }
                for reply in batch.drain(..served) {
                    let _ = reply.send(Taken::Granted(sent));
                }
                stock.left > 0 && stock.until.is_some_and(|until| sent < until)
            };
            if batch.is_empty() {
                continue;
            }
            // Nothing more ahead while slots taken ahead are left.
            let ahead = if stocked {
                0
            } else {
                rate.ahead(self.demand.load(Ordering::Relaxed), sent, ask.per_minute)
            };
            let answer = tokio::time::timeout(
                BLOCK_DEADLINE,
                take_block(&mut conn, &self.opts, ask, batch.len(), ahead),
            )
            .await
            .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
            let (granted, rest) = match answer {
                Ok(block) => {
                    if block.ahead > 0 {
                        *lock(&self.stock) = Stock {
                            ask: Some(ask),
                            left: block.ahead,
                            until: Some(sent + AHEAD_FOR),
                        };
                    }
                    (block.granted, block.wait.map_or(Taken::Busy, Taken::Wait))
                }
                Err(e) => {
                    if !matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("55P03"))
                    {
                        tracing::warn!(error = %e, "taking a block of placeOrder slots failed; the orders wait for the dispatcher");
                        conn = None;
                    }
                    (0, Taken::Busy)
                }
            };
            for (i, reply) in batch.into_iter().enumerate() {
                // `sent` was read before the statement, so before its stamp.
                let _ = reply.send(if i < granted {
                    Taken::Granted(sent)
                } else {
                    rest
                });
            }
        }
    }
}

/// The rate of asks, measured over spans of at least [`AHEAD_FOR`] (one
/// gap between two blocks is not a rate: two orders a few milliseconds
/// apart would read as hundreds a second).
struct AskRate {
    count: u64,
    at: Instant,
    /// Asks per second over the last full span.
    per_s: f64,
}

impl AskRate {
    fn new(count: u64) -> Self {
        Self {
            count,
            at: Instant::now(),
            per_s: 0.0,
        }
    }

    /// Slots to take ahead now that `count` asks were made: the asks the
    /// next [`AHEAD_FOR`] will probably bring, none below two (a trickle
    /// takes exactly what it asks), at most [`MAX_AHEAD`] and a 32nd of
    /// the budget (3 at the real 100 a minute: a tight budget is not held).
    fn ahead(&mut self, count: u64, now: Instant, per_minute: u32) -> usize {
        let span = now.duration_since(self.at);
        if span >= AHEAD_FOR {
            self.per_s = count.saturating_sub(self.count) as f64 / span.as_secs_f64();
            (self.count, self.at) = (count, now);
        }
        let expected = self.per_s * AHEAD_FOR.as_secs_f64();
        if expected < 2.0 {
            0
        } else {
            (expected as usize)
                .min(MAX_AHEAD)
                .min(per_minute as usize / 32)
        }
    }
}

fn same_budget(a: SlotAsk, b: SlotAsk) -> bool {
    (a.operation, a.per_minute, a.window) == (b.operation, b.per_minute, b.window)
}

/// What one block got.
struct Block {
    /// For the asks waiting.
    granted: usize,
    /// For asks to come, within [`AHEAD_FOR`].
    ahead: usize,
    /// When fewer than asked were granted: until another slot frees.
    wait: Option<Duration>,
}

/// One `take_upstream_block` for `want` slots now and up to `ahead` more.
async fn take_block(
    conn: &mut Option<PgConnection>,
    opts: &PgConnectOptions,
    ask: SlotAsk,
    want: usize,
    ahead: usize,
) -> sqlx::Result<Block> {
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
    let (granted, granted_ahead, wait_ms): (i32, i32, i64) = sqlx::query_as(
        "select granted, granted_ahead, wait_ms from take_upstream_block($1, $2, $3, $4, $5, $6)",
    )
    .bind(ask.operation)
    .bind(i32::try_from(want).unwrap_or(i32::MAX))
    .bind(i32::try_from(ahead).unwrap_or(i32::MAX))
    .bind(i32::try_from(AHEAD_FOR.as_millis()).unwrap_or(i32::MAX))
    .bind(i32::try_from(ask.per_minute).unwrap_or(i32::MAX))
    .bind(i32::try_from(ask.window.as_millis()).unwrap_or(i32::MAX))
    .fetch_one(c)
    .await?;
    Ok(Block {
        granted: usize::try_from(granted).unwrap_or(0),
        ahead: usize::try_from(granted_ahead).unwrap_or(0),
        wait: (wait_ms > 0).then(|| Duration::from_millis(wait_ms.unsigned_abs())),
    })
}
