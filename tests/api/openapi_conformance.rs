//! The running service and `openapi.yaml` agree: for real requests covering
//! every documented operation, the status is documented for that operation,
//! the content type is one it lists, and a JSON body validates against the
//! documented schema (with `#/components/...` refs resolved in the spec).

use std::time::Duration;

use order_gateway::emulator::{Fault, FaultOp};
use serde_json::{Value, json};

use crate::helpers::{TestApp, new_key, order_body, spawn_app};

struct Spec(Value);

impl Spec {
    fn load() -> Self {
        Self(
            serde_norway::from_str(include_str!("../../openapi.yaml"))
                .expect("openapi.yaml parses"),
        )
    }

    /// Follows a local `$ref` (`#/components/...`) once, if there is one.
    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self.0.pointer(r.trim_start_matches('#')).expect(r),
            None => v,
        }
    }

    /// Panics unless `resp` is what the spec documents for `method template`.
    async fn check(&self, method: &str, template: &str, resp: reqwest::Response) -> Value {
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = resp.text().await.unwrap();
        let what = format!("{method} {template} → {status}");
        let op = &self.0["paths"][template][method];
        assert!(op.is_object(), "{what}: operation not documented");
        let documented = &op["responses"][status.to_string()];
        assert!(documented.is_object(), "{what}: status not documented");
        let content = &self.resolve(documented)["content"];
        let media = ct.split(';').next().unwrap().trim();
        let schema = &content[media]["schema"];
        assert!(
            schema.is_object(),
            "{what}: content type {media:?} not documented"
        );
        if !media.ends_with("json") {
            return Value::String(body);
        }
        let instance: Value = serde_json::from_str(&body).expect("JSON body");
        self.validate(&what, schema, &instance);
        instance
    }

    fn validate(&self, what: &str, schema: &Value, instance: &Value) {
        let mut doc = schema.clone();
        doc["components"] = self.0["components"].clone();
        let validator = jsonschema::validator_for(&doc).expect("schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{what}: {errors:?}\n{instance}");
    }
}

async fn post_raw(app: &TestApp, key: Option<&str>, ct: &str, body: &str) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url("/v1/orders"))
        .bearer_auth(&app.api_key)
        .header("content-type", ct)
        .body(body.to_owned());
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn every_answer_of_the_running_service_is_documented_in_openapi_yaml() {
    let (spec, app) = (Spec::load(), spawn_app().await);
    let orders = "/v1/orders";
    let key = new_key();

    let created = spec
        .check("post", orders, app.post_order(&key, &order_body()).await)
        .await;
    assert_eq!(created["status"], "completed");
    spec.check("post", orders, app.post_order(&key, &order_body()).await)
        .await;
    let other = json!({"productId": 1001, "denomination": 25});
    let r = app.post_order(&key, &other).await;
    assert_eq!(r.status().as_u16(), 422);
    spec.check("post", orders, r).await;

    app.emulator
        .push_fault(FaultOp::PlaceOrder, Fault::Slow(Duration::from_secs(2)));
    let slow_key = new_key();
    for _ in 0..2 {
        let r = app
            .post_order_as(&app.api_key, &slow_key, &order_body(), Some(0))
            .await;
        assert_eq!(r.status().as_u16(), 202);
        spec.check("post", orders, r).await;
    }

    for r in [
        app.post_order(&new_key(), &json!({"productId": 0})).await,
        post_raw(&app, None, "application/json", &order_body().to_string()).await,
        post_raw(&app, Some(&new_key()), "text/plain", "x").await,
        app.post_order_as("ogw_wrong", &new_key(), &order_body(), None)
            .await,
    ] {
        assert!(r.status().is_client_error());
        spec.check("post", orders, r).await;
    }

    let id = created["id"].as_str().unwrap();
    let one = "/v1/orders/{id}";
    spec.check("get", one, app.get_order(&app.api_key, id).await)
        .await;
    let absent = uuid::Uuid::new_v4().to_string();
    let r = app.get_order(&app.api_key, &absent).await;
    assert_eq!(r.status().as_u16(), 404);
    spec.check("get", one, r).await;
    spec.check("get", one, app.get_order("ogw_wrong", id).await)
        .await;

    let page = spec
        .check(
            "get",
            orders,
            app.list_orders(&app.api_key, "limit=1").await,
        )
        .await;
    assert_eq!(page["orders"].as_array().unwrap().len(), 1);
    let q = format!("idempotencyKey={key}");
    spec.check("get", orders, app.list_orders(&app.api_key, &q).await)
        .await;
    spec.check(
        "get",
        orders,
        app.list_orders(&app.api_key, "limit=0").await,
    )
    .await;

    for path in ["/healthz", "/readyz", "/metrics", "/openapi.yaml"] {
        let r = app.get(path).await;
        assert_eq!(r.status().as_u16(), 200, "{path}");
        spec.check("get", path, r).await;
    }
}

#[tokio::test]
async fn the_served_document_is_the_repository_file_byte_for_byte() {
    let app = spawn_app().await;
    let served = app.get("/openapi.yaml").await.bytes().await.unwrap();
    assert_eq!(&served[..], include_bytes!("../../openapi.yaml"));
}

#[test]
fn the_request_example_validates_against_the_request_schema() {
    let spec = Spec::load();
    let body = &spec.0["paths"]["/v1/orders"]["post"]["requestBody"]["content"]["application/json"];
    spec.validate("createOrder example", &body["schema"], &body["example"]);
}

fn fake(status: u16, body: &str) -> reqwest::Response {
    axum::http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .unwrap()
        .into()
}

#[tokio::test]
#[should_panic(expected = "status not documented")]
async fn the_checker_refuses_an_undocumented_status() {
    Spec::load().check("get", "/healthz", fake(418, "{}")).await;
}

#[tokio::test]
#[should_panic(expected = "is a required property")]
async fn the_checker_refuses_a_body_that_breaks_the_schema() {
    let resp = fake(200, r#"{"id": "x"}"#);
    Spec::load().check("get", "/v1/orders/{id}", resp).await;
}

/// Runs Python's `openapi-spec-validator` when it is installed (skipped, with
/// a note, where it is not).
#[test]
fn openapi_yaml_is_a_valid_openapi_3_1_document() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", path])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named") => {
            eprintln!("skipped: pip install openapi-spec-validator to run this check");
        }
        Ok(o) => panic!(
            "openapi.yaml is invalid:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => eprintln!("skipped: no python3"),
    }
}
