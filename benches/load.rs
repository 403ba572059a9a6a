//! `cargo bench --bench load`: the hot path against Postgres' own speed
//! (issue 11). Not a test and not in CI: it needs a local PostgreSQL with
//! `pgbench`, takes a few minutes, and its figures depend on the machine.
//!
//! It runs a pgbench baseline (one insert per transaction into an
//! order-like table with two unique indexes), then the release
//! `order-gateway` (`serve`) against its `emulator`, each on a throwaway
//! database, and drives every figure of the issue with a small load
//! generator (closed loop or constant rate, a new idempotency key per
//! request, every latency kept). Transactions are `xact_commit` of
//! `pg_stat_database` for the gateway's database; a gateway run ends by
//! stopping the gateway, so every backend has flushed its counters when they
//! are read. WAL is `pg_current_wal_lsn()`, which is cluster-wide (other
//! work on the same server shows in it); rows written are the
//! `pg_stat_user_tables` counters of the gateway's database.
//!
//! Prints a table (figure, value, ratio to the phase's baseline, goal) and
//! one JSON line, and exits 1 when a goal is missed. A phase's baseline is
//! the mean of pgbench run just before it and just after it: the machine's
//! speed drifts within a minute, and one side alone tilted the ratios.
//!
//! Environment: `BENCH_SERVER_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), `BENCH_SECONDS` (each
//! phase, default 10), `BENCH_CONCURRENCY` (default 32),
//! `BENCH_METRICS_ROWS` (stored orders for the `/metrics` figure, default
//! 1000000; 0 skips it), `BENCH_BACKLOG_ORDERS` (the stored backlog of the
//! RSS figure, default 100000; 0 skips it), `BENCH_DRAIN_ORDERS` (the burst
//! drained under a scaled budget by three replicas, default 10000; 0 skips
//! it), `BENCH_DRAIN_RATE` (that budget, placeOrder calls per minute,
//! default 3000), `BENCH_DRAIN_WINDOW` (its `XOXODAY_RATE_WINDOW`, default
//! `65s`), `BENCH_ONLY` (a comma-separated list of `core`, `backlog100k`,
//! `drain`: the phases to run, default all; `core` is every phase before
//! the last two), `PGBENCH` (default: `pgbench` on `PATH`, else PostgreSQL
//! 15's).

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection};

const BIN: &str = env!("CARGO_BIN_EXE_order-gateway");
const BODY: &str = r#"{"productId": 1001, "denomination": 50, "email": "a@example.com"}"#;
/// Settled orders the replay phase asks for again, in turn: a batch of
/// reads then holds different keys, as replays from many callers would.
const REPLAY_KEYS: u64 = 256;
/// The phase groups `BENCH_ONLY` can name.
const PHASES: [&str; 3] = ["core", "backlog100k", "drain"];
/// Gateway replicas of the drain phase.
const DRAIN_REPLICAS: usize = 3;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run()) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            std::process::exit(2);
        }
    }
}

struct Opts {
    server: String,
    seconds: u64,
    concurrency: usize,
    metrics_rows: i64,
    backlog_orders: i64,
    drain_orders: u64,
    drain_rate: u64,
    drain_window: String,
    only: Option<Vec<String>>,
    pgbench: String,
}

impl Opts {
    fn from_env() -> Result<Self> {
        let num = |name: &str, default: u64| -> Result<u64> {
            match std::env::var(name) {
                Ok(v) => v.parse().with_context(|| format!("{name}: not a number")),
                Err(_) => Ok(default),
            }
        };
        let pgbench = std::env::var("PGBENCH").unwrap_or_else(|_| {
            let pg15 = "/usr/lib/postgresql/15/bin/pgbench";
            let on_path = Command::new("pgbench").arg("--version").output().is_ok();
            if on_path || !std::path::Path::new(pg15).exists() {
                "pgbench".into()
            } else {
                pg15.into()
            }
        });
        Ok(Self {
            server: std::env::var("BENCH_SERVER_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            seconds: num("BENCH_SECONDS", 10)?.max(2),
            concurrency: num("BENCH_CONCURRENCY", 32)?.max(1) as usize,
            metrics_rows: num("BENCH_METRICS_ROWS", 1_000_000)? as i64,
            backlog_orders: num("BENCH_BACKLOG_ORDERS", 100_000)? as i64,
            drain_orders: num("BENCH_DRAIN_ORDERS", 10_000)?,
            drain_rate: num("BENCH_DRAIN_RATE", 3000)?.max(1),
            drain_window: std::env::var("BENCH_DRAIN_WINDOW").unwrap_or_else(|_| "65s".into()),
            only: match std::env::var("BENCH_ONLY") {
                Ok(v) => {
                    let names: Vec<String> = v.split(',').map(|n| n.trim().to_owned()).collect();
                    if let Some(bad) = names.iter().find(|n| !PHASES.contains(&n.as_str())) {
                        bail!(
                            "BENCH_ONLY: unknown phase {bad} (known: {})",
                            PHASES.join(", ")
                        );
                    }
                    Some(names)
                }
                Err(_) => None,
            },
            pgbench,
        })
    }

    /// Whether `BENCH_ONLY` (unset: every phase) names `phase`.
    fn runs(&self, phase: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == phase))
    }

    fn db_url(&self, db: &str) -> String {
        let base = self.server.rsplit_once('/').map_or("", |(b, _)| b);
        format!("{base}/{db}")
    }
}

/// One row of the result table.
struct Figure {
    name: &'static str,
    value: f64,
    unit: &'static str,
    /// Ratio to the pgbench run before it, when that is the measure.
    ratio: Option<f64>,
    /// Goal text and whether it is met (`None`: reported only).
    goal: Option<(String, bool)>,
}

impl Figure {
    /// A figure shown for information: no ratio, no goal.
    fn shown(name: &'static str, value: f64, unit: &'static str) -> Self {
        Self {
            name,
            value,
            unit,
            ratio: None,
            goal: None,
        }
    }
}

async fn run() -> Result<bool> {
    let o = Opts::from_env()?;
    let tag = std::process::id();
    let mut admin = PgConnection::connect(&o.server).await?;
    let dbs = [
        format!("ogw_bench_pg_{tag}"),
        format!("ogw_bench_a_{tag}"),
        format!("ogw_bench_b_{tag}"),
        format!("ogw_bench_backlog_{tag}"),
        format!("ogw_bench_drain_{tag}"),
    ];
    for db in &dbs {
        sqlx::query(&format!("drop database if exists {db}"))
            .execute(&mut admin)
            .await?;
        sqlx::query(&format!("create database {db}"))
            .execute(&mut admin)
            .await?;
    }
    let result = phases(&o, &mut admin, &dbs).await;
    for db in &dbs {
        let _ = sqlx::query(&format!("drop database if exists {db} with (force)"))
            .execute(&mut admin)
            .await;
    }
    let figures = result?;
    Ok(report(&figures))
}

