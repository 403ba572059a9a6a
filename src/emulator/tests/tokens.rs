//! OAuth: bearer checks, refresh rotation, validate, token faults.

use serde_json::{Value, json};

use super::{BALANCE, Emu, decode, start};
use crate::emulator::{Fault, FaultOp};

async fn refresh(emu: &Emu, refresh_token: &str) -> (u16, Value) {
    let body = json!({"grant_type": "refresh_token", "refresh_token": refresh_token,
                      "client_id": "emulator-client", "client_secret": "emulator-secret"});
    let resp = emu
        .http
        .post(emu.url("/v1/oauth/token/user"))
        .json(&body)
        .send()
        .await
        .unwrap();
    decode(resp).await.unwrap()
}

#[tokio::test]
async fn a_missing_or_wrong_bearer_is_refused_with_oauth_bodies() {
    let emu = start().await;
    let (status, body) = emu.api_as(None, BALANCE, json!({})).await.unwrap();
    assert_eq!(status, 401);
    assert_eq!(body["error"], json!("invalid_request"));
    let (status, body) = emu.api_as(Some("nope"), BALANCE, json!({})).await.unwrap();
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": "invalid_token", "error_description": "invalid/expired token"})
    );
    let (status, _) = emu
        .api_as(Some("emulator-access-token"), BALANCE, json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn refresh_rotates_the_pair_and_kills_the_old_one() {
    let emu = start().await;
    let (status, body) = refresh(&emu, "emulator-refresh-token").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], json!(1_296_000));
    assert_eq!(body["token_type"], json!("bearer"));
    let expiry: i64 = body["access_token_expiry"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(expiry > chrono::Utc::now().timestamp_millis());
    assert!(body["refresh_token_expiry"].is_string());
    let (access, refresh_token) = emu.h.current_tokens();
    assert_eq!(body["access_token"], json!(access));
    assert_eq!(body["refresh_token"], json!(refresh_token));

    let (status, body) = refresh(&emu, "emulator-refresh-token").await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_token"))
    );
    let old = emu
        .api_as(Some("emulator-access-token"), BALANCE, json!({}))
        .await
        .unwrap();
    assert_eq!(old.0, 401);
    let new = emu.api_as(Some(&access), BALANCE, json!({})).await.unwrap();
    assert_eq!(new.0, 200);
    assert_eq!(refresh(&emu, &refresh_token).await.0, 200);
}

#[tokio::test]
async fn refresh_refuses_bad_clients_and_grants() {
    let emu = start().await;
    let post = |body: Value| {
        let req = emu.http.post(emu.url("/v1/oauth/token/user")).json(&body);
        async move { decode(req.send().await.unwrap()).await.unwrap() }
    };
    let bad_client = json!({"grant_type": "refresh_token", "refresh_token": "emulator-refresh-token",
                            "client_id": "emulator-client", "client_secret": "wrong"});
    assert_eq!(
        post(bad_client).await.1["error"],
        json!("unauthorized_client")
    );
    let bad_grant = json!({"grant_type": "authorization_code", "refresh_token": "emulator-refresh-token",
                           "client_id": "emulator-client", "client_secret": "emulator-secret"});
    assert_eq!(post(bad_grant).await.0, 400);
    assert_eq!(
        emu.h.current_tokens().1,
        "emulator-refresh-token",
        "nothing rotated"
    );
}

#[tokio::test]
async fn an_expired_access_token_is_refused_until_refreshed() {
    let emu = start().await;
    emu.h.expire_access_token();
    let (status, body) = emu.api(BALANCE, json!({})).await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_token"))
    );
    assert_eq!(refresh(&emu, "emulator-refresh-token").await.0, 200);
    assert_eq!(emu.api(BALANCE, json!({})).await.0, 200);
}

#[tokio::test]
async fn validate_reports_the_token_and_its_remaining_lifetime() {
    let emu = start().await;
    let resp = emu
        .http
        .get(emu.url("/v1/oauth/token"))
        .bearer_auth("emulator-access-token");
    let (status, body) = decode(resp.send().await.unwrap()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["access_token"], json!("emulator-access-token"));
    assert!(body["expires_in"].as_u64().unwrap() <= 1_296_000);
    let resp = emu.http.get(emu.url("/v1/oauth/token")).bearer_auth("bad");
    assert_eq!(resp.send().await.unwrap().status().as_u16(), 401);
}

#[tokio::test]
async fn a_refresh_that_errors_after_rotating_still_rotated() {
    let emu = start().await;
    emu.h.push_fault(
        FaultOp::RefreshToken,
        Fault::ErrorAfterCreate { status: 502 },
    );
    assert_eq!(refresh(&emu, "emulator-refresh-token").await.0, 502);
    assert_ne!(emu.h.current_tokens().1, "emulator-refresh-token");
    emu.h.push_fault(
        FaultOp::RefreshToken,
        Fault::ErrorBeforeCreate { status: 503 },
    );
    let (_, current) = emu.h.current_tokens();
    assert_eq!(refresh(&emu, &current).await.0, 503);
    assert_eq!(emu.h.current_tokens().1, current, "not rotated");
}

#[tokio::test]
async fn a_sticky_refusal_rejects_even_a_freshly_refreshed_token_until_switched_off() {
    let emu = start().await;
    emu.h.refuse_tokens(true);
    let (status, _) = refresh(&emu, "emulator-refresh-token").await;
    assert_eq!(status, 200);
    let (access, _) = emu.h.current_tokens();
    let (status, body) = emu.api_as(Some(&access), BALANCE, json!({})).await.unwrap();
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_token"))
    );
    emu.h.refuse_tokens(false);
    let (status, _) = emu.api_as(Some(&access), BALANCE, json!({})).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(emu.h.refresh_calls(), 1);
}
