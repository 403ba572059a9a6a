//! Reads: by id, by key, by poNumber, by status with keyset pagination;
//! only the owner sees an order (and its vouchers).

use std::collections::HashSet;

use serde_json::Value;

use crate::helpers::{assert_problem, create_key, new_key, order_body, spawn_app};

#[tokio::test]
async fn an_order_is_read_by_id_key_and_po_number_by_its_owner_only() {
    let app = spawn_app().await;
    let key = new_key();
    let created: Value = app
        .post_order(&key, &order_body())
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let po = created["poNumber"].as_str().unwrap();

    let got: Value = app.get_order(&app.api_key, id).await.json().await.unwrap();
    assert_eq!(got["id"], created["id"]);
    assert_eq!(got["vouchers"], created["vouchers"]);
    assert!(!got["vouchers"].as_array().unwrap().is_empty());

    for query in [format!("idempotencyKey={key}"), format!("poNumber={po}")] {
        let page: Value = app
            .list_orders(&app.api_key, &query)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(page["orders"].as_array().unwrap().len(), 1, "{query}");
        assert_eq!(page["orders"][0]["id"], created["id"]);
        assert!(page["nextCursor"].is_null());
    }

    let other = create_key(&app.db, "caller-b").await;
    assert_problem(app.get_order(&other, id).await, 404).await;
    let page: Value = app
        .list_orders(&other, &format!("poNumber={po}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(page["orders"].as_array().unwrap().is_empty());
    assert_problem(app.get_order(&app.api_key, "not-a-uuid").await, 404).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_problem(app.get_order(&app.api_key, &unknown).await, 404).await;
}

#[tokio::test]
async fn listing_by_status_pages_with_a_cursor_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let mut ids = HashSet::new();
    for _ in 0..5 {
        let o: Value = app
            .post_order_as(&app.api_key, &new_key(), &order_body(), Some(10))
            .await
            .json()
            .await
            .unwrap();
        ids.insert(o["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut query = "status=completed&limit=2".to_owned();
    loop {
        let page: Value = app
            .list_orders(&app.api_key, &query)
            .await
            .json()
            .await
            .unwrap();
        let orders = page["orders"].as_array().unwrap();
        assert!(orders.len() <= 2);
        seen.extend(orders.iter().map(|o| o["id"].as_str().unwrap().to_owned()));
        match page["nextCursor"].as_str() {
            Some(c) => query = format!("status=completed&limit=2&after={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), ids);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");
    let page: Value = app
        .list_orders(&app.api_key, "status=failed")
        .await
        .json()
        .await
        .unwrap();
    assert!(page["orders"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn bad_list_parameters_are_400() {
    let app = spawn_app().await;
    for q in [
        "status=lost",
        "limit=0",
        "limit=101",
        "after=%%%",
        "colour=red",
    ] {
        assert_problem(app.list_orders(&app.api_key, q).await, 400).await;
    }
}