async fn phases(o: &Opts, admin: &mut PgConnection, dbs: &[String; 5]) -> Result<Vec<Figure>> {
    let mut figs = Vec::new();
    let mut peak_rss_kb = 0;
    let emulator = Emulator::start()?;
    if o.runs("core") {
        core_phases(o, admin, dbs, &emulator, &mut figs, &mut peak_rss_kb).await?;
    }
    if o.runs("backlog100k") && o.backlog_orders > 0 {
        backlog_stored(o, admin, &dbs[3], &emulator, &mut figs, &mut peak_rss_kb).await?;
    }
    if o.runs("drain") && o.drain_orders > 0 {
        drain(o, admin, &dbs[4], &mut figs, &mut peak_rss_kb).await?;
    }
    if peak_rss_kb > 0 {
        let mb = peak_rss_kb as f64 / 1024.0;
        figs.push(Figure {
            name: "gateway peak RSS",
            value: mb,
            unit: "MB",
            ratio: None,
            goal: Some(("≤ 100 MB".into(), mb <= 100.0)),
        });
    }
    Ok(figs)
}

/// The phases before `backlog100k` and `drain`: intake, backlog, intake at
/// half rate, end to end, replays, `/metrics`.
async fn core_phases(
    o: &Opts,
    admin: &mut PgConnection,
    dbs: &[String; 5],
    emulator: &Emulator,
    figs: &mut Vec<Figure>,
    peak_rss_kb: &mut u64,
) -> Result<()> {
    let (pg_db, db_a, db_b) = (&dbs[0], &dbs[1], &dbs[2]);
    let secs = o.seconds;
    prepare_pgbench(o, pg_db).await?;
    let mut peak = 0;

    // Intake: new keys, `Prefer: wait=0`, upstream budget 100/min.
    let base1 = pgbench(o, pg_db, secs / 2)?;
    eprintln!("pgbench: {base1:.0} inserts/s");
    let key_a = setup_db(o, db_a)?;
    let gw = Gateway::start(o, db_a, emulator, &[])?;
    let before = Counters::read(admin, db_a).await?;
    let cpu0 = Cpu::read(gw.pid, emulator.child.id());
    let intake = load(
        &gw.url,
        &key_a,
        Mode::Closed(o.concurrency),
        secs,
        Req::New(0),
    )
    .await;
    let cpu = Cpu::read(gw.pid, emulator.child.id()).per_order(&cpu0, intake.ok);
    peak = peak.max(gw.stop()?);
    let after = Counters::read(admin, db_a).await?;
    let d = after.minus(&before);
    let base1 = bracket(o, pg_db, base1)?;
    let rate = intake.ok as f64 / intake.elapsed;
    eprintln!("intake: {}", intake.summary());
    eprintln!("intake: {cpu}");
    figs.push(Figure::shown(
        "pgbench inserts (baseline, intake)",
        base1,
        "tx/s",
    ));
    figs.push(Figure {
        name: "intake, wait=0, new keys",
        value: rate,
        unit: "orders/s",
        ratio: Some(rate / base1),
        goal: Some(("≥ 0.5× pgbench".into(), rate / base1 >= 0.5)),
    });
    let tx = d.xact as f64 / intake.ok.max(1) as f64;
    figs.push(Figure {
        name: "intake: transactions per order",
        value: tx,
        unit: "tx",
        ratio: None,
        goal: Some(("≤ 1.1".into(), tx <= 1.1)),
    });
    figs.push(Figure::shown(
        "intake: WAL per order (cluster-wide)",
        d.wal as f64 / intake.ok.max(1) as f64,
        "bytes",
    ));
    figs.push(Figure::shown(
        "intake: p99 latency (closed loop)",
        intake.p(0.99),
        "ms",
    ));
    if intake.errors > 0 {
        bail!(
            "intake: {} requests failed ({})",
            intake.errors,
            intake.first_error()
        );
    }

    // A backlog the budget cannot serve: thousands `accepted`, the budget
    // of the last 65 s spent. Nothing else happens.
    let gw = Gateway::start(o, db_a, emulator, &[])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The slot counts are read outside the window: their connections'
    // transactions are flushed (at backend exit) before `read_flushed`.
    let slots0 = place_slots(o, db_a).await?;
    let before = Counters::read_flushed(admin, db_a).await?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = Counters::read_flushed(admin, db_a).await?;
    let idle = t0.elapsed().as_secs_f64();
    let sent = place_slots(o, db_a).await? - slots0;
    let backlog = (after.xact - before.xact) as f64 / idle;
    let backlog_rows = (after.rows - before.rows) as f64 / idle;
    figs.push(Figure {
        name: "backlog waiting for the budget: transactions/s",
        value: backlog,
        unit: "tx/s",
        ratio: None,
        goal: Some(("≤ 5".into(), backlog <= 5.0)),
    });
    figs.push(Figure::shown(
        "backlog: rows written/s",
        backlog_rows,
        "rows/s",
    ));
    figs.push(Figure::shown(
        "backlog: placeOrder calls in the window",
        sent as f64,
        "calls",
    ));

    // p99 of intake at half the closed-loop rate, constant rate.
    let half = (rate / 2.0).max(1.0);
    // The first moments of load on a gateway that has not taken an order
    // yet are slower (up to a few hundred ms in the first half second, cause
    // not yet found): shown apart, and the goal measured after them.
    let cold = load(&gw.url, &key_a, Mode::Rate(half), 1, Req::New(2)).await;
    let paced = load(&gw.url, &key_a, Mode::Rate(half), secs, Req::New(1)).await;
    peak = peak.max(gw.stop()?);
    eprintln!("intake at {half:.0}/s: {}", paced.summary());
    eprintln!("intake at {half:.0}/s, first second: {}", cold.summary());
    figs.push(Figure::shown(
        "intake at half rate: max latency in the first second",
        cold.p(1.0),
        "ms",
    ));
    let p99 = paced.p(0.99);
    figs.push(Figure {
        name: "intake p99 at half the intake rate",
        value: p99,
        unit: "ms",
        ratio: None,
        goal: Some(("≤ 20 ms".into(), p99 <= 20.0)),
    });

    // End to end, limits lifted: each request waits for its settled order.
    let base2 = pgbench(o, pg_db, secs / 2)?;
    eprintln!("pgbench: {base2:.0} inserts/s");
    let key_b = setup_db(o, db_b)?;
    let lifted = [
        ("XOXODAY_PLACE_ORDER_RATE", "1000000"),
        ("XOXODAY_ORDER_DETAILS_RATE", "1000000"),
    ];
    let gw = Gateway::start(o, db_b, emulator, &lifted)?;
    let before = Counters::read(admin, db_b).await?;
    // From the server's own database: a sampler on the gateway's would
    // add its polls to the transactions counted per order.
    let waits = Waits::sample(o.server.clone(), db_b.clone());
    let cpu0 = Cpu::read(gw.pid, emulator.child.id());
    let e2e = load(
        &gw.url,
        &key_b,
        Mode::Closed(o.concurrency),
        secs,
        Req::Wait,
    )
    .await;
    let e2e_cpu = Cpu::read(gw.pid, emulator.child.id()).per_order(&cpu0, e2e.ok);
    peak = peak.max(gw.stop()?);
    let after = Counters::read(admin, db_b).await?;
    let d = after.minus(&before);
    eprintln!("end to end: {}", e2e.summary());
    eprintln!("end to end: {e2e_cpu}");
    waits.report("end to end").await;
    let base2 = bracket(o, pg_db, base2)?;
    let rate = e2e.ok as f64 / e2e.elapsed;
    figs.push(Figure::shown(
        "pgbench inserts (baseline, end to end)",
        base2,
        "tx/s",
    ));
    figs.push(Figure {
        name: "end to end, limits lifted",
        value: rate,
        unit: "orders/s",
        ratio: Some(rate / base2),
        goal: Some(("≥ 0.25× pgbench".into(), rate / base2 >= 0.25)),
    });
    let tx = d.xact as f64 / e2e.ok.max(1) as f64;
    figs.push(Figure {
        name: "end to end: transactions per order",
        value: tx,
        unit: "tx",
        ratio: None,
        goal: Some(("≤ 2".into(), tx <= 2.0)),
    });
    figs.push(Figure::shown("end to end: p99 latency", e2e.p(0.99), "ms"));
    // A stall between a slot's stamp and its send drops the call
    // (`tuning::send_margin`): each costs a slot and a write-back.
    let mut conn = PgConnection::connect(&o.db_url(db_b)).await?;
    let not_sent: i64 =
        sqlx::query_scalar("select count(*) from upstream_exchanges where outcome = 'not_sent'")
            .fetch_one(&mut conn)
            .await?;
    conn.close().await?;
    figs.push(Figure::shown(
        "end to end: calls not sent (slot older than the margin)",
        not_sent as f64,
        "calls",
    ));
    if e2e.errors > 0 || e2e.unsettled > 0 {
        bail!(
            "end to end: {} failed, {} not settled ({})",
            e2e.errors,
            e2e.unsettled,
            e2e.first_error()
        );
    }

    // Replays of settled orders, spread over `REPLAY_KEYS` keys.
    let base3 = pgbench(o, pg_db, secs / 2)?;
    eprintln!("pgbench: {base3:.0} inserts/s");
    let gw = Gateway::start(o, db_b, emulator, &lifted)?;
    let (poster, uri) = (Poster::new(&key_b), orders_uri(&gw.url));
    for i in 0..REPLAY_KEYS {
        let settled = poster.post_order(&uri, format!("replay-{i}"), 60).await;
        if settled != Ok(true) {
            bail!("replay: the order to replay did not settle ({settled:?})");
        }
    }
    // The settled orders' rows (order, timeline, exchange, vouchers) were
    // written by backends now idle, which flush their counters only after
    // 10 s idle: read once they have, or they count as replays' writes.
    let before = Counters::read_idle_flushed(admin, db_b).await?;
    let cpu0 = Cpu::read(gw.pid, emulator.child.id());
    let replay = load(
        &gw.url,
        &key_b,
        Mode::Closed(o.concurrency),
        secs,
        Req::Replay,
    )
    .await;
    let replay_cpu = Cpu::read(gw.pid, emulator.child.id()).per_order(&cpu0, replay.ok);
    peak = peak.max(gw.stop()?);
    let after = Counters::read(admin, db_b).await?;
    let d = after.minus(&before);
    let base3 = bracket(o, pg_db, base3)?;
    eprintln!("replays: {}", replay.summary());
    eprintln!("replays: {replay_cpu}");
    let rate = replay.ok as f64 / replay.elapsed;
    figs.push(Figure::shown(
        "pgbench inserts (baseline, replays)",
        base3,
        "tx/s",
    ));
    figs.push(Figure {
        name: "replays of a settled order",
        value: rate,
        unit: "replays/s",
        ratio: Some(rate / base3),
        goal: Some(("≥ 2× pgbench".into(), rate / base3 >= 2.0)),
    });
    let tx = d.xact as f64 / replay.ok.max(1) as f64;
    figs.push(Figure {
        name: "replays: transactions per replay",
        value: tx,
        unit: "tx",
        ratio: None,
        goal: Some(("≤ 1.05".into(), tx <= 1.05)),
    });
    // Rows written come from counters each backend flushes when it likes
    // (an idle one after 10 s), so background work done before the phase
    // (the first order, a fold of the counters' deltas) can land in it;
    // WAL is read from the server at once, so it judges "no write".
    figs.push(Figure::shown(
        "replays: rows written per replay (stats may lag)",
        d.rows as f64 / replay.ok.max(1) as f64,
        "rows",
    ));
    let wal = d.wal as f64 / replay.ok.max(1) as f64;
    figs.push(Figure {
        name: "replays: WAL per replay (cluster-wide)",
        value: wal,
        unit: "bytes",
        ratio: None,
        goal: Some(("0 (no write)".into(), wal < 1.0)),
    });
    if replay.errors > 0 {
        bail!(
            "replay: {} failed ({})",
            replay.errors,
            replay.first_error()
        );
    }

    // /metrics with many stored (settled) orders.
    if o.metrics_rows > 0 {
        let t = Instant::now();
        store_settled_orders(o, db_b, o.metrics_rows).await?;
        eprintln!(
            "stored {} settled orders in {:.0} s",
            o.metrics_rows,
            t.elapsed().as_secs_f64()
        );
        let gw = Gateway::start(o, db_b, emulator, &lifted)?;
        let ms = scrape_metrics(&gw.url).await?;
        peak = peak.max(gw.stop()?);
        figs.push(Figure {
            name: "/metrics scrape, median of 5",
            value: ms,
            unit: "ms",
            ratio: None,
            goal: Some((format!("< 50 ms at {} orders", o.metrics_rows), ms < 50.0)),
        });
    }
    *peak_rss_kb = (*peak_rss_kb).max(peak);
    Ok(())
}

