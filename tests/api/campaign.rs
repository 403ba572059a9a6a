//! The seeded fault campaign of issue 9: hundreds of orders over two real
//! `serve` replicas on one database, every upstream fault kind mixed at
//! random, client retries of the same key on both replicas, one `kill -9` of
//! a replica, a database outage (every backend of the test database
//! terminated) and a spell of refused tokens (even freshly refreshed ones). At the end: one upstream order per poNumber, every order
//! settled or in `needs_review` with a reason, and every request answered
//! 2xx is an order in the database.
//!
//! The seed is printed first; `CAMPAIGN_SEED=<n>` replays the same plan (the
//! faults, their order, the products, the retries and the moments of the
//! kill and the outage; thread scheduling still varies).
//! `CAMPAIGN_ORDERS=<n>` changes the size; the `--ignored` variant runs 3,000.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use base64::Engine as _;
use order_gateway::emulator::{
    AfterWebhook, EmulatorConfig, EmulatorHandle, Fault, FaultOp, HostileText, LateAnswer,
};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng, seq::SliceRandom as _};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::process::{Child, Command};

use crate::{
    child::free_addr,
    helpers::create_key,
    ledger::{assert_ledger, lift_pauses_and_make_due},
    test_db::TestDb,
};

const WEBHOOK_KEY: &str = "campaign-webhook-key-0123456789";

#[tokio::test]
async fn seeded_fault_campaign_keeps_exactly_once() {
    run_campaign(orders_from_env(300)).await;
}

#[tokio::test]
#[ignore = "long variant: 3,000 orders (a few minutes more)"]
async fn seeded_fault_campaign_long() {
    run_campaign(orders_from_env(3000)).await;
}

