//! A COMMIT that reaches Postgres but whose reply never comes back (the
//! intake cannot tell whether its order was stored), or comes back late (the
//! rate slot it took is old by the time the call could go out). A TCP proxy
//! between a replica and Postgres forwards the COMMIT of the first
//! transaction that carries a given statement (the intake's gate, a
//! lookup's audit row), waits for Postgres to answer it, and then drops both
//! sides without passing the answer on, or passes it on after a pause.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use order_gateway::{
    config::{Env, ServeConfig},
    emulator::{Fault as EmuFault, FaultOp},
    startup::Application,
};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

use crate::{
    helpers::{
        Options, TestApp, assert_problem, env_pairs, new_key, order_body, spawn_app, spawn_app_with,
    },
    ledger::{fast, wait_all_settled},
    operator,
};

/// The gate statement's text (`store::orders::gate`): a transaction that
/// carries it is an intake transaction.
const GATE: &[u8] = b"insert into orders (order_id, caller_id, idempotency_key";

/// The end of a lookup's audit insert (`Store::begin_lookup`): a
/// transaction that carries it takes a getOrderDetails slot.
const LOOKUP: &[u8] = b"returning coalesce(attempt, 0)";

/// The column list of a call owned by no order (`Store::begin_unowned_call`:
/// a getOrderHistory page of the books audit).
const HISTORY: &[u8] = b"(exchange_id, operation, method, url, request_body)\n";

/// A placeOrder write-back's first statement (`complete_exchange`).
const WRITE_BACK: &[u8] = b"update upstream_exchanges set";

/// What the proxy does to a COMMIT reply.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Never passed on; the connection is dropped.
    Lost,
    /// Passed on after this pause.
    Late(Duration),
}

/// The fault for the COMMIT of the next transaction that carries the
/// statement text; taken (`None` again) by it.
type Armed = Arc<Mutex<Option<(&'static [u8], Fault)>>>;

/// Forwards connections to `target`; while `armed`, the first COMMIT reply
/// of a transaction with the armed statement suffers the fault.
async fn start_proxy(target: String, armed: Armed) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let server = TcpStream::connect(&target).await.unwrap();
            tokio::spawn(relay(client, server, armed.clone()));
        }
    });
    port
}

/// One connection. Frontend messages after the startup packet are a type
/// byte, a big-endian length (itself included) and a payload.
async fn relay(client: TcpStream, server: TcpStream, armed: Armed) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let lost = Arc::new(tokio::sync::Notify::new());
    let swallow = Arc::new(AtomicBool::new(false));
    // The pause before passing on the next reply (the COMMIT's).
    let late = Arc::new(Mutex::new(None::<Duration>));
    let upstream = {
        let (lost, swallow, late) = (lost.clone(), swallow.clone(), late.clone());
        tokio::spawn(async move {
            let mut len = [0u8; 4];
            from_client.read_exact(&mut len).await?;
            let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
            from_client.read_exact(&mut startup).await?;
            to_server.write_all(&len).await?;
            to_server.write_all(&startup).await?;
            let mut seen = Vec::<&[u8]>::new();
            loop {
                let mut head = [0u8; 5];
                from_client.read_exact(&mut head).await?;
                let n = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize - 4;
                let mut body = vec![0u8; n];
                from_client.read_exact(&mut body).await?;
                for text in [GATE, LOOKUP, HISTORY, WRITE_BACK] {
                    if body.windows(text.len()).any(|w| w == text) {
                        seen.push(text);
                    }
                }
                let is_end = head[0] == b'Q'
                    && (body.starts_with(b"COMMIT") || body.starts_with(b"ROLLBACK"));
                if is_end && body.starts_with(b"COMMIT") {
                    // Set before the COMMIT goes on, so before its reply.
                    let mut armed = armed.lock().unwrap();
                    match *armed {
                        Some((text, fault)) if seen.contains(&text) => {
                            *armed = None;
                            match fault {
                                Fault::Lost => swallow.store(true, Ordering::SeqCst),
                                Fault::Late(pause) => *late.lock().unwrap() = Some(pause),
                            }
                        }
                        _ => {}
                    }
                }
                if is_end {
                    seen.clear();
                }
                to_server.write_all(&head).await?;
                to_server.write_all(&body).await?;
                if swallow.load(Ordering::SeqCst) {
                    lost.notified().await;
                    return Ok::<_, std::io::Error>(());
                }
            }
        })
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from_server.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if swallow.load(Ordering::SeqCst) {
            // Postgres answered the COMMIT: the order is stored. The answer
            // is dropped with the connection.
            lost.notify_one();
            break;
        }
        let pause = late.lock().unwrap().take();
        if let Some(pause) = pause {
            // Postgres answered the COMMIT: the order is stored, and its
            // slot stamped; the replica learns it only now.
            tokio::time::sleep(pause).await;
        }
        if to_client.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    upstream.abort();
}

