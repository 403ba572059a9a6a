//! `openapi.yaml` describes what the service really answers: responses are
//! validated against its schemas, and every route it lists is served.

use serde_json::{Value, json};

use crate::helpers::{new_key, order_body, spawn_app};

fn spec() -> Value {
    serde_norway::from_str(include_str!("../../openapi.yaml")).expect("openapi.yaml parses")
}

fn assert_matches(schema_name: &str, instance: &Value) {
    let spec = spec();
    let schema = json!({
        "$ref": format!("#/components/schemas/{schema_name}"),
        "components": spec["components"],
    });
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{schema_name}: {errors:?}\n{instance}");
}

#[tokio::test]
async fn orders_lists_and_problems_match_the_documented_schemas() {
    let app = spawn_app().await;
    let completed: Value = app
        .post_order(&new_key(), &order_body())
        .await
        .json()
        .await
        .unwrap();
    assert_matches("Order", &completed);
    let failed: Value = app
        .post_order(
            &new_key(),
            &json!({"productId": 1001, "denomination": "12.5"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(failed["status"], "failed");
    assert_matches("Order", &failed);
    let page: Value = app
        .list_orders(&app.api_key, "limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_matches("OrderList", &page);
    let problem: Value = app
        .post_order(&new_key(), &json!({"productId": 0}))
        .await
        .json()
        .await
        .unwrap();
    assert_matches("Problem", &problem);
    assert_matches("OrderRequest", &order_body());
}

#[test]
fn every_served_route_is_documented() {
    let spec = spec();
    for path in [
        "/v1/orders",
        "/v1/orders/{id}",
        "/healthz",
        "/readyz",
        "/openapi.yaml",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from openapi.yaml"
        );
    }
}
