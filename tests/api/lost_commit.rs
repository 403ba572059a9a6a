//! A COMMIT that reaches Postgres but whose reply never comes back: the
//! intake cannot tell whether its order was stored. A TCP proxy between a
//! replica and Postgres forwards the intake transaction's COMMIT, waits for
//! Postgres to answer it, and then drops both sides without passing the
//! answer on.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use order_gateway::{
    config::{Env, ServeConfig},
    startup::Application,
};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Options, assert_problem, env_pairs, new_key, order_body, spawn_app};

/// The gate statement's text (`store::orders::gate`): a transaction that
/// carries it is an intake transaction.
const GATE: &[u8] = b"insert into orders (order_id, caller_id, idempotency_key";

/// Forwards connections to `target`; while `armed`, the first intake
/// transaction's COMMIT reply is swallowed and its connection dropped.
async fn start_proxy(target: String, armed: Arc<AtomicBool>) -> u16 {
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
async fn relay(client: TcpStream, server: TcpStream, armed: Arc<AtomicBool>) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let lost = Arc::new(tokio::sync::Notify::new());
    let swallow = Arc::new(AtomicBool::new(false));
    let upstream = {
        let (lost, swallow) = (lost.clone(), swallow.clone());
        tokio::spawn(async move {
            let mut len = [0u8; 4];
            from_client.read_exact(&mut len).await?;
            let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
            from_client.read_exact(&mut startup).await?;
            to_server.write_all(&len).await?;
            to_server.write_all(&startup).await?;
            let mut in_intake = false;
            loop {
                let mut head = [0u8; 5];
                from_client.read_exact(&mut head).await?;
                let n = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize - 4;
                let mut body = vec![0u8; n];
                from_client.read_exact(&mut body).await?;
                if body.windows(GATE.len()).any(|w| w == GATE) {
                    in_intake = true;
                }
                let is_end = head[0] == b'Q'
                    && (body.starts_with(b"COMMIT") || body.starts_with(b"ROLLBACK"));
                if is_end
                    && in_intake
                    && body.starts_with(b"COMMIT")
                    && armed.swap(false, Ordering::SeqCst)
                {
                    swallow.store(true, Ordering::SeqCst);
                }
                if is_end {
                    in_intake = false;
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
        if to_client.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    upstream.abort();
}

#[tokio::test]
async fn an_intake_whose_commit_reply_is_lost_places_its_order_once_without_waiting_for_the_lease()
{
    // Arrange: a replica whose database connections go through the proxy
    // (no statement cache, so every statement's text crosses it).
    let app = spawn_app().await;
    let armed = Arc::new(AtomicBool::new(false));
    let url = url::Url::parse(app.db_url()).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let port = start_proxy(target, armed.clone()).await;
    let mut via = url.clone();
    via.set_port(Some(port)).unwrap();
    via.set_query(Some("sslmode=disable&statement-cache-capacity=0"));
    let mut pairs = env_pairs(app.db_url(), &app.emulator.base_url(), &Options::default());
    pairs.insert("DATABASE_URL".into(), via.to_string());
    let replica = Application::build(ServeConfig::from_env(&Env::from_map(pairs)).unwrap())
        .await
        .unwrap();
    let addr = replica.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(replica.run(stop.clone()));
    let post = |key: String| {
        app.http
            .post(format!("http://{addr}/v1/orders"))
            .bearer_auth(&app.api_key)
            .header("Idempotency-Key", key)
            .json(&order_body())
            .send()
    };
    // Warm the replica's first slot block and connections.
    assert_eq!(post(new_key()).await.unwrap().status(), 201);

    // Act: the next intake's COMMIT reaches Postgres; its reply is lost.
    armed.store(true, Ordering::SeqCst);
    let key = new_key();
    let resp = post(key.clone()).await.unwrap();
    assert!(
        !armed.load(Ordering::SeqCst),
        "no intake COMMIT crossed the proxy"
    );

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
    let po: String = sqlx::query_scalar("select po_number from orders where idempotency_key = $1")
        .bind(&key)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let mut status = String::new();
    for _ in 0..50 {
        status = app.db_status(&po).await;
        if status == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "completed", "not placed within 5 s");
    assert_eq!(
        app.emulator.place_calls(&po),
        1,
        "placeOrder calls for {po}"
    );
    assert_eq!(app.emulator.orders_for(&po).len(), 1);
    let again = post(key).await.unwrap();
    assert_eq!(again.status(), 200);
    let order: Value = again.json().await.unwrap();
    assert_eq!(order["poNumber"], po.as_str());
    assert_eq!(order["attempts"], 1);
    assert_eq!(app.count("orders").await, 2);
    stop.cancel();
}
