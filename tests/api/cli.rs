//! The command line of contract §3, run as the real binary.

use std::process::{Command, Output};

use crate::{
    helpers::{assert_problem, new_key, order_body, spawn_app},
    test_db::TestDb,
};

fn gateway(db_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db_url)
        .output()
        .expect("run order-gateway")
}

#[tokio::test]
async fn api_key_create_prints_a_working_key_last_and_revoke_stops_it_at_once() {
    let app = spawn_app().await;
    let out = gateway(
        &app.db_url,
        &["api-key", "create", "--caller", "cli-caller"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout.lines().last().unwrap().trim().to_owned();
    assert!(key.starts_with("ogw_") && !key.contains(' '), "{stdout}");
    let stored: i64 =
        sqlx::query_scalar("select count(*) from api_keys where key_hash = sha256($1::bytea)")
            .bind(key.as_bytes())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stored, 1, "only the hash is stored");

    let resp = app
        .post_order_as(&key, &new_key(), &order_body(), Some(0))
        .await;
    assert_eq!(resp.status(), 202);
    let out = gateway(
        &app.db_url,
        &["api-key", "revoke", "--caller", "cli-caller"],
    );
    assert!(out.status.success());
    let resp = app
        .post_order_as(&key, &new_key(), &order_body(), Some(0))
        .await;
    assert_problem(resp, 401).await;
    assert_eq!(app.count("orders").await, 1);
}

#[tokio::test]
async fn migrate_applies_every_migration_to_an_empty_database_and_is_repeatable() {
    let db = TestDb::create_empty().await;
    for _ in 0..2 {
        let out = gateway(&db.url, &["migrate"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pool = db.pool().await;
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        applied as usize,
        order_gateway::store::MIGRATOR.iter().count()
    );
    pool.close().await;
}

#[tokio::test]
async fn serve_with_a_missing_setting_names_it_in_one_line() {
    let out = gateway("postgres://postgres@127.0.0.1:1/x", &["serve"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("XOXODAY_"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

async fn healthcheck(env: &[(&str, String)], args: &[&str]) -> std::process::ExitStatus {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .arg("healthcheck")
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .expect("run order-gateway healthcheck")
        .status
}

#[tokio::test]
async fn healthcheck_exits_zero_only_while_readyz_answers_200() {
    let app = spawn_app().await;
    let listen = [("LISTEN_ADDR", app.addr.to_string())];
    assert!(healthcheck(&listen, &[]).await.success(), "via LISTEN_ADDR");
    let url = format!("http://{}", app.addr);
    assert!(
        healthcheck(&[], &["--url", &url]).await.success(),
        "via --url"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let down = [("LISTEN_ADDR", dead.to_string())];
    assert!(
        !healthcheck(&down, &[]).await.success(),
        "nothing listening"
    );
}

/// The variables of the README's `n`th table under "## Configuration" (0:
/// the gateway's, 1: the emulator's): rows starting with "| `", every name in
/// the first cell.
fn readme_variables(n: usize) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Configuration")
        .nth(1)
        .expect("a Configuration section");
    let mut names = Vec::new();
    let (mut table, mut in_table) = (0, false);
    for line in section.lines() {
        if line.starts_with('|') {
            in_table = true;
        } else if in_table {
            in_table = false;
            table += 1;
        }
        if table > n {
            break;
        }
        if table < n {
            continue;
        }
        if let Some(row) = line.strip_prefix("| `") {
            let cell = row.split('|').next().unwrap_or_default();
            names.extend(
                format!("`{cell}")
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned),
            );
        }
    }
    names
}

#[test]
fn serve_help_lists_every_variable_of_the_readme_table() {
    let out = gateway("postgres://postgres@127.0.0.1:1/x", &["serve", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let names = readme_variables(0);
    assert!(names.len() >= 30, "{names:?}");
    for name in names {
        assert!(
            help.contains(&format!("[env: {name}]")),
            "{name} missing from:\n{help}"
        );
    }
    assert!(help.contains("[default: 65s]"), "{help}");
    assert!(
        !help.contains("postgres://"),
        "--help shows no values: {help}"
    );
}

#[test]
fn emulator_help_lists_every_variable_of_the_readme_table() {
    let out = gateway("postgres://postgres@127.0.0.1:1/x", &["emulator", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let names = readme_variables(1);
    assert!(names.len() >= 25, "{names:?}");
    for name in names {
        assert!(
            help.contains(&format!("[env: {name}]")),
            "{name} missing from:\n{help}"
        );
    }
    assert!(help.contains("[default: 160s]"), "{help}");
}

#[test]
fn a_flag_mirrors_its_variable_and_a_bad_one_is_named_in_one_line() {
    let out = gateway(
        "postgres://postgres@127.0.0.1:1/x",
        &[
            "serve",
            "--xoxoday-base-url",
            "http://127.0.0.1:1/chef",
            "--xoxoday-client-id",
            "id",
            "--xoxoday-client-secret",
            "secret",
            "--encryption-key",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "--order-lease",
            "soon",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("configuration error: ORDER_LEASE"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
