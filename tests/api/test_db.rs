//! A fresh Postgres database per test, cloned from a migrated template.
//!
//! The server is `TEST_DATABASE_URL`, else `DATABASE_URL`, else a local
//! `postgres://postgres@127.0.0.1:5432/postgres` if it answers, else a
//! testcontainers Postgres (only when a Docker engine exists). The template is
//! migrated once per test process under a Postgres advisory lock (test
//! binaries may run concurrently); its name carries a hash of the migrations,
//! so a changed migration gets a new template. Only plain strings live in
//! statics: pools are created per test, never shared across runtimes.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::{Connection, Executor, PgConnection, PgPool, postgres::PgPoolOptions};
use tokio::sync::OnceCell;

static SERVER: OnceCell<String> = OnceCell::const_new();
static TEMPLATE: OnceCell<String> = OnceCell::const_new();

const LOCAL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that is dropped (best effort) when this value is dropped.
pub struct TestDb {
    /// URL of the test's own database.
    pub url: String,
    /// Its name.
    pub name: String,
    /// URL of the server (its maintenance database).
    pub server: String,
}

impl TestDb {
    /// Creates a fresh, migrated database.
    pub async fn create() -> TestDb {
        let server = SERVER.get_or_init(server_url).await.clone();
        let template = TEMPLATE
            .get_or_init(|| migrated_template(server.clone()))
            .await
            .clone();
        let name = format!("ogw_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server)
            .await
            .expect("connect to test server");
        admin
            .execute(format!(r#"create database "{name}" template "{template}""#).as_str())
            .await
            .expect("create test database from template");
        TestDb {
            url: with_database(&server, &name),
            name,
            server,
        }
    }

    /// A fresh database with no migrations applied.
    pub async fn create_empty() -> TestDb {
        let server = SERVER.get_or_init(server_url).await.clone();
        let name = format!("ogw_e_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server)
            .await
            .expect("connect to test server");
        admin
            .execute(format!(r#"create database "{name}""#).as_str())
            .await
            .expect("create empty test database");
        TestDb {
            url: with_database(&server, &name),
            name,
            server,
        }
    }

    /// A small pool on the test database.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&self.url)
            .await
            .expect("connect to test database")
    }

    /// Drops the database now, terminating its connections.
    pub async fn drop_now(server: &str, name: &str) {
        if let Ok(mut admin) = PgConnection::connect(server).await {
            let _ = admin
                .execute(format!(r#"drop database if exists "{name}" with (force)"#).as_str())
                .await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop is synchronous; a short-lived runtime on its own thread works
        // whichever runtime (or none) is current.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(TestDb::drop_now(&server, &name));
            }
        })
        .join();
    }
}

async fn answers(url: &str) -> bool {
    tokio::time::timeout(Duration::from_secs(3), PgConnection::connect(url))
        .await
        .is_ok_and(|c| c.is_ok())
}

async fn server_url() -> String {
    for var in ["TEST_DATABASE_URL", "DATABASE_URL"] {
        if let Ok(url) = std::env::var(var) {
            if !url.trim().is_empty() {
                return url;
            }
        }
    }
    if answers(LOCAL).await {
        return LOCAL.to_owned();
    }
    container_url().await
}

/// Last resort: a Postgres container, leaked for the process lifetime
/// (testcontainers' reaper removes it afterwards).
async fn container_url() -> String {
    use testcontainers::{ImageExt as _, runners::AsyncRunner as _};
    let container = testcontainers_modules::postgres::Postgres::default()
        .with_tag("16-alpine")
        .start()
        .await
        .expect("no Postgres answers (TEST_DATABASE_URL, DATABASE_URL, 127.0.0.1:5432) and no Docker engine for testcontainers");
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .expect("container port");
    Box::leak(Box::new(container));
    format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres")
}

fn with_database(server: &str, db: &str) -> String {
    let mut url = url::Url::parse(server).expect("test server URL");
    url.set_path(db);
    url.to_string()
}

async fn migrated_template(server: String) -> String {
    let mut hash = Sha256::new();
    for m in order_gateway::store::MIGRATOR.iter() {
        hash.update(&m.checksum);
    }
    let name = format!("ogw_tmpl_{}", &hex::encode(hash.finalize())[..16]);
    let mut admin = PgConnection::connect(&server)
        .await
        .expect("connect to test server");
    admin
        .execute("select pg_advisory_lock(7318009)")
        .await
        .expect("advisory lock");
    let exists: bool =
        sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .expect("look for template");
    if !exists {
        let building = format!("{name}_building");
        admin
            .execute(format!(r#"drop database if exists "{building}" with (force)"#).as_str())
            .await
            .expect("drop half-built template");
        admin
            .execute(format!(r#"create database "{building}""#).as_str())
            .await
            .expect("create template");
        let mut conn = PgConnection::connect(&with_database(&server, &building))
            .await
            .expect("connect to template");
        order_gateway::store::MIGRATOR
            .run(&mut conn)
            .await
            .expect("migrate template");
        conn.close().await.expect("close template connection");
        admin
            .execute(format!(r#"alter database "{building}" rename to "{name}""#).as_str())
            .await
            .expect("publish template");
    }
    admin
        .execute("select pg_advisory_unlock(7318009)")
        .await
        .expect("advisory unlock");
    name
}