fn orders_from_env(default: usize) -> usize {
    std::env::var("CAMPAIGN_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed_from_env() -> u64 {
    std::env::var("CAMPAIGN_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random)
}

/// One fault the plan can draw for a placeOrder call.
fn draw_fault(rng: &mut StdRng) -> Option<Fault> {
    let kinds = [
        Fault::ErrorBeforeCreate { status: 503 },
        Fault::ErrorAfterCreate { status: 502 },
        Fault::SleepAfterCreate(Duration::from_secs(3)),
        Fault::DropAfterCreate,
        Fault::Slow(Duration::from_millis(600)),
        Fault::HiddenFromDetails(Duration::from_secs(2)),
        Fault::RateLimited { penalty_seconds: 1 },
        Fault::InvalidToken,
        // Created only after the call ended, within the settle window
        // (3 s from the end of the attempt): a lookup before then says
        // "not found", and a re-placement then would be a second order.
        Fault::LateCreate {
            after: Duration::from_millis(1500),
            answer: LateAnswer::Error { status: 502 },
        },
        Fault::LateCreate {
            after: Duration::from_secs(2),
            answer: LateAnswer::Drop,
        },
        Fault::LateCreate {
            after: Duration::from_secs(2),
            answer: LateAnswer::Hang(Duration::from_secs(5)),
        },
        Fault::WebhookFirst {
            then: AfterWebhook::Answer,
        },
        Fault::WebhookFirst {
            then: AfterWebhook::Error { status: 502 },
        },
        Fault::WebhookFirst {
            then: AfterWebhook::Drop,
        },
        Fault::Hostile(HostileText::All),
    ];
    rng.gen_bool(0.5)
        .then(|| kinds.choose(rng).cloned())
        .flatten()
}

/// A lookup fault: getOrderDetails misbehaves too.
fn draw_lookup_fault(rng: &mut StdRng) -> Option<Fault> {
    let kinds = [
        Fault::ErrorBeforeCreate { status: 502 },
        Fault::Slow(Duration::from_millis(300)),
        Fault::RateLimited { penalty_seconds: 1 },
        Fault::InvalidToken,
    ];
    rng.gen_bool(0.15)
        .then(|| kinds.choose(rng).cloned())
        .flatten()
}

/// A request body: realtime, open value, delayed delivered, delayed
/// canceled, or one Xoxoday refuses (quantity over the product's limit).
fn draw_body(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..10) {
        0..=3 => json!({"productId": 1001, "denomination": 50, "email": "a@example.com"}),
        4 | 5 => json!({"productId": 1002, "denomination": "37.25", "quantity": 2}),
        6 | 7 => json!({"productId": 1003, "denomination": 50}),
        8 => json!({"productId": 1004, "denomination": 10}),
        _ => json!({"productId": 1006, "denomination": 10, "quantity": 7}),
    }
}

/// One planned request.
struct Planned {
    key: String,
    body: Value,
    replica: usize,
    retry_elsewhere: bool,
}

/// What the whole run will do, drawn from the seed before anything starts.
struct Plan {
    requests: Vec<Planned>,
    place_faults: Vec<Fault>,
    lookup_faults: Vec<Fault>,
    kill_at: usize,
    sticky_tokens_at: usize,
    outage_at: usize,
    restart_at: usize,
}

impl Plan {
    fn draw(seed: u64, n: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let requests = (0..n)
            .map(|i| Planned {
                key: format!("campaign-{seed}-{i}"),
                body: draw_body(&mut rng),
                replica: rng.gen_range(0..2),
                retry_elsewhere: rng.gen_bool(0.25),
            })
            .collect();
        let place_faults = (0..n).filter_map(|_| draw_fault(&mut rng)).collect();
        let lookup_faults = (0..n).filter_map(|_| draw_lookup_fault(&mut rng)).collect();
        Self {
            requests,
            place_faults,
            lookup_faults,
            kill_at: n / 4 + rng.gen_range(0..n / 8 + 1),
            sticky_tokens_at: n / 8 + rng.gen_range(0..n / 8 + 1),
            outage_at: n / 2 + rng.gen_range(0..n / 8 + 1),
            restart_at: n * 5 / 8 + rng.gen_range(0..n / 8 + 1),
        }
    }
}

/// A replica: the real binary as a child process.
struct Replica {
    base: String,
    vars: Vec<(String, String)>,
    child: Option<Child>,
}

impl Replica {
    fn new(shared: &[(String, String)]) -> Self {
        let addr = free_addr();
        let mut vars = shared.to_vec();
        vars.push(("LISTEN_ADDR".into(), addr.to_string()));
        Self {
            base: format!("http://{addr}"),
            vars,
            child: None,
        }
    }

    fn start(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_order-gateway"));
        cmd.arg("serve")
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("TEST_DATABASE_URL")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        self.child = Some(cmd.spawn().expect("start order-gateway serve"));
    }

    /// `kill -9`: no drain, no goodbye.
    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.expect("kill -9 the replica");
        }
    }
}