/// A stored backlog the budget cannot serve (`BENCH_BACKLOG_ORDERS`
/// `accepted` orders, the placeOrder budget of the window spent): one
/// gateway's peak RSS and what the waiting backlog costs Postgres.
async fn backlog_stored(
    o: &Opts,
    admin: &mut PgConnection,
    db: &str,
    emulator: &Emulator,
    figs: &mut Vec<Figure>,
    peak_rss_kb: &mut u64,
) -> Result<()> {
    let started = Instant::now();
    let n = o.backlog_orders;
    setup_db(o, db)?;
    let t = Instant::now();
    store_accepted_orders(o, db, n).await?;
    eprintln!(
        "stored {n} accepted orders in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    // The budget (100/min, the default) spent just before the start: the
    // window (65 s) outlasts the phase, so nothing may be sent.
    spend_place_budget(o, db, 100).await?;
    let gw = Gateway::start(o, db, emulator, &[("XOXODAY_PLACE_ORDER_RATE", "100")])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let slots0 = place_slots(o, db).await?;
    let before = Counters::read_flushed(admin, db).await?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.seconds)).await;
    let after = Counters::read_flushed(admin, db).await?;
    let idle = t0.elapsed().as_secs_f64();
    let sent = place_slots(o, db).await? - slots0;
    let kb = gw.stop()?;
    *peak_rss_kb = (*peak_rss_kb).max(kb);
    let mb = kb as f64 / 1024.0;
    let tx = (after.xact - before.xact) as f64 / idle;
    let rows = (after.rows - before.rows) as f64 / idle;
    eprintln!(
        "stored backlog of {n}: {tx:.1} tx/s, {rows:.1} rows/s, {sent} placeOrder calls, \
         peak RSS {mb:.1} MB (phase {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    figs.push(Figure {
        name: "stored backlog: gateway peak RSS",
        value: mb,
        unit: "MB",
        ratio: None,
        goal: Some((format!("≤ 100 MB at {n} orders"), mb <= 100.0)),
    });
    figs.push(Figure {
        name: "stored backlog: transactions/s",
        value: tx,
        unit: "tx/s",
        ratio: None,
        goal: Some(("≤ 5 (one replica)".into(), tx <= 5.0)),
    });
    figs.push(Figure::shown(
        "stored backlog: rows written/s",
        rows,
        "rows/s",
    ));
    figs.push(Figure::shown(
        "stored backlog: placeOrder calls in the window",
        sent as f64,
        "calls",
    ));
    Ok(())
}