#[tokio::test]
async fn an_intake_whose_commit_reply_is_lost_places_its_order_once_without_waiting_for_the_lease()
{
    // Arrange, act: the next intake's COMMIT reaches Postgres; its reply
    // is lost.
    let app = spawn_app().await;
    let (replica, key, resp) = post_with_faulty_commit(&app, Fault::Lost).await;

    // Assert: the caller is told to retry with the same key; the order was
    // stored all the same and is placed once, well before its 15 s lease
    // would have handed it to the reconciler.
    let problem = assert_problem(resp, 503).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("SAME Idempotency-Key"),
        "{problem}"
    );
    let po = completed_with_one_call(&app, &key).await;
    assert_eq!(app.emulator.orders_for(&po).len(), 1);
    let again = post_via(&app, replica.0, key).await.unwrap();
    assert_eq!(again.status(), 200);
    let order: Value = again.json().await.unwrap();
    assert_eq!(order["poNumber"], po.as_str());
    assert_eq!(order["attempts"], 1);
    assert_eq!(app.count("orders").await, 2);
    replica.1.cancel();
}

#[tokio::test]
async fn a_call_whose_slot_grew_older_than_the_send_margin_is_not_sent_and_its_order_is_placed_with_a_new_slot()
 {
    // Arrange, act: the default window (65 s) leaves 0.75 s from a slot's
    // stamp to its send; the intake that took the slot learns of its
    // commit 1.5 s late.
    let app = spawn_app().await;
    let late = Fault::Late(Duration::from_millis(1500));
    let (replica, key, resp) = post_with_faulty_commit(&app, late).await;
    assert!(resp.status().is_success(), "{}", resp.status());

    // Assert: that call never went out; the order was placed once, with a
    // slot of its own, and its one real call is its one counted attempt.
    let po = completed_with_one_call(&app, &key).await;
    let exchanges = exchanges_of(&app, Some(&po), "place_order").await;
    // (A stall of this slow machine may make a later attempt too old as
    // well: more `not_sent` rows, never a second call.)
    let (outcome, status, error) = &exchanges[0];
    assert_eq!(
        (outcome.as_str(), *status),
        ("not_sent", None),
        "{exchanges:?}"
    );
    assert!(
        error.as_deref().is_some_and(|e| e.contains("rate slot")),
        "{exchanges:?}"
    );
    let answered: Vec<_> = exchanges.iter().filter(|x| x.1.is_some()).collect();
    assert_eq!(answered.len(), 1, "{exchanges:?}");
    assert_eq!(answered[0].1, Some(200), "{exchanges:?}");
    assert!(
        exchanges.iter().all(|x| x.1.is_some() || x.0 == "not_sent"),
        "{exchanges:?}"
    );
    let again = post_via(&app, replica.0, key).await.unwrap();
    assert_eq!(again.status(), 200);
    let order: Value = again.json().await.unwrap();
    assert_eq!(order["attempts"], 1);
    replica.1.cancel();
}

