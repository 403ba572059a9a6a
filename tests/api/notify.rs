//! Caller notifications (contract §9) through the real binary: `callers
//! webhook set|remove|replay`, and `serve` delivering to a receiver in the
//! test (axum on 127.0.0.1) that checks each signature with its own
//! HMAC-SHA256, as a caller would.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use order_gateway::emulator::{EmulatorConfig, EmulatorHandle};
use serde_json::Value;
use sha2::Sha256;
use sqlx::PgPool;

use crate::{
    child::{GatewayProcess, HANG_GUARD, free_addr},
    helpers::{Options, create_key, encryption_key, env_pairs, new_key, order_body},
    test_db::TestDb,
};

const OK: u8 = 0;
const HANG: u8 = 1;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    at: DateTime<Utc>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }
}

#[derive(Default)]
struct Inbox {
    /// Requests answered 2xx, in arrival order.
    delivered: Mutex<Vec<Got>>,
    /// Requests that were held and never answered.
    held: Mutex<Vec<Got>>,
    mode: AtomicU8,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// The caller's webhook receiver; answers with `connection: close`, so
/// stopping it really closes the port.
struct Receiver {
    addr: SocketAddr,
    inbox: Arc<Inbox>,
    task: Option<tokio::task::JoinHandle<()>>,
}

struct InFlight<'a>(&'a Inbox);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn receive(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, body: String) -> Response {
    let now = inbox.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    inbox.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlight(&inbox);
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let got = Got {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body,
        at: Utc::now(),
    };
    if inbox.mode.load(Ordering::SeqCst) == HANG {
        inbox.held.lock().unwrap().push(got.clone());
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    inbox.delivered.lock().unwrap().push(got);
    (StatusCode::NO_CONTENT, [("connection", "close")]).into_response()
}

impl Receiver {
    async fn start() -> Self {
        let mut r = Self {
            addr: free_addr(),
            inbox: Arc::default(),
            task: None,
        };
        r.up().await;
        r
    }