/// A burst of `BENCH_DRAIN_ORDERS` drained by three replicas under a
/// scaled placeOrder budget (`BENCH_DRAIN_RATE` per `BENCH_DRAIN_WINDOW`):
/// no 60 s window over budget, every full window used, one call per order.
async fn drain(
    o: &Opts,
    admin: &mut PgConnection,
    db: &str,
    figs: &mut Vec<Figure>,
    peak_rss_kb: &mut u64,
) -> Result<()> {
    let started = Instant::now();
    let budget = o.drain_rate;
    let key = setup_db(o, db)?;
    // Its own emulator: the ledger then holds only this burst's poNumbers.
    let emulator = Emulator::start()?;
    let rate = budget.to_string();
    // Three pools of 8: the server's 100 connections are shared.
    let env = [
        ("XOXODAY_PLACE_ORDER_RATE", rate.as_str()),
        ("XOXODAY_RATE_WINDOW", o.drain_window.as_str()),
        // So `BENCH_DRAIN_WINDOW=60s` may measure the dispatcher without
        // the margins (start-up refuses under 65 s otherwise).
        ("XOXODAY_ALLOW_SHORT_RATE_WINDOW", "1"),
        ("XOXODAY_ORDER_DETAILS_RATE", "1000000"),
        ("DATABASE_MAX_CONNECTIONS", "8"),
    ];
    let mut gws = Vec::new();
    for _ in 0..DRAIN_REPLICAS {
        gws.push(Gateway::start(o, db, &emulator, &env)?);
    }
    let urls: Vec<String> = gws.iter().map(|g| g.url.clone()).collect();
    let before = Counters::read(admin, db).await?;
    let t0 = Instant::now();
    let intake = burst(&urls, &key, o.drain_orders, o.concurrency).await;
    eprintln!("drain: burst {}", intake.summary());
    if intake.errors > 0 {
        bail!(
            "drain: {} requests failed ({})",
            intake.errors,
            intake.first_error()
        );
    }
    // Expected: orders / budget minutes; allowed 1.2 times that plus 1 min.
    let limit = Duration::from_secs_f64(o.drain_orders as f64 / budget as f64 * 60.0 * 1.2 + 60.0);
    let mut c = PgConnection::connect(&o.db_url(db)).await?;
    let mut polls = 0;
    let mut shown = Instant::now();
    let left = loop {
        let left: i64 = sqlx::query_scalar(
            "select count(*) from orders where status in ('accepted', 'placing', 'reconciling')",
        )
        .fetch_one(&mut c)
        .await?;
        polls += 1;
        if left == 0 || t0.elapsed() > limit {
            break left;
        }
        if shown.elapsed() >= Duration::from_secs(30) {
            eprintln!(
                "drain: {left} orders unsettled after {:.0} s",
                t0.elapsed().as_secs_f64()
            );
            shown = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let drained = t0.elapsed().as_secs_f64();
    c.close().await?;
    for gw in gws {
        let kb = gw.stop()?;
        *peak_rss_kb = (*peak_rss_kb).max(kb);
    }
    let after = Counters::read_flushed(admin, db).await?;
    // The polls above ran in this database, one transaction each.
    let xact = after.xact - before.xact - polls;
    let ledger = emulator_place_calls(&emulator).await?;
    drop(emulator);

    let mut c = PgConnection::connect(&o.db_url(db)).await?;
    // Send times: `started_at` is rewritten with the transport's clock
    // just before the request goes out (`created_at` is the row's insert).
    let (calls, span, most): (i64, f64, i64) = sqlx::query_as(
        "with calls as (
           select started_at t from upstream_exchanges where operation = 'place_order')
         select count(*),
                coalesce(extract(epoch from max(t) - min(t)), 0)::float8,
                (select coalesce(max(w), 0) from (
                   select count(*) over (order by t range between current row
                            and interval '60 seconds' - interval '1 microsecond' following) w
                     from calls) s)
           from calls",
    )
    .fetch_one(&mut c)
    .await?;
    let per_window: Vec<(i64, i64)> = sqlx::query_as(
        "with calls as (
           select started_at t from upstream_exchanges where operation = 'place_order'),
         first as (select min(t) t0 from calls)
         select floor(extract(epoch from c.t - f.t0) / 60)::int8 k, count(*)
           from calls c, first f group by k order by k",
    )
    .fetch_all(&mut c)
    .await?;
    let (orders, not_once, most_per_order): (i64, i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where n <> 1), coalesce(max(n), 0) from (
           select count(x.exchange_id) n from orders o
             left join upstream_exchanges x
               on x.order_id = o.order_id and x.operation = 'place_order'
            group by o.order_id) s",
    )
    .fetch_one(&mut c)
    .await?;
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("select status, count(*) from orders group by status order by status")
            .fetch_all(&mut c)
            .await?;
    let po_numbers: Vec<String> = sqlx::query_scalar("select po_number from orders")
        .fetch_all(&mut c)
        .await?;
    c.close().await?;
    let ledger_not_once = po_numbers
        .iter()
        .filter(|po| ledger.get(po.as_str()).and_then(Value::as_u64) != Some(1))
        .count();
    let full = (span / 60.0).floor() as usize;
    let mut windows = vec![0_i64; full];
    for (k, n) in &per_window {
        if let Some(w) = windows.get_mut(*k as usize) {
            *w = *n;
        }
    }
    let least = windows.iter().min().map(|&n| n as f64 / budget as f64);
    let overall = orders as f64 / (drained / 60.0 * budget as f64);
    eprintln!(
        "drain: {orders} orders, {calls} placeOrder calls over {span:.0} s, \
         settled in {drained:.0} s; statuses {statuses:?}; calls per full 60 s window \
         {windows:?}, then {:?}; most in 60 s {most}; most calls for one order \
         {most_per_order} (phase {:.0} s)",
        per_window
            .iter()
            .skip(full)
            .map(|w| w.1)
            .collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );
    let per_s = intake.ok as f64 / intake.elapsed;
    figs.push(Figure::shown(
        "drain: burst intake, wait=0, 3 replicas",
        per_s,
        "orders/s",
    ));
    figs.push(Figure::shown(
        "drain: until every order settled",
        drained,
        "s",
    ));
    figs.push(Figure {
        name: "drain: orders left unsettled",
        value: left as f64,
        unit: "orders",
        ratio: None,
        goal: Some((format!("0 (limit {:.0} s)", limit.as_secs_f64()), left == 0)),
    });
    figs.push(Figure {
        name: "drain: most placeOrder calls in any 60 s",
        value: most as f64,
        unit: "calls",
        ratio: None,
        goal: Some((format!("≤ {budget} (budget)"), most as u64 <= budget)),
    });
    figs.push(Figure {
        name: "drain: least use of a full 60 s window",
        value: least.unwrap_or(f64::NAN),
        unit: "× budget",
        ratio: None,
        goal: least.map(|l| ("≥ 0.95".into(), l >= 0.95)),
    });
    figs.push(Figure::shown(
        "drain: orders / (minutes to settle × budget)",
        overall,
        "× budget",
    ));
    figs.push(Figure {
        name: "drain: orders not placed once (emulator)",
        value: ledger_not_once as f64,
        unit: "orders",
        ratio: None,
        goal: Some(("0".into(), ledger_not_once == 0)),
    });
    figs.push(Figure {
        name: "drain: orders not placed once (exchanges)",
        value: not_once as f64,
        unit: "orders",
        ratio: None,
        goal: Some(("0".into(), not_once == 0)),
    });
    figs.push(Figure::shown(
        "drain: transactions per order",
        xact as f64 / orders.max(1) as f64,
        "tx",
    ));
    Ok(())
}