#[tokio::test]
async fn a_lookup_whose_slot_grew_older_than_the_send_margin_is_not_sent_and_is_asked_again() {
    // Arrange: only the replica behind the proxy works the orders; its
    // first placeOrder creates the order but answers 500 (outcome unknown).
    let app = spawn_app_with(fast(&[])).await;
    app.stop();
    let (addr, armed, stop) = replica_behind_proxy(&app, &fast(&[])).await;
    *armed.lock().unwrap() = Some((LOOKUP, Fault::Late(Duration::from_millis(1500))));
    app.emulator.push_fault(
        FaultOp::PlaceOrder,
        EmuFault::ErrorAfterCreate { status: 500 },
    );

    // Act
    let key = new_key();
    let resp = post_via(&app, addr, key.clone()).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    wait_all_settled(&app.db, Duration::from_secs(30)).await;

    // Assert: the first lookup learned of its slot 1.5 s late and was not
    // sent; the next one found the order, which was never placed again.
    assert!(
        armed.lock().unwrap().is_none(),
        "no lookup COMMIT crossed the proxy"
    );
    let po = po_of(&app, &key).await;
    assert_eq!(app.db_status(&po).await, "completed");
    assert_eq!(app.emulator.place_calls(&po), 1);
    let lookups = exchanges_of(&app, Some(&po), "get_order_details").await;
    let first = lookups.first().map(|l| (l.0.as_str(), l.1));
    assert_eq!(first, Some(("not_sent", None)), "{lookups:?}");
    assert!(lookups.iter().any(|l| l.1 == Some(200)), "{lookups:?}");
    assert!(
        lookups.iter().all(|l| l.1.is_some() || l.0 == "not_sent"),
        "{lookups:?}"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_refusal_after_a_call_that_was_not_sent_fails_the_order_at_once() {
    // Arrange: the first placeOrder is not sent (its commit reply comes
    // late); Xoxoday then refuses the real one with a clean 400.
    let app = spawn_app().await;
    let refused = EmuFault::Respond {
        status: 400,
        body: serde_json::json!({"code": 400, "errorId": "PLE10001",
            "errorInfo": "Validation error in place order", "error": "Bad request"}),
    };

    // Act
    let late = Fault::Late(Duration::from_millis(1500));
    let (replica, key, resp) = post_with_faulty_commit_then(&app, late, Some(refused)).await;
    assert!(resp.status().is_success(), "{}", resp.status());

    // Assert: a call never sent cannot have created an order, so the
    // refusal fails it (no reconciling, no waiting out the settle window).
    let po = po_of(&app, &key).await;
    let status = wait_for_status(&app, &po, "failed").await;
    assert_eq!(status, "failed", "not failed within 10 s");
    assert_eq!(app.emulator.place_calls(&po), 1);
    let outcomes: Vec<String> = exchanges_of(&app, Some(&po), "place_order")
        .await
        .into_iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(
        outcomes.first().map(String::as_str),
        Some("not_sent"),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.last().map(String::as_str),
        Some("rejected"),
        "{outcomes:?}"
    );
    replica.1.cancel();
}

#[tokio::test]
async fn an_operators_recheck_whose_slot_grew_older_than_the_send_margin_is_not_sent_and_says_so() {
    // Arrange: a completed order; the operator's command reaches Postgres
    // through the proxy, and its lookup learns of its slot 1.5 s late.
    let app = spawn_app().await;
    let done = app.place_new().await;
    assert_eq!(done["status"], "completed", "{done}");
    let po = done["poNumber"].as_str().unwrap().to_owned();

    // Act
    let recheck = ["orders", "recheck", &po, "--actor", "erin"];
    let out = command_with_late_commit(&app, LOOKUP, &recheck).await;

    // Assert: nothing was asked of Xoxoday, the operator is told to run it
    // again, the order is unchanged and the audit says why.
    assert_eq!(operator::code(&out), 1, "{}", operator::text(&out));
    assert!(
        operator::text(&out).contains("run the action again"),
        "{}",
        operator::text(&out)
    );
    assert_eq!(app.db_status(&po).await, "completed");
    let lookups = exchanges_of(&app, Some(&po), "get_order_details").await;
    assert_eq!(lookups.len(), 1, "{lookups:?}");
    assert_eq!((lookups[0].0.as_str(), lookups[0].1), ("not_sent", None));
}

#[tokio::test]
async fn a_books_audit_page_whose_slot_grew_older_than_the_send_margin_is_asked_again() {
    // Arrange: one completed order; the audit reaches Postgres through the
    // proxy, and its first getOrderHistory learns of its slot 1.5 s late.
    let app = spawn_app().await;
    let done = app.place_new().await;
    assert_eq!(done["status"], "completed", "{done}");

    // Act
    let day = chrono::Utc::now().date_naive().to_string();
    let audit = ["audit", "books", "--from", &day, "--to", &day];
    let out = command_with_late_commit(&app, HISTORY, &audit).await;

    // Assert: the page was asked again with a new slot and the books agree.
    assert_eq!(operator::code(&out), 0, "{}", operator::text(&out));
    let pages: Vec<(String, Option<i32>)> = exchanges_of(&app, None, "get_order_history")
        .await
        .into_iter()
        .map(|x| (x.0, x.1))
        .collect();
    assert_eq!(
        pages.first(),
        Some(&("not_sent".to_owned(), None)),
        "{pages:?}"
    );
    // The same page again, answered, then the next (empty) page.
    assert_eq!(
        pages.get(1),
        Some(&("history".to_owned(), Some(200))),
        "{pages:?}"
    );
    assert!(pages.iter().skip(1).all(|p| p.1.is_some()), "{pages:?}");
}

#[tokio::test]
async fn a_write_back_whose_commit_reply_hangs_is_given_up_after_the_deadline() {
    use order_gateway::{
        domain::OrderStatus,
        orders::{batches::DEADLINE, write_backs::WriteBacks},
        store::Store,
    };
    let app = spawn_app().await;
    let (url, armed) = database_behind_proxy(&app).await;
    let via = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap();
    let write_backs = WriteBacks::new(Store::from_pool(via), Default::default());
    let direct = Store::from_pool(app.db.clone());
    let wb = crate::write_backs::placing(&app, &direct, "wb-hang").await;
    let wb = crate::write_backs::placed(&wb, 41, Vec::new());
    // Postgres commits the write-back; its answer is held for a minute
    // (a connection that hangs after the commit).
    *armed.lock().unwrap() = Some((WRITE_BACK, Fault::Late(Duration::from_secs(60))));
    let answer = tokio::time::timeout(DEADLINE * 4, write_backs.record(&wb))
        .await
        .expect("the batch is given up, not waited for")
        .unwrap();
    // Written again on another connection: the commit fences it, and the
    // order is what the first write left.
    assert!(answer.is_none());
    let order = direct.load_order(wb.order).await.unwrap().unwrap();
    assert_eq!(
        (order.status, order.xoxoday_order_id),
        (OrderStatus::Completed, Some(41))
    );
    assert!(armed.lock().unwrap().is_none(), "the fault was met");
}

/// Polls the order's status for up to 10 s until it is `want`; returns the last.
async fn wait_for_status(app: &TestApp, po: &str, want: &str) -> String {
    let mut status = String::new();
    for _ in 0..100 {
        status = app.db_status(po).await;
        if status == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    status
}

/// A replica of `app` whose database connections go through a proxy (no
/// statement cache, so every statement's text crosses it); the proxy's
/// fault switch; the replica's stop.
async fn replica_behind_proxy(
    app: &TestApp,
    opts: &Options,
) -> (SocketAddr, Armed, CancellationToken) {
    let (via, armed) = database_behind_proxy(app).await;
    let mut pairs = env_pairs(app.db_url(), &app.emulator.base_url(), opts);
    pairs.insert("DATABASE_URL".into(), via);
    let replica = Application::build(ServeConfig::from_env(&Env::from_map(pairs)).unwrap())
        .await
        .unwrap();
    let addr = replica.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(replica.run(stop.clone()));
    (addr, armed, stop)
}

/// A replica behind the proxy, warmed by one order; then an order under a
/// new key whose intake COMMIT reply suffers `fault`. Returns the replica
/// (address, stop), the key and the answer.
async fn post_with_faulty_commit(
    app: &TestApp,
    fault: Fault,
) -> ((SocketAddr, CancellationToken), String, reqwest::Response) {
    post_with_faulty_commit_then(app, fault, None).await
}

/// [`post_with_faulty_commit`], with `upstream` as the emulator's next
/// placeOrder fault once the replica is warm.
async fn post_with_faulty_commit_then(
    app: &TestApp,
    fault: Fault,
    upstream: Option<EmuFault>,
) -> ((SocketAddr, CancellationToken), String, reqwest::Response) {
    let (addr, armed, stop) = replica_behind_proxy(app, &Options::default()).await;
    // Warm the replica's first slot block and connections.
    assert_eq!(post_via(app, addr, new_key()).await.unwrap().status(), 201);
    if let Some(upstream) = upstream {
        app.emulator.push_fault(FaultOp::PlaceOrder, upstream);
    }
    *armed.lock().unwrap() = Some((GATE, fault));
    let key = new_key();
    let resp = post_via(app, addr, key.clone()).await.unwrap();
    assert!(
        armed.lock().unwrap().is_none(),
        "no intake COMMIT crossed the proxy"
    );
    ((addr, stop), key, resp)
}

/// Runs `order-gateway args` against `app`'s database through the proxy,
/// the first transaction that carries `statement` learning of its commit
/// 1.5 s late.
async fn command_with_late_commit(
    app: &TestApp,
    statement: &'static [u8],
    args: &[&str],
) -> std::process::Output {
    let (via, armed) = database_behind_proxy(app).await;
    *armed.lock().unwrap() = Some((statement, Fault::Late(Duration::from_millis(1500))));
    let out = operator::gateway(app, args, &[("DATABASE_URL", via.as_str())]).await;
    assert!(
        armed.lock().unwrap().is_none(),
        "no COMMIT of that statement crossed the proxy"
    );
    out
}

/// The poNumber of the order under `key`, once it is `completed` (within
/// 10 s) with one placeOrder call upstream.
async fn completed_with_one_call(app: &TestApp, key: &str) -> String {
    let po = po_of(app, key).await;
    let status = wait_for_status(app, &po, "completed").await;
    assert_eq!(status, "completed", "not placed within 10 s");
    assert_eq!(
        app.emulator.place_calls(&po),
        1,
        "placeOrder calls for {po}"
    );
    po
}

/// (outcome, response status, error) of the exchanges of `operation`, of
/// the order `po` (or of none), oldest first.
async fn exchanges_of(
    app: &TestApp,
    po: Option<&str>,
    operation: &str,
) -> Vec<(String, Option<i32>, Option<String>)> {
    sqlx::query_as(
        "select x.outcome, x.response_status, x.error from upstream_exchanges x
           left join orders o using (order_id)
         where o.po_number is not distinct from $1 and x.operation = $2
         order by x.created_at",
    )
    .bind(po)
    .bind(operation)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// The poNumber of the order under `key`.
async fn po_of(app: &TestApp, key: &str) -> String {
    sqlx::query_scalar("select po_number from orders where idempotency_key = $1")
        .bind(key)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// A `DATABASE_URL` for `app`'s database through a proxy (no statement
/// cache, so every statement's text crosses it), and the proxy's fault switch.
async fn database_behind_proxy(app: &TestApp) -> (String, Armed) {
    let armed = Armed::default();
    let url = url::Url::parse(app.db_url()).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let port = start_proxy(target, armed.clone()).await;
    let mut via = url.clone();
    via.set_port(Some(port)).unwrap();
    via.set_query(Some("sslmode=disable&statement-cache-capacity=0"));
    (via.to_string(), armed)
}

/// `POST /v1/orders` to the replica at `addr` with `app`'s key.
async fn post_via(
    app: &TestApp,
    addr: SocketAddr,
    key: String,
) -> reqwest::Result<reqwest::Response> {
    app.http
        .post(format!("http://{addr}/v1/orders"))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", key)
        .json(&order_body())
        .send()
        .await
}