fn shared_vars(db_url: &str, emulator: &EmulatorHandle) -> Vec<(String, String)> {
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    [
        ("DATABASE_URL", db_url.to_owned()),
        ("XOXODAY_BASE_URL", emulator.base_url()),
        ("XOXODAY_CLIENT_ID", "emulator-client".into()),
        ("XOXODAY_CLIENT_SECRET", "emulator-secret".into()),
        ("XOXODAY_ACCESS_TOKEN", "emulator-access-token".into()),
        ("XOXODAY_REFRESH_TOKEN", "emulator-refresh-token".into()),
        ("XOXODAY_PLACE_ORDER_TIMEOUT", "2s".into()),
        ("XOXODAY_SETTLE_WINDOW", "3s".into()),
        ("XOXODAY_PLACE_ORDER_RATE", "100000".into()),
        ("XOXODAY_ORDER_DETAILS_RATE", "100000".into()),
        ("ORDER_LEASE", "2s".into()),
        ("RECONCILE_RETRY_BASE", "200ms".into()),
        ("RECONCILE_RETRY_MAX", "1s".into()),
        ("RECONCILE_RETRY_FLOOR", "1s".into()),
        ("RECONCILE_POLL_INTERVAL", "100ms".into()),
        ("RECONCILE_MAX_ATTEMPTS", "20".into()),
        ("SYSTEMIC_PAUSE", "2s".into()),
        ("XOXODAY_PROBE_INTERVAL", "1s".into()),
        ("PENDING_POLL_INTERVAL", "2s".into()),
        ("WEBHOOK_API_KEY", WEBHOOK_KEY.into()),
        ("DATABASE_MAX_CONNECTIONS", "12".into()),
        ("ENCRYPTION_KEY", key),
        ("RUST_LOG", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{base} never came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts once; the order id when answered 2xx.
async fn post(
    http: &reqwest::Client,
    base: &str,
    api_key: &str,
    p: &Planned,
) -> Option<(u16, String)> {
    let resp = http
        .post(format!("{base}/v1/orders"))
        .bearer_auth(api_key)
        .header("Idempotency-Key", &p.key)
        .header("Prefer", "wait=0")
        .json(&p.body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        assert!(
            status == 503,
            "{}: answered {status}: {}",
            p.key,
            resp.text().await.unwrap_or_default()
        );
        return None;
    }
    let order: Value = resp.json().await.ok()?;
    Some((status, order["id"].as_str()?.to_owned()))
}

/// Terminates every backend of the test database: an outage as the
/// gateways see it, without touching the other tests' databases.
async fn database_outage(server: &PgPool, name: &str) {
    let killed: i64 = sqlx::query_scalar(
        "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity
           where datname = $1 and pid <> pg_backend_pid()) t",
    )
    .bind(name)
    .fetch_one(server)
    .await
    .expect("terminate backends");
    eprintln!("campaign: database outage, {killed} backends terminated");
}

async fn run_campaign(n: usize) {
    let seed = seed_from_env();
    println!("campaign: CAMPAIGN_SEED={seed} CAMPAIGN_ORDERS={n}");
    eprintln!("campaign: CAMPAIGN_SEED={seed} CAMPAIGN_ORDERS={n}");
    let plan = Plan::draw(seed, n);
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let server = sqlx::PgPool::connect(&db.server).await.unwrap();
    // A wallet deep enough for the long variant: running dry is its own
    // test (balance_pause.rs), not this one's.
    let emulator = order_gateway::emulator::spawn(EmulatorConfig {
        balance: rust_decimal::Decimal::from(1_000_000_000u64),
        ..EmulatorConfig::for_tests()
    })
    .await
    .unwrap();
    for f in &plan.place_faults {
        emulator.push_fault(FaultOp::PlaceOrder, f.clone());
    }
    for f in &plan.lookup_faults {
        emulator.push_fault(FaultOp::GetOrderDetails, f.clone());
    }
    let api_key = create_key(&pool, "caller-campaign").await;
    let shared = shared_vars(&db.url, &emulator);
    let mut replicas = [Replica::new(&shared), Replica::new(&shared)];
    // Webhooks go to the replica that is never killed.
    emulator.set_webhook(
        Some(format!("{}/v1/webhooks/xoxoday", replicas[1].base)),
        Some(WEBHOOK_KEY.to_owned()),
    );
    let http = reqwest::Client::new();
    for r in &mut replicas {
        r.start();
        wait_ready(&http, &r.base).await;
    }
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();

    let mut answered: HashMap<String, String> = HashMap::new();
    let mut unanswered: Vec<usize> = Vec::new();
    let chunk = 16;
    for (start, batch) in plan.requests.chunks(chunk).enumerate() {
        let first = start * chunk;
        let at = |i: usize| (first..first + batch.len()).contains(&i);
        if at(plan.kill_at) {
            eprintln!("campaign: kill -9 replica 0 before request {first}");
            replicas[0].kill().await;
        }
        if at(plan.sticky_tokens_at) {
            eprintln!("campaign: Xoxoday refuses every token for 3 s before request {first}");
            emulator.refuse_tokens(true);
            tokio::time::sleep(Duration::from_secs(3)).await;
            emulator.refuse_tokens(false);
        }
        if at(plan.outage_at) {
            database_outage(&server, &db.name).await;
        }
        if at(plan.restart_at) {
            eprintln!("campaign: restarting replica 0 before request {first}");
            replicas[0].start();
        }
        let sends = batch.iter().enumerate().flat_map(|(j, p)| {
            let twice = if p.retry_elsewhere { 2 } else { 1 };
            (0..twice).map(move |k| (first + j, p, (p.replica + k) % 2))
        });
        let results = futures::future::join_all(sends.map(|(i, p, r)| {
            let (http, base, api_key) = (&http, &bases[r], &api_key);
            async move { (i, post(http, base, api_key, p).await) }
        }))
        .await;
        record(&plan, results, &mut answered, &mut unanswered);
    }
    // Clients retry what got no 2xx, with the same key, until it does.
    wait_ready(&http, &bases[0]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !unanswered.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "seed {seed}: never answered: {unanswered:?}"
        );
        let retry: Vec<usize> = std::mem::take(&mut unanswered);
        for i in retry {
            let p = &plan.requests[i];
            match post(&http, &bases[i % 2], &api_key, p).await {
                Some((_, id)) => check_same(&mut answered, &p.key, id, seed),
                None => unanswered.push(i),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    settle_everything(&pool, &emulator, seed).await;
    assert_answers_stored(&pool, &answered, seed).await;
    let orders: i64 = sqlx::query_scalar("select count(*) from orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(orders as usize, n, "seed {seed}: one order per key");
    assert_ledger(&pool, &emulator).await;
    report(&pool, &emulator, seed).await;
    for r in &mut replicas {
        r.kill().await;
    }
    emulator.shutdown();
}

fn record(
    plan: &Plan,
    results: Vec<(usize, Option<(u16, String)>)>,
    answered: &mut HashMap<String, String>,
    unanswered: &mut Vec<usize>,
) {
    let mut missing: HashSet<usize> = HashSet::new();
    for (i, r) in results {
        let key = &plan.requests[i].key;
        match r {
            Some((_, id)) => check_same(answered, key, id, 0),
            None => {
                missing.insert(i);
            }
        }
    }
    unanswered.extend(
        missing
            .into_iter()
            .filter(|i| !answered.contains_key(&plan.requests[*i].key)),
    );
}

/// Every 2xx answer for one key names the same order.
fn check_same(answered: &mut HashMap<String, String>, key: &str, id: String, seed: u64) {
    let prev = answered.entry(key.to_owned()).or_insert_with(|| id.clone());
    assert_eq!(*prev, id, "seed {seed}: {key} answered with two orders");
}

/// Waits until nothing is in flight; pauses that only delay are lifted so
/// the test does not wait out penalties.
async fn settle_everything(pool: &PgPool, emulator: &EmulatorHandle, seed: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let open: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "select po_number, status, status_reason from orders
              where status in ('accepted', 'placing', 'reconciling', 'pending_delivery')",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        if open.is_empty() {
            return;
        }
        // Delayed products settle by webhook; ones still pending upstream
        // are pushed along so the run ends.
        for (po, status, _) in &open {
            if status == "pending_delivery" {
                emulator.settle_pending(po, true);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "seed {seed}: still unsettled: {:?}",
            &open[..open.len().min(20)]
        );
        lift_pauses_and_make_due(pool).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// No request answered 2xx is lost: each such order exists, under its key.
async fn assert_answers_stored(pool: &PgPool, answered: &HashMap<String, String>, seed: u64) {
    let rows: Vec<(String, uuid::Uuid)> =
        sqlx::query_as("select idempotency_key, order_id from orders")
            .fetch_all(pool)
            .await
            .unwrap();
    let stored: HashMap<String, String> = rows
        .into_iter()
        .map(|(k, id)| (k, id.to_string()))
        .collect();
    for (key, id) in answered {
        assert_eq!(
            stored.get(key),
            Some(id),
            "seed {seed}: {key} was answered 2xx as {id} but is not stored so"
        );
    }
}

async fn report(pool: &PgPool, emulator: &EmulatorHandle, seed: u64) {
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("select status, count(*) from orders group by status order by status")
            .fetch_all(pool)
            .await
            .unwrap();
    let attempts: i64 = sqlx::query_scalar(
        "select count(*) from upstream_exchanges where operation = 'place_order'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    eprintln!(
        "campaign: seed {seed}: {by_status:?}; {attempts} placeOrder calls; {} upstream orders",
        emulator.orders().len()
    );
    let reviews: Vec<(String, i64)> = sqlx::query_as(
        "select left(status_reason, 120), count(*) from orders where status = 'needs_review'
          group by 1 order by 2 desc",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (reason, n) in reviews {
        eprintln!("campaign: needs_review x{n}: {reason}");
    }
}