fn report(figs: &[Figure]) -> bool {
    println!();
    println!(
        "| {:<48} | {:>12} | {:<9} | {:>6} | {:<24} |",
        "figure", "value", "unit", "ratio", "goal"
    );
    println!(
        "|{:-<50}|{:->14}|{:-<11}|{:->8}|{:-<26}|",
        "", "", "", "", ""
    );
    let mut ok = true;
    let mut json = serde_json::Map::new();
    for f in figs {
        let ratio = f.ratio.map_or(String::new(), |r| format!("{r:.2}×"));
        let goal = match &f.goal {
            None => String::new(),
            Some((text, met)) => {
                ok &= met;
                format!("{} {text}", if *met { "ok" } else { "MISSED" })
            }
        };
        println!(
            "| {:<48} | {:>12.2} | {:<9} | {:>6} | {:<24} |",
            f.name, f.value, f.unit, ratio, goal
        );
        json.insert(
            f.name.into(),
            json!({"value": f.value, "unit": f.unit, "ratio": f.ratio,
                   "met": f.goal.as_ref().map(|g| g.1)}),
        );
    }
    println!();
    println!(
        "{}",
        json!({"bench": "load", "all_goals_met": ok, "figures": json})
    );
    ok
}

// ---- the gateway's database -------------------------------------------------