    /// A receiver whose port is closed until [`Receiver::up`].
    fn down_at_first() -> Self {
        Self {
            addr: free_addr(),
            inbox: Arc::default(),
            task: None,
        }
    }

    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind receiver");
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(self.inbox.clone());
        self.task = Some(tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        }));
    }

    fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn set_mode(&self, mode: u8) {
        self.inbox.mode.store(mode, Ordering::SeqCst);
    }

    fn delivered(&self) -> Vec<Got> {
        self.inbox.delivered.lock().unwrap().clone()
    }

    fn held(&self) -> Vec<Got> {
        self.inbox.held.lock().unwrap().clone()
    }

    /// Waits (hang guard only) until `done` holds for the delivered list.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let start = Instant::now();
        loop {
            let got = self.delivered();
            if done(&got) {
                return got;
            }
            assert!(
                start.elapsed() < HANG_GUARD,
                "never got {what}; got {} requests",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// What a caller does with the published algorithm: HMAC-SHA256 keyed with
/// the secret's decoded bytes over `{id}.{timestamp}.{body}`, base64, `v1,`.
fn verify(secret: &str, got: &Got) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let mut mac = <Hmac<Sha256>>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", got.id, got.timestamp, got.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    got.signature.split(' ').any(|s| s == expected)
}

/// A test database, the emulator, and gateways run as the real binary.
struct Stack {
    _db: TestDb,
    db_url: String,
    pool: PgPool,
    emulator: EmulatorHandle,
    http: reqwest::Client,
}

impl Stack {
    async fn new() -> Self {
        let db = TestDb::create().await;
        let pool = db.pool().await;
        let emulator = order_gateway::emulator::spawn(EmulatorConfig::for_tests())
            .await
            .expect("spawn emulator");
        Self {
            db_url: db.url.clone(),
            _db: db,
            pool,
            emulator,
            http: reqwest::Client::new(),
        }
    }

    /// `order-gateway serve` with a short retry schedule, ready.
    async fn gateway(&self, extra: &[(&str, &str)]) -> (GatewayProcess, SocketAddr) {
        let addr = free_addr();
        let mut pairs = env_pairs(&self.db_url, &self.emulator.base_url(), &Options::default());
        for (k, v) in [
            ("LISTEN_ADDR", addr.to_string().as_str()),
            ("RUST_LOG", "warn"),
            ("NOTIFY_POLL_INTERVAL", "200ms"),
            ("NOTIFY_RETRY_FIRST", "200ms"),
            ("NOTIFY_RETRY_MAX", "1s"),
            ("NOTIFY_LEASE", "10s"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        {
            pairs.insert(k.to_owned(), v.to_owned());
        }
        let env: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let gw = GatewayProcess::spawn(&["serve"], &env, &[]);
        let start = Instant::now();
        loop {
            let ready = self
                .http
                .get(format!("http://{addr}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return (gw, addr);
            }
            assert!(
                start.elapsed() < HANG_GUARD,
                "gateway not ready:\n{}",
                gw.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `order-gateway ARGS` with this database and key.
    async fn cli(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_order-gateway"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.db_url)
            .env("ENCRYPTION_KEY", encryption_key(&self.db_url))
            .output()
            .await
            .expect("run order-gateway")
    }

    /// `callers webhook set`; returns the secret (the last stdout line).
    async fn set_webhook(&self, caller: &str, url: &str) -> String {
        let out = self
            .cli(&[
                "callers", "webhook", "set", "--caller", caller, "--url", url,
            ])
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let secret = stdout.lines().last().unwrap().to_owned();
        assert!(
            secret.starts_with("whsec_") && !secret.contains(' '),
            "{stdout}"
        );
        let bytes = STANDARD.decode(&secret["whsec_".len()..]).unwrap();
        assert!(bytes.len() >= 24);
        secret
    }

    /// POSTs an order to `gw` and returns its id (answer 2xx).
    async fn order(&self, gw: SocketAddr, key: &str) -> String {
        let resp = self
            .http
            .post(format!("http://{gw}/v1/orders"))
            .bearer_auth(key)
            .header("Idempotency-Key", new_key())
            .header("Prefer", "wait=0")
            .json(&order_body())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        let order: Value = resp.json().await.unwrap();
        order["id"].as_str().unwrap().to_owned()
    }

    async fn set_status(&self, id: &str, status: &str) {
        sqlx::query("update orders set status = $2 where order_id = $1::uuid")
            .bind(id)
            .bind(status)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// The stored event ids of an order, in creation order.
    async fn event_ids(&self, id: &str) -> Vec<String> {
        sqlx::query_scalar(
            "select event_id from notify_events where order_id = $1::uuid order by seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}

/// Waits (hang guard only) until `sql` counts at least `n`.
async fn wait_count(pool: &PgPool, sql: &str, n: i64) {
    let start = Instant::now();
    loop {
        let got: i64 = sqlx::query_scalar(sql).fetch_one(pool).await.unwrap();
        if got >= n {
            return;
        }
        assert!(start.elapsed() < HANG_GUARD, "{sql}: {got} < {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn of_order<'a>(got: &'a [Got], id: &str) -> Vec<&'a Got> {
    got.iter()
        .filter(|g| g.json()["data"]["id"] == id)
        .collect()
}

#[tokio::test]
async fn every_event_type_arrives_signed_in_order_with_the_order_as_get_shows_it_and_replays() {
    let s = Stack::new().await;
    let key = create_key(&s.pool, "notify-types").await;
    let rx = Receiver::start().await;
    let (_gw, gw) = s.gateway(&[]).await;

    let before = s.order(gw, &key).await;
    wait_count(
        &s.pool,
        &format!(
            "select count(*) from orders where order_id = '{before}' and status = 'completed'"
        ),
        1,
    )
    .await;
    let secret = s.set_webhook("notify-types", &rx.url()).await;
    let id = s.order(gw, &key).await;
    rx.wait_for("order.completed", |g| of_order(g, &id).len() == 1)
        .await;
    for status in ["needs_review", "pending_delivery", "failed", "canceled"] {
        s.set_status(&id, status).await;
    }
    let got = rx
        .wait_for("five events", |g| of_order(g, &id).len() == 5)
        .await;
    let events = of_order(&got, &id);
    let types: Vec<String> = events
        .iter()
        .map(|g| g.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "order.completed",
            "order.needs_review",
            "order.pending_delivery",
            "order.failed",
            "order.canceled"
        ],
        "every type, in creation order"
    );
    let ids: Vec<String> = events.iter().map(|g| g.id.clone()).collect();
    assert_eq!(
        ids,
        s.event_ids(&id).await,
        "webhook-id is the stored event id"
    );
    for g in &events {
        assert!(verify(&secret, g), "signature verifies: {g:?}");
        assert!(g.id.starts_with("msg_"), "{}", g.id);
        g.timestamp.parse::<i64>().expect("unix seconds");
        let body = g.json();
        let ty = body["type"].as_str().unwrap();
        assert_eq!(
            format!("order.{}", body["data"]["status"].as_str().unwrap()),
            ty,
            "data is the order at the status change"
        );
        DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).expect("RFC 3339");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(body["data"].get("vouchers").is_none(), "no vouchers");
        assert_eq!(body.as_object().unwrap().len(), 3, "type, timestamp, data");
    }
    let resp = s
        .http
        .get(format!("http://{gw}/v1/orders/{id}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let mut shown: Value = resp.json().await.unwrap();
    shown.as_object_mut().unwrap().remove("vouchers");
    assert_eq!(
        events[4].json()["data"],
        shown,
        "data is the order as GET returns it, without vouchers"
    );
    assert!(
        s.event_ids(&before).await.is_empty(),
        "changes before `webhook set` produce no events"
    );
    assert!(of_order(&rx.delivered(), &before).is_empty());

    // replay: the same ids again, in the same order
    let out = s
        .cli(&[
            "callers",
            "webhook",
            "replay",
            "--caller",
            "notify-types",
            "--since",
            "1h",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = rx
        .wait_for("the replay", |g| of_order(g, &id).len() == 10)
        .await;
    let again: Vec<String> = of_order(&got, &id)[5..]
        .iter()
        .map(|g| g.id.clone())
        .collect();
    assert_eq!(again, ids, "replay re-sends the stored events in order");
    wait_count(
        &s.pool,
        &format!(
            "select count(*) from notify_events where order_id = '{id}' and state = 'delivered'"
        ),
        5,
    )
    .await;
    let attempts: Vec<i32> =
        sqlx::query_scalar("select attempts from notify_events where order_id = $1::uuid")
            .bind(&id)
            .fetch_all(&s.pool)
            .await
            .unwrap();
    assert_eq!(
        attempts, [1; 5],
        "a replay starts the retry schedule afresh"
    );
    assert!(of_order(&got, &id).iter().all(|g| verify(&secret, g)));

    let metrics = s
        .http
        .get(format!("http://{gw}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "order_gateway_notify_attempts_total{outcome=\"delivered\"}",
        "order_gateway_notify_events_pending ",
        "order_gateway_notify_oldest_pending_age_seconds ",
        "order_gateway_notify_events_failed ",
    ] {
        assert!(metrics.contains(name), "{name} in\n{metrics}");
    }

    // remove: no more events
    let out = s
        .cli(&["callers", "webhook", "remove", "--caller", "notify-types"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.set_status(&id, "completed").await;
    assert_eq!(s.event_ids(&id).await.len(), 5, "no event after remove");
    s.emulator.shutdown();
}

#[tokio::test]
async fn a_receiver_down_then_up_and_a_gateway_killed_mid_send_lose_no_event() {
    let s = Stack::new().await;
    let key = create_key(&s.pool, "notify-down").await;
    let mut rx = Receiver::down_at_first();
    let secret = s.set_webhook("notify-down", &rx.url()).await;
    let (mut gw1, gw) = s.gateway(&[]).await;

    // the receiver is down: every event is tried and retried, none delivered
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(s.order(gw, &key).await);
    }
    wait_count(
        &s.pool,
        "select count(*) from orders where status = 'completed'",
        8,
    )
    .await;
    for id in &ids[..4] {
        s.set_status(id, "canceled").await;
    }
    // every event that may go (the first of each order) is tried twice; every attempt is stored
    wait_count(
        &s.pool,
        "select count(*) from (select event_seq from notify_attempts
             where outcome = 'connect_error' group by event_seq having count(*) >= 2) x",
        8,
    )
    .await;
    let delivered: i64 =
        sqlx::query_scalar("select count(*) from notify_events where state <> 'pending'")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(delivered, 0, "nothing delivered while the receiver is down");

    // kill -9 while the receiver is down; an event is written while no gateway runs
    gw1.signal("KILL");
    gw1.wait();
    s.set_status(&ids[4], "canceled").await;
    rx.up().await;
    rx.set_mode(HANG);
    let (mut gw2, _) = s.gateway(&[]).await;
    // now the receiver takes requests and never answers; kill -9 mid-send
    let held = loop {
        let held = rx.held();
        if !held.is_empty() {
            break held;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    gw2.signal("KILL");
    gw2.wait();
    rx.set_mode(OK);
    let (_gw3, _) = s.gateway(&[]).await;

    let mut expected: Vec<String> = Vec::new();
    for id in &ids {
        expected.extend(s.event_ids(id).await);
    }
    assert_eq!(expected.len(), 13, "8 completed + 5 canceled");
    let want: HashSet<String> = expected.iter().cloned().collect();
    let got = rx
        .wait_for("every event", |g| {
            want.is_subset(&g.iter().map(|x| x.id.clone()).collect())
        })
        .await;
    for h in &held {
        assert!(
            got.iter().any(|g| g.id == h.id),
            "the event held when the gateway died arrives after restart with the same webhook-id"
        );
    }
    for g in &got {
        assert!(verify(&secret, g));
    }
    // order per order: the first arrival of each event follows creation order
    for id in &ids {
        let stored = s.event_ids(id).await;
        let mut first_seen: Vec<String> = Vec::new();
        for g in of_order(&got, id) {
            if !first_seen.contains(&g.id) {
                first_seen.push(g.id.clone());
            }
        }
        assert_eq!(
            first_seen, stored,
            "order {id}: events arrive in creation order"
        );
    }
    s.emulator.shutdown();
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_slow_another_caller() {
    let s = Stack::new().await;
    let (slow_key, fast_key) = (
        create_key(&s.pool, "notify-slow").await,
        create_key(&s.pool, "notify-fast").await,
    );
    let slow = Receiver::start().await;
    slow.set_mode(HANG);
    let fast = Receiver::start().await;
    s.set_webhook("notify-slow", &slow.url()).await;
    let secret = s.set_webhook("notify-fast", &fast.url()).await;
    let (_gw, gw) = s
        .gateway(&[
            ("NOTIFY_CONCURRENCY", "4"),
            ("NOTIFY_ENDPOINT_CONCURRENCY", "2"),
        ])
        .await;
    for _ in 0..8 {
        s.order(gw, &slow_key).await;
    }
    let start = Instant::now();
    while slow.inbox.in_flight.load(Ordering::SeqCst) < 2 {
        assert!(
            start.elapsed() < HANG_GUARD,
            "the slow receiver never got requests"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut fast_ids = Vec::new();
    for _ in 0..5 {
        fast_ids.push(s.order(gw, &fast_key).await);
    }
    let got = fast
        .wait_for("the fast caller's events", |g| {
            fast_ids.iter().all(|id| !of_order(g, id).is_empty())
        })
        .await;
    assert!(got.iter().all(|g| verify(&secret, g)));
    let slow_done: i64 = sqlx::query_scalar(
        "select count(*) from notify_attempts a join notify_events e on e.seq = a.event_seq
         join callers c on c.caller_id = e.caller_id where c.name = 'notify-slow'",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert!(
        slow_done < 8,
        "the fast caller did not wait for the slow caller's queue ({slow_done} attempts done)"
    );
    assert!(
        slow.inbox.max_in_flight.load(Ordering::SeqCst) <= 2,
        "the per-endpoint cap holds"
    );
    s.emulator.shutdown();
}

#[tokio::test]
async fn three_replicas_deliver_each_event_at_least_once_and_at_most_a_few_times() {
    let s = Stack::new().await;
    let key = create_key(&s.pool, "notify-replicas").await;
    let rx = Receiver::start().await;
    let secret = s.set_webhook("notify-replicas", &rx.url()).await;
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(s.gateway(&[]).await);
    }
    const N: usize = 40;
    let posts = (0..N).map(|i| {
        let (s, key, gw) = (&s, &key, gws[i % 3].1);
        async move { s.order(gw, key).await }
    });
    let ids = futures::future::join_all(posts).await;
    let got = rx
        .wait_for("every event", |g| {
            ids.iter().all(|id| !of_order(g, id).is_empty())
        })
        .await;
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for g in &got {
        assert!(verify(&secret, g));
        *per_id.entry(g.id.as_str()).or_default() += 1;
    }
    assert_eq!(per_id.len(), N, "one event per order");
    let most = per_id.values().copied().max().unwrap();
    assert!(
        most <= 3,
        "at most a handful of deliveries per event: {most}"
    );

    // figures: delay from the status change (the order's updatedAt) to receipt
    let mut delays: Vec<f64> = got
        .iter()
        .map(|g| {
            let changed =
                DateTime::parse_from_rfc3339(g.json()["data"]["updatedAt"].as_str().unwrap())
                    .unwrap()
                    .with_timezone(&Utc);
            (g.at - changed).num_microseconds().unwrap() as f64 / 1000.0
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    let pct = |p: f64| delays[((delays.len() - 1) as f64 * p).round() as usize];
    let first: DateTime<Utc> = sqlx::query_scalar("select min(created_at) from notify_events")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    let last = got.iter().map(|g| g.at).max().unwrap();
    let span = (last - first).num_milliseconds().max(1) as f64 / 1000.0;
    // where the time goes: status change → first attempt starts, and the attempts
    let (claim_p50, send_p50): (f64, f64) = sqlx::query_as(
        "select percentile_cont(0.5) within group (order by extract(epoch from a.started_at - e.created_at) * 1000),
                percentile_cont(0.5) within group (order by a.duration_ms::float8)
         from notify_attempts a join notify_events e on e.seq = a.event_seq",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    eprintln!(
        "notify figures: {} deliveries of {N} events by 3 replicas, {span:.2}s from the first \
         status change to the last receipt ({:.1} events/s); status change to receipt p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms; change to attempt start p50 {claim_p50:.1} ms, attempt p50 {send_p50:.1} ms",
        got.len(),
        N as f64 / span,
        pct(0.5),
        pct(0.99),
        delays.last().unwrap()
    );

    // one order at a time: the delay without a burst
    let mut single = Vec::new();
    for i in 0..10 {
        let id = s.order(gws[i % 3].1, &key).await;
        let got = rx
            .wait_for("the event", |g| !of_order(g, &id).is_empty())
            .await;
        let g = of_order(&got, &id)[0].clone();
        let changed = DateTime::parse_from_rfc3339(g.json()["data"]["updatedAt"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc);
        single.push((g.at - changed).num_microseconds().unwrap() as f64 / 1000.0);
    }
    single.sort_by(f64::total_cmp);
    eprintln!(
        "notify figures, one order at a time: status change to receipt p50 {:.1} ms, max {:.1} ms",
        single[single.len() / 2],
        single[single.len() - 1]
    );

    // a backlog: 4 status changes of each of the 50 orders at once (200 events,
    // each order's in sequence), drained by the 3 replicas
    let before = rx.delivered().len();
    let start = Instant::now();
    for status in ["needs_review", "pending_delivery", "failed", "canceled"] {
        sqlx::query("update orders set status = $1")
            .bind(status)
            .execute(&s.pool)
            .await
            .unwrap();
    }
    let expected: i64 = sqlx::query_scalar("select count(*) from notify_events")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    let want: HashSet<String> =
        sqlx::query_scalar::<_, String>("select event_id from notify_events")
            .fetch_all(&s.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let got = rx
        .wait_for("the backlog", |g| {
            want.is_subset(&g.iter().map(|x| x.id.clone()).collect())
        })
        .await;
    let drained = start.elapsed().as_secs_f64();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for g in &got {
        *per_id.entry(g.id.as_str()).or_default() += 1;
    }
    assert!(
        per_id.values().all(|n| *n <= 3),
        "a handful at most, backlog included"
    );
    let new_events = expected - 50;
    eprintln!(
        "notify figures, backlog: {new_events} events ({} deliveries) in {drained:.2}s, {:.1} events/s",
        got.len() - before,
        new_events as f64 / drained
    );
    s.emulator.shutdown();
}

#[tokio::test]
async fn webhook_set_refuses_bad_urls_and_unknown_callers_in_one_line() {
    let s = Stack::new().await;
    create_key(&s.pool, "notify-cli").await;
    for (caller, url, says) in [
        ("notify-cli", "http://hooks.example.com/x", "https://"),
        ("notify-cli", "ftp://hooks.example.com/x", "https://"),
        ("notify-cli", "https://169.254.169.254/latest", "link-local"),
        ("notify-cli", "https://[fd00:ec2::254]/", "metadata"),
        ("notify-cli", "not a url", "not a URL"),
        ("nobody", "https://hooks.example.com/x", "no caller"),
    ] {
        let out = s
            .cli(&[
                "callers", "webhook", "set", "--caller", caller, "--url", url,
            ])
            .await;
        assert!(!out.status.success(), "{url} refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(out.stdout.is_empty(), "no secret printed");
    }
    let count: i64 = sqlx::query_scalar("select count(*) from notify_endpoints")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
    let secret = s
        .set_webhook("notify-cli", "https://hooks.example.com/x")
        .await;
    let stored: Vec<u8> = sqlx::query_scalar("select secret_encrypted from notify_endpoints")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&stored).contains(&secret["whsec_".len()..]),
        "the secret is stored encrypted"
    );
    let out = s
        .cli(&["callers", "webhook", "remove", "--caller", "notify-cli"])
        .await;
    assert!(out.status.success());
    let out = s
        .cli(&["callers", "webhook", "remove", "--caller", "notify-cli"])
        .await;
    assert!(!out.status.success(), "nothing left to remove");
    s.emulator.shutdown();
}

/// caller, outcome, status, error, response
type AttemptRow = (String, String, Option<i32>, Option<String>, Option<String>);

/// A receiver on 127.0.0.1 answering every POST with `answer`.
async fn hostile_receiver(answer: fn() -> Response) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", post(move || async move { answer() }));
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/hook"), task)
}

fn endless_body() -> Response {
    let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let stream = futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    (StatusCode::OK, axum::body::Body::from_stream(stream)).into_response()
}

fn stalled_body() -> Response {
    let first =
        futures::stream::once(async { Ok::<_, std::io::Error>(bytes::Bytes::from("half")) });
    let stream = futures::StreamExt::chain(first, futures::stream::pending());
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

#[tokio::test]
async fn hostile_receivers_and_forbidden_addresses_hold_no_worker_and_old_events_fail_for_good() {
    let s = Stack::new().await;
    let callers = [
        "notify-endless",
        "notify-stalled",
        "notify-metadata",
        "notify-gone",
    ];
    let mut keys = Vec::new();
    for c in callers {
        keys.push(create_key(&s.pool, c).await);
    }
    let (endless, _t1) = hostile_receiver(endless_body).await;
    let (stalled, _t2) = hostile_receiver(stalled_body).await;
    let gone = format!("http://{}/hook", free_addr());
    for (caller, url) in callers.iter().zip([&endless, &stalled, &gone, &gone]) {
        s.set_webhook(caller, url).await;
    }
    // as if the URL had been stored by other means: the send-time check still holds
    sqlx::query(
        "update notify_endpoints set url = 'http://169.254.169.254/latest/meta-data'
         where caller_id = (select caller_id from callers where name = 'notify-metadata')",
    )
    .execute(&s.pool)
    .await
    .unwrap();
    let (_gw, gw) = s.gateway(&[("NOTIFY_RETRY_FOR", "3s")]).await;
    for key in &keys {
        s.order(gw, key).await;
    }
    // every event ends: delivered (endless 200) or failed after the window
    wait_count(
        &s.pool,
        "select count(*) from notify_events where state <> 'pending'",
        4,
    )
    .await;
    let states: HashMap<String, String> = sqlx::query_as(
        "select c.name, e.state from notify_events e join callers c using (caller_id)",
    )
    .fetch_all(&s.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(states["notify-endless"], "delivered", "{states:?}");
    for c in ["notify-stalled", "notify-metadata", "notify-gone"] {
        assert_eq!(states[c], "failed", "{c}: {states:?}");
    }
    let attempts: Vec<AttemptRow> = sqlx::query_as(
        "select c.name, a.outcome, a.status_code, a.error, a.response
             from notify_attempts a join notify_events e on e.seq = a.event_seq
             join callers c using (caller_id)",
    )
    .fetch_all(&s.pool)
    .await
    .unwrap();
    for (caller, outcome, status, error, response) in &attempts {
        assert!(
            response.as_deref().unwrap_or_default().len() <= 4096,
            "{caller}: at most 4 KiB of an answer is kept"
        );
        match caller.as_str() {
            "notify-endless" => assert_eq!((outcome.as_str(), *status), ("delivered", Some(200))),
            "notify-stalled" => {
                assert_eq!((outcome.as_str(), *status), ("http_error", Some(500)));
                assert!(
                    error.as_deref().unwrap().contains("not finished"),
                    "{error:?}"
                );
            }
            "notify-metadata" => {
                assert_eq!(outcome, "refused_address", "{error:?}");
                assert_eq!(*status, None, "never contacted");
            }
            _ => assert_eq!(outcome, "connect_error", "{error:?}"),
        }
    }
    let metrics = s
        .http
        .get(format!("http://{gw}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("order_gateway_notify_events_failed 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("order_gateway_notify_events_failed_total 3"),
        "{metrics}"
    );
    assert!(metrics.contains("order_gateway_notify_attempts_total{outcome=\"refused_address\"}"));
    s.emulator.shutdown();
}
