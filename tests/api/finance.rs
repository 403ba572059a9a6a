//! The `finance_orders` view of contract §6: every column in snake_case and
//! under its contract camelCase name, money as `numeric`, no secrets, and a
//! read-only role that sees the view but not the base tables.

use serde_json::Value;

use crate::helpers::{new_key, order_body, spawn_app};

const CONTRACT_COLUMNS: [&str; 14] = [
    "poNumber",
    "xoxodayOrderId",
    "caller",
    "productId",
    "denomination",
    "quantity",
    "currency",
    "orderTotal",
    "orderDiscount",
    "amountCharged",
    "status",
    "deliveryStatus",
    "createdAt",
    "settledAt",
];

fn snake(camel: &str) -> String {
    camel
        .chars()
        .flat_map(|c| {
            let lower = c.to_ascii_lowercase();
            (c.is_ascii_uppercase().then_some('_').into_iter()).chain([lower])
        })
        .collect()
}

#[tokio::test]
async fn finance_orders_offers_both_spellings_money_as_numeric_and_no_secrets() {
    let app = spawn_app().await;
    let order: Value = app
        .post_order(&new_key(), &order_body())
        .await
        .json()
        .await
        .unwrap();
    let columns: Vec<(String, String)> = sqlx::query_as(
        "select column_name::text, data_type::text from information_schema.columns
         where table_name = 'finance_orders' order by ordinal_position",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let type_of = |name: &str| {
        columns
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, t)| t.clone())
    };
    for camel in CONTRACT_COLUMNS {
        assert!(type_of(camel).is_some(), "{camel} missing");
        assert!(type_of(&snake(camel)).is_some(), "{} missing", snake(camel));
    }
    for money in [
        "denomination",
        "orderTotal",
        "orderDiscount",
        "amountCharged",
        "order_total",
        "amount_charged",
    ] {
        assert_eq!(type_of(money).as_deref(), Some("numeric"), "{money}");
    }
    for (name, _) in &columns {
        let n = name.to_ascii_lowercase();
        for secret in [
            "code",
            "pin",
            "key",
            "token",
            "encrypted",
            "hash",
            "email",
            "contact",
        ] {
            assert!(!n.contains(secret), "{name} looks secret");
        }
    }
    let (po, charged, kind): (String, rust_decimal::Decimal, String) = sqlx::query_as(
        r#"select "poNumber", "amountCharged", pg_typeof("amountCharged")::text
           from finance_orders"#,
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(po, order["poNumber"].as_str().unwrap());
    assert_eq!(charged.normalize().to_string(), "50");
    assert_eq!(kind, "numeric");
}

#[tokio::test]
async fn a_read_only_role_granted_on_the_view_cannot_read_the_base_tables() {
    let app = spawn_app().await;
    app.post_order(&new_key(), &order_body()).await;
    let role = format!("finance_ro_{}", uuid::Uuid::new_v4().simple());
    let mut tx = sqlx::Acquire::begin(&app.db).await.unwrap();
    for sql in [
        format!("create role {role} nologin"),
        format!("grant select on finance_orders to {role}"),
        format!("set local role {role}"),
    ] {
        sqlx::query(&sql).execute(&mut *tx).await.unwrap();
    }
    let n: i64 = sqlx::query_scalar("select count(*) from finance_orders")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 1);
    for table in [
        "orders",
        "vouchers",
        "api_keys",
        "xoxoday_tokens",
        "upstream_exchanges",
    ] {
        let mut sp = sqlx::Acquire::begin(&mut *tx).await.unwrap();
        let denied = sqlx::query(&format!("select 1 from {table} limit 1"))
            .execute(&mut *sp)
            .await
            .unwrap_err();
        assert!(
            denied.to_string().contains("permission denied"),
            "{table}: {denied}"
        );
        sp.rollback().await.unwrap();
    }
    tx.rollback().await.unwrap();
}