/// Migrates `db` with the binary and creates a caller key.
fn setup_db(o: &Opts, db: &str) -> Result<String> {
    let url = o.db_url(db);
    let out = Command::new(BIN)
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()?;
    if !out.status.success() {
        bail!("migrate: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = Command::new(BIN)
        .args(["api-key", "create", "--caller", "bench"])
        .env("DATABASE_URL", &url)
        .output()?;
    if !out.status.success() {
        bail!("api-key create: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    Ok(text.lines().last().unwrap_or_default().trim().to_owned())
}

#[derive(Debug, Clone, Copy)]
struct Counters {
    xact: i64,
    rows: i64,
    wal: i64,
}

impl Counters {
    async fn read(admin: &mut PgConnection, db: &str) -> Result<Self> {
        let (xact, rows, wal): (i64, i64, i64) = sqlx::query_as(
            "select xact_commit, tup_inserted + tup_updated + tup_deleted,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint
               from pg_stat_database where datname = $1",
        )
        .bind(db)
        .fetch_one(&mut *admin)
        .await?;
        Ok(Self { xact, rows, wal })
    }

    /// Reads while the gateway runs: waits until a backend idle since its
    /// last transaction has flushed its counters (PostgreSQL 15 flushes
    /// them at most once a second, and an idle backend within 10 s).
    async fn read_flushed(admin: &mut PgConnection, db: &str) -> Result<Self> {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        Self::read(admin, db).await
    }

    /// Reads after every backend idle since its last write has flushed its
    /// counters (PostgreSQL 15: 10 s idle).
    async fn read_idle_flushed(admin: &mut PgConnection, db: &str) -> Result<Self> {
        tokio::time::sleep(Duration::from_millis(10_500)).await;
        Self::read(admin, db).await
    }

    fn minus(&self, before: &Self) -> Self {
        Self {
            xact: self.xact - before.xact,
            rows: self.rows - before.rows,
            wal: self.wal - before.wal,
        }
    }
}

/// placeOrder slots ever taken (slots older than two windows are deleted,
/// so this is read close together).
async fn place_slots(o: &Opts, db: &str) -> Result<i64> {
    let mut c = PgConnection::connect(&o.db_url(db)).await?;
    let n = sqlx::query_scalar(
        "select coalesce(max(upto), 0) from upstream_call_slots where operation = 'place_order'",
    )
    .fetch_one(&mut c)
    .await?;
    c.close().await?;
    Ok(n)
}

/// `n` completed orders of the bench caller, written directly (the
/// `/metrics` figure is about stored history, not how it got there).
async fn store_settled_orders(o: &Opts, db: &str, n: i64) -> Result<()> {
    let mut c = PgConnection::connect(&o.db_url(db)).await?;
    // A bulk load, not a million settles: the status triggers are off for
    // it and the counted totals (migration 0041) are added once after.
    sqlx::query("set session_replication_role = replica")
        .execute(&mut c)
        .await?;
    sqlx::query(
        "insert into orders (order_id, caller_id, idempotency_key, request_fingerprint,
           po_number, status, product_id, denomination, quantity, attempts, settled_at,
           created_at)
         select gen_random_uuid(), (select caller_id from callers limit 1),
                'bulk-' || i, '\\x00'::bytea, 'BULK' || i, 'completed', 1001, 50, 1, 1,
                now() - interval '1 day', now() - interval '1 day'
           from generate_series(1, $1) i",
    )
    .bind(n)
    .execute(&mut c)
    .await?;
    sqlx::query("set session_replication_role = origin")
        .execute(&mut c)
        .await?;
    let counted: Option<String> =
        sqlx::query_scalar("select to_regclass('order_status_totals')::text")
            .fetch_one(&mut c)
            .await?;
    if counted.is_some() {
        sqlx::query(
            "insert into order_status_totals (status, shard, orders) values ('completed', 99, $1)",
        )
        .bind(n)
        .execute(&mut c)
        .await?;
    }
    sqlx::query("vacuum analyze orders").execute(&mut c).await?;
    c.close().await?;
    Ok(())
}

/// `n` `accepted` orders of the bench caller, written directly. The status
/// triggers are off for the load (`session_replication_role = replica`);
/// the timeline row their insert would write (`- -> accepted`, by
/// `system`) is added in the same transaction, and `order_status_totals`
/// counts only completed, failed and canceled orders, so it has nothing to
/// add.
async fn store_accepted_orders(o: &Opts, db: &str, n: i64) -> Result<()> {
    let mut c = PgConnection::connect(&o.db_url(db)).await?;
    let mut tx = c.begin().await?;
    sqlx::query("set local session_replication_role = replica")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "insert into orders (order_id, caller_id, idempotency_key, request_fingerprint,
           po_number, status, product_id, denomination, quantity)
         select gen_random_uuid(), (select caller_id from callers limit 1),
                'backlog-' || i, '\\x00'::bytea, 'BACKLOG' || i, 'accepted', 1001, 50, 1
           from generate_series(1, $1) i",
    )
    .bind(n)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "insert into order_timeline (order_id, from_status, to_status, actor)
         select order_id, null, 'accepted', 'system' from orders where status = 'accepted'",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("vacuum analyze orders, order_timeline")
        .execute(&mut c)
        .await?;
    c.close().await?;
    Ok(())
}

/// `n` placeOrder slots taken now: the budget of the window spent.
async fn spend_place_budget(o: &Opts, db: &str, n: i64) -> Result<()> {
    let mut c = PgConnection::connect(&o.db_url(db)).await?;
    sqlx::query(
        "insert into upstream_call_slots (operation, taken_at, slots, upto)
         select 'place_order', clock_timestamp(), $1, coalesce(max(upto), 0) + $1
           from upstream_call_slots where operation = 'place_order'",
    )
    .bind(n)
    .execute(&mut c)
    .await?;
    c.close().await?;
    Ok(())
}

/// The emulator's placeOrder calls per poNumber (its ledger).
async fn emulator_place_calls(emu: &Emulator) -> Result<serde_json::Map<String, Value>> {
    let r = reqwest::get(format!("http://{}/_emulator/ledger", emu.addr)).await?;
    if !r.status().is_success() {
        bail!("emulator ledger: {}", r.status());
    }
    let mut body: Value = r.json().await?;
    match body["placeCalls"].take() {
        Value::Object(m) => Ok(m),
        other => bail!("emulator ledger: placeCalls is {other}"),
    }
}

async fn scrape_metrics(url: &str) -> Result<f64> {
    let client = reqwest::Client::new();
    let mut ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = client.get(format!("{url}/metrics")).send().await?;
        if !r.status().is_success() {
            bail!("/metrics: {}", r.status());
        }
        r.bytes().await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[ms.len() / 2])
}

// ---- pgbench ----------------------------------------------------------------

async fn prepare_pgbench(o: &Opts, db: &str) -> Result<()> {
    let mut c = PgConnection::connect(&o.db_url(db)).await?;
    sqlx::query(
        "create table bench_orders (
           order_id uuid primary key,
           caller_id uuid not null,
           idempotency_key text not null,
           po_number text not null unique,
           status text not null default 'accepted',
           denomination numeric not null,
           created_at timestamptz not null default now(),
           unique (caller_id, idempotency_key))",
    )
    .execute(&mut c)
    .await?;
    c.close().await?;
    Ok(())
}

/// The baseline of a phase: the mean of pgbench run `before` it and again
/// after it (once its counters are read), so a machine that grew busier
/// or quieter during the phase weighs on both sides of the ratio.
fn bracket(o: &Opts, db: &str, before: f64) -> Result<f64> {
    let after = pgbench(o, db, o.seconds / 2)?;
    eprintln!(
        "pgbench: {after:.0} inserts/s after; baseline {:.0}",
        (before + after) / 2.0
    );
    Ok((before + after) / 2.0)
}

/// Inserts per second over `secs`, `concurrency` clients, one insert per
/// transaction.
fn pgbench(o: &Opts, db: &str, secs: u64) -> Result<f64> {
    let script = std::env::temp_dir().join(format!("ogw-bench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "insert into bench_orders (order_id, caller_id, idempotency_key, po_number, denomination)\n\
         values (gen_random_uuid(), '00000000-0000-0000-0000-000000000001',\n\
                 md5(random()::text || clock_timestamp()::text),\n\
                 md5(random()::text || clock_timestamp()::text), 50);\n",
    )?;
    let out = Command::new(&o.pgbench)
        .args(["-n", "-M", "prepared", "-j", "2", "-c"])
        .arg(o.concurrency.to_string())
        .arg("-T")
        .arg(secs.max(1).to_string())
        .arg("-f")
        .arg(&script)
        .arg(o.db_url(db))
        .output()
        .with_context(|| format!("running {}", o.pgbench))?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("pgbench: {}{}", text, String::from_utf8_lossy(&out.stderr));
    }
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .with_context(|| format!("no tps in pgbench output: {text}"))
}

// ---- processes ----------------------------------------------------------------

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn log_file(name: &str) -> Result<(std::fs::File, PathBuf)> {
    let path = std::env::temp_dir().join(format!("ogw-bench-{}-{name}.log", std::process::id()));
    Ok((std::fs::File::create(&path)?, path))
}

struct Emulator {
    child: Child,
    addr: String,
}

impl Emulator {
    fn start() -> Result<Self> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let (log, _) = log_file("emulator")?;
        let mut cmd = Command::new(BIN);
        cmd.arg("emulator")
            .env("EMULATOR_ADDR", &addr)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        // The gateway's budgets are what the bench measures; the
        // emulator's own limits must not answer first.
        for var in [
            "EMULATOR_RATE_PLACE_ORDER",
            "EMULATOR_RATE_ORDER_DETAILS",
            "EMULATOR_RATE_VOUCHERS",
            "EMULATOR_RATE_BALANCE",
            "EMULATOR_RATE_ORDER_HISTORY",
        ] {
            cmd.env(var, "1000000");
        }
        // Nor its wallet (100,000 by default: 2,000 orders of 50).
        cmd.env("EMULATOR_BALANCE", "1000000000");
        let child = cmd.spawn()?;
        wait_for_port(&addr)?;
        Ok(Self { child, addr })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Gateway {
    pid: u32,
    child: Option<Child>,
    url: String,
    log: PathBuf,
}

impl Gateway {
    fn start(o: &Opts, db: &str, emu: &Emulator, extra: &[(&str, &str)]) -> Result<Self> {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        // One log per gateway: the drain runs three at once.
        let (log_out, log) = log_file(&format!("gateway-{port}"))?;
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .env("DATABASE_URL", o.db_url(db))
            .env("DATABASE_MAX_CONNECTIONS", o.concurrency.to_string())
            .env("LISTEN_ADDR", &addr)
            .env("XOXODAY_BASE_URL", format!("http://{}/chef", emu.addr))
            .env("XOXODAY_CLIENT_ID", "emulator-client")
            .env("XOXODAY_CLIENT_SECRET", "emulator-secret")
            .env("XOXODAY_ACCESS_TOKEN", "emulator-access-token")
            .env("XOXODAY_REFRESH_TOKEN", "emulator-refresh-token")
            .env(
                "ENCRYPTION_KEY",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            )
            .env("WEBHOOK_API_KEY", "bench-webhook-key")
            .env("RUST_LOG", "warn")
            .stdout(log_out.try_clone()?)
            .stderr(log_out);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        let gw = Self {
            pid: child.id(),
            child: Some(child),
            url: format!("http://{addr}"),
            log,
        };
        let ready = Instant::now();
        loop {
            let up = std::process::Command::new("curl")
                .args(["-fsS", "-o", "/dev/null"])
                .stderr(Stdio::null())
                .arg(format!("{}/readyz", gw.url))
                .status()
                .is_ok_and(|s| s.success());
            if up {
                break;
            }
            if ready.elapsed() > Duration::from_secs(30) {
                bail!("gateway not ready; log: {}", gw.log.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(gw)
    }

    /// Stops the gateway (SIGTERM, graceful) and returns its peak RSS in kB.
    fn stop(mut self) -> Result<u64> {
        let mut child = self.child.take().context("gateway already stopped")?;
        let hwm = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0);
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("gateway did not stop; log: {}", self.log.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(hwm)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// CPU seconds used so far by the gateway, the emulator, this process and
/// the whole machine (`/proc`): where a phase's CPU went. Postgres and
/// anything else is the machine's total minus the three.
#[derive(Clone, Copy, Default)]
struct Cpu {
    gateway: f64,
    emulator: f64,
    bench: f64,
    machine: f64,
}

impl Cpu {
    fn read(gateway: u32, emulator: u32) -> Self {
        // utime + stime, fields 14 and 15, in clock ticks (100 a second).
        let proc_secs = |pid: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let after = s.rsplit_once(')')?.1;
                    let f: Vec<&str> = after.split_whitespace().collect();
                    Some(
                        (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0,
                    )
                })
                .unwrap_or(0.0)
        };
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let f: Vec<f64> = s
                    .lines()
                    .next()?
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                // user nice system (idle iowait excluded) irq softirq steal
                Some(
                    (f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?)
                        / 100.0,
                )
            })
            .unwrap_or(0.0);
        Self {
            gateway: proc_secs(&gateway.to_string()),
            emulator: proc_secs(&emulator.to_string()),
            bench: proc_secs("self"),
            machine,
        }
    }

    /// CPU milliseconds per order since `before`, by process.
    fn per_order(&self, before: &Self, orders: u64) -> String {
        let n = orders.max(1) as f64 / 1000.0;
        let gw = (self.gateway - before.gateway) / n;
        let emu = (self.emulator - before.emulator) / n;
        let bench = (self.bench - before.bench) / n;
        let rest = (self.machine - before.machine) / n - gw - emu - bench;
        format!(
            "CPU ms per order: gateway {gw:.3}, emulator {emu:.3}, load generator {bench:.3}, \
             Postgres and the rest {rest:.3}"
        )
    }
}

fn wait_for_port(addr: &str) -> Result<()> {
    let t = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            bail!("nothing listens on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

// ---- the load generator ---------------------------------------------------------

#[derive(Clone, Copy)]
enum Mode {
    /// `n` workers, each sending its next request when the last answered.
    Closed(usize),
    /// Requests started at a fixed rate, latency counted from the planned
    /// start (no coordinated omission).
    Rate(f64),
}

#[derive(Clone, Copy)]
enum Req {
    /// New key, `Prefer: wait=0`; the tag keeps keys unique across runs.
    New(u8),
    /// New key, `Prefer: wait=60`: the answer must be a settled order.
    Wait,
    /// The same key and body every time (key `replay-1`).
    Replay,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    unsettled: u64,
    elapsed: f64,
    latencies_us: Vec<u64>,
    errors_seen: Vec<String>,
}

impl Tally {
    fn p(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 * q).ceil() as usize).saturating_sub(1);
        self.latencies_us[i.min(self.latencies_us.len() - 1)] as f64 / 1000.0
    }

    fn summary(&self) -> String {
        format!(
            "{} ok, {} errors, {} unsettled in {:.1} s ({:.0}/s); p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.ok,
            self.errors,
            self.unsettled,
            self.elapsed,
            self.ok as f64 / self.elapsed,
            self.p(0.5),
            self.p(0.99),
            self.p(1.0)
        )
    }

    fn first_error(&self) -> String {
        self.errors_seen.first().cloned().unwrap_or_default()
    }
}

struct Shared {
    poster: Poster,
    url: hyper::Uri,
    req: Req,
    next: AtomicU64,
}

/// Drives `secs` seconds of load.
async fn load(url: &str, key: &str, mode: Mode, secs: u64, req: Req) -> Tally {
    let shared = Arc::new(Shared {
        poster: Poster::new(key),
        url: orders_uri(url),
        req,
        next: AtomicU64::new(0),
    });
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tally = Tally::default();
    match mode {
        Mode::Closed(n) => {
            let workers: Vec<_> = (0..n)
                .map(|_| {
                    let s = shared.clone();
                    tokio::spawn(async move {
                        let mut t = Tally::default();
                        while Instant::now() < end {
                            let t0 = Instant::now();
                            let r = one(&s).await;
                            record(&mut t, r, t0.elapsed());
                        }
                        t
                    })
                })
                .collect();
            for w in workers {
                merge(&mut tally, w.await.expect("load worker"));
            }
        }
        Mode::Rate(per_s) => {
            let gap = Duration::from_secs_f64(1.0 / per_s);
            let mut tasks = Vec::new();
            let mut planned = start;
            while planned < end {
                tokio::time::sleep_until(planned.into()).await;
                let s = shared.clone();
                let at = planned;
                tasks.push(tokio::spawn(async move {
                    let r = one(&s).await;
                    (r, at.elapsed())
                }));
                planned += gap;
            }
            for task in tasks {
                let (r, took) = task.await.expect("load task");
                record(&mut tally, r, took);
            }
        }
    }
    tally.elapsed = start.elapsed().as_secs_f64();
    tally.latencies_us.sort_unstable();
    tally
}

/// What the gateway's Postgres backends are doing during a phase: every
/// 20 ms, each non-idle client backend of its database, by wait event (or
/// `running`) and statement. Printed, not a figure: where the time goes.
struct Waits {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Result<(u64, std::collections::HashMap<String, u64>)>>,
}

impl Waits {
    fn sample(url: String, db: String) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut c = PgConnection::connect(&url).await?;
            let (mut samples, mut seen) = (0u64, std::collections::HashMap::new());
            while !flag.load(Ordering::Relaxed) {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "select coalesce(wait_event_type || ':' || wait_event, 'running') || '  '
                            || regexp_replace(left(query, 70), '\\s+', ' ', 'g')
                       from pg_stat_activity
                      where datname = $1 and pid <> pg_backend_pid()
                        and backend_type = 'client backend' and state <> 'idle'",
                )
                .bind(&db)
                .fetch_all(&mut c)
                .await?;
                samples += 1;
                for (k,) in rows {
                    *seen.entry(k).or_insert(0) += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok((samples, seen))
        });
        Self { stop, task }
    }

    async fn report(self, phase: &str) {
        self.stop.store(true, Ordering::Relaxed);
        let Ok(Ok((samples, seen))) = self.task.await else {
            eprintln!("{phase}: backend sampling failed");
            return;
        };
        let mut top: Vec<_> = seen.into_iter().collect();
        top.sort_by_key(|e| std::cmp::Reverse(e.1));
        eprintln!("{phase}: busy backends per sample ({samples} samples), by wait and statement:");
        for (k, n) in top.into_iter().take(10) {
            eprintln!("  {:6.2}  {k}", n as f64 / samples.max(1) as f64);
        }
    }
}

/// `total` new orders (`Prefer: wait=0`, keys `drain-<n>`) from `workers`
/// closed-loop workers, request `n` to replica `n` modulo their number.
async fn burst(urls: &[String], key: &str, total: u64, workers: usize) -> Tally {
    let poster = Poster::new(key);
    let urls: Arc<Vec<hyper::Uri>> = Arc::new(urls.iter().map(|u| orders_uri(u)).collect());
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (poster, urls, next) = (poster.clone(), urls.clone(), next.clone());
            tokio::spawn(async move {
                let mut t = Tally::default();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break t;
                    }
                    let url = &urls[n as usize % urls.len()];
                    let t0 = Instant::now();
                    let r = poster.post_order(url, format!("drain-{n}"), 0).await;
                    record(&mut t, r, t0.elapsed());
                }
            })
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        merge(&mut tally, task.await.expect("burst worker"));
    }
    tally.elapsed = start.elapsed().as_secs_f64();
    tally.latencies_us.sort_unstable();
    tally
}

/// `Ok(true)`: a settled order where one was asked for.
async fn one(s: &Shared) -> Result<bool, String> {
    let n = s.next.fetch_add(1, Ordering::Relaxed);
    let (key, wait) = match s.req {
        Req::New(tag) => (format!("new-{tag}-{n}"), 0),
        Req::Wait => (format!("e2e-{n}"), 60),
        Req::Replay => (format!("replay-{}", n % REPLAY_KEYS), 60),
    };
    s.poster.post_order(&s.url, key, wait).await
}

/// `{base}/v1/orders`, parsed once.
fn orders_uri(base: &str) -> hyper::Uri {
    format!("{base}/v1/orders")
        .parse()
        .expect("the gateway's URL")
}

/// The load's HTTP client: hyper's pooled HTTP/1.1 client, with only the
/// answer's `status` decoded. reqwest (a URL parsed per request) and a
/// full JSON tree per answer cost the generator about as much CPU per
/// replay as Postgres spends, on the same two cores.
#[derive(Clone)]
struct Poster {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    auth: hyper::header::HeaderValue,
}

impl Poster {
    fn new(key: &str) -> Self {
        // As reqwest does: a request is written in one go, never held back.
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .pool_max_idle_per_host(1024)
            .build(connector),
            auth: format!("Bearer {key}").parse().expect("an API key"),
        }
    }

    /// One createOrder with `Prefer: wait=<wait>`; `Ok(true)` when the
    /// answer is settled (or not asked for, `wait` 0).
    async fn post_order(&self, uri: &hyper::Uri, key: String, wait: u32) -> Result<bool, String> {
        use http_body_util::BodyExt as _;

        let req = hyper::Request::post(uri.clone())
            .header(hyper::header::AUTHORIZATION, self.auth.clone())
            .header("idempotency-key", key)
            .header("prefer", format!("wait={wait}"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                BODY.as_bytes(),
            )))
            .map_err(|e| e.to_string())?;
        let r = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let body = r
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !(200..300).contains(&status) {
            return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
        }
        if wait == 0 {
            return Ok(true);
        }
        #[derive(serde::Deserialize)]
        struct Answer<'a> {
            #[serde(borrow)]
            status: Option<std::borrow::Cow<'a, str>>,
        }
        let a: Answer<'_> = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(!matches!(a.status.as_deref(), Some("accepted" | "placing")))
    }
}

fn record(t: &mut Tally, r: Result<bool, String>, took: Duration) {
    match r {
        Ok(settled) => {
            t.ok += 1;
            if !settled {
                t.unsettled += 1;
            }
            t.latencies_us.push(took.as_micros() as u64);
        }
        Err(e) => {
            t.errors += 1;
            if t.errors_seen.len() < 3 {
                t.errors_seen.push(e);
            }
        }
    }
}

fn merge(into: &mut Tally, from: Tally) {
    into.ok += from.ok;
    into.errors += from.errors;
    into.unsettled += from.unsettled;
    into.latencies_us.extend(from.latencies_us);
    into.errors_seen.extend(from.errors_seen);
}
