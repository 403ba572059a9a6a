//! Table-driven: every errorId of reference §3.3, §4.3, §5.3 and §9.3 at every
//! documented HTTP status, plus every other documented body shape.

use std::time::Duration;

use super::*;
use crate::xoxoday::{LookupOutcome, PlaceOutcome, RefreshOutcome};

/// Expected classes, written down independently of [`ERROR_IDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum K {
    Placed,
    Rejected,
    Systemic,
    Unknown,
    Limited,
    Unauthorized,
    NoFunds,
    Found,
    NotFound,
    Failed,
}
use K::*;

/// (errorId, documented HTTP statuses, placeOrder class, getOrderDetails class)
const DOCUMENTED: &[(&str, &[u16], K, K)] = &[
    ("PLE10001", &[400], Rejected, Failed),
    ("PLE10002", &[400], Unknown, Failed),
    ("PLE10003", &[400], Unknown, Failed),
    ("PLE10004", &[422], Unknown, Failed),
    ("PLE10005", &[502], Unknown, Failed),
    ("PLE10006", &[502], Unknown, Failed),
    ("PLE10007", &[422], Unknown, Failed),
    ("PLE10008", &[502], Unknown, Failed),
    ("PLE10009", &[502], Unknown, Failed),
    ("PLE10010", &[422], NoFunds, Failed),
    ("PLE10011", &[422], Unknown, Failed),
    ("PLE10012", &[502, 422], Unknown, Failed),
    ("PLE10013", &[503], Unknown, Failed),
    ("PLE10014", &[400], Systemic, Systemic),
    ("PLE10015", &[400, 403], Rejected, Failed),
    ("PLE10016", &[404], Unknown, NotFound),
    ("PLE10017", &[404], Unknown, Failed),
    ("PLE10018", &[400, 404], Rejected, Failed),
    ("PLE10019", &[401], Rejected, Failed),
    ("PLE10020", &[404, 502], Unknown, Failed),
    ("PLE10021", &[404], Unknown, Failed),
    ("PLE10022", &[404], Unknown, Failed),
    ("PLE10023", &[502], Unknown, Failed),
    ("PLE10024", &[502], Unknown, Failed),
    ("PLE10025", &[502], Unknown, Failed),
    ("PLE10026", &[404], Unknown, Failed),
    ("PLE10027", &[404], Unknown, Failed),
    ("PLE10028", &[404], Unknown, Failed),
    ("PLE10029", &[404], Unknown, Failed),
    ("PLE10030", &[404], Unknown, Failed),
    ("PLE10031", &[400], Unknown, Failed),
    ("PLE10032", &[400], Unknown, Failed),
    ("PLE10033", &[400], Unknown, Failed),
    ("PLE10034", &[502], Unknown, Failed),
    ("PLE10035", &[502], Unknown, Failed),
    ("PLE10036", &[404], Unknown, Failed),
    ("PLE10041", &[409], Rejected, Failed),
    ("PLE10042", &[404], Rejected, Failed),
    ("PIPE10013", &[401], Unauthorized, Unauthorized),
    ("PIPE10015", &[401], Systemic, Systemic),
    ("PIPE10016", &[401], Systemic, Systemic),
    ("PIPE10017", &[401], Systemic, Systemic),
];

fn http(status: u16, body: &str) -> Answer<'_> {
    Answer::Http {
        status,
        retry_after: None,
        body,
    }
}

fn p(answer: Answer<'_>) -> K {
    match place(answer) {
        PlaceOutcome::Placed(_) => Placed,
        PlaceOutcome::Rejected(_) => Rejected,
        PlaceOutcome::Systemic(_) => Systemic,
        PlaceOutcome::Unknown { .. } => Unknown,
        PlaceOutcome::RateLimited { .. } => Limited,
        PlaceOutcome::Unauthorized(_) => Unauthorized,
        PlaceOutcome::InsufficientBalance(_) => NoFunds,
    }
}

fn l(answer: Answer<'_>) -> K {
    match lookup(answer) {
        LookupOutcome::Found(_) => Found,
        LookupOutcome::NotFound(_) => NotFound,
        LookupOutcome::RateLimited { .. } => Limited,
        LookupOutcome::Unauthorized(_) => Unauthorized,
        LookupOutcome::Systemic(_) => Systemic,
        LookupOutcome::Failed { .. } => Failed,
    }
}

fn error_body(status: u16, id: &str) -> String {
    format!(r#"{{"code":{status},"errorId":"{id}","errorInfo":"as documented","error":"Eg: x"}}"#)
}

#[test]
fn every_documented_error_id_classifies_the_same_at_every_documented_status() {
    for &(id, statuses, place_class, lookup_class) in DOCUMENTED {
        for &status in statuses {
            let body = error_body(status, id);
            assert_eq!(p(http(status, &body)), place_class, "place {id} {status}");
            assert_eq!(l(http(status, &body)), lookup_class, "lookup {id} {status}");
        }
    }
}

#[test]
fn the_table_and_the_documented_list_name_the_same_ids() {
    let documented: Vec<_> = DOCUMENTED.iter().map(|d| d.0).collect();
    let table: Vec<_> = ERROR_IDS.iter().map(|d| d.0).collect();
    assert_eq!(documented, table);
}

#[test]
fn a_definite_error_id_with_a_non_4xx_status_is_unknown() {
    for (id, status) in [("PLE10018", 500), ("PLE10001", 502), ("PIPE10017", 503)] {
        assert_eq!(p(http(status, &error_body(status, id))), Unknown, "{id}");
    }
    assert_eq!(p(http(200, &error_body(400, "PLE10018"))), Unknown);
    assert_eq!(l(http(500, &error_body(500, "PLE10016"))), Failed);
    assert_eq!(l(http(200, &error_body(404, "PLE10016"))), Failed);
}

#[test]
fn unrecognised_answers_are_unknown() {
    let cases: &[(u16, &str)] = &[
        (400, &error_body(400, "PLE19999")),
        (
            422,
            r#"{"code":422,"errorId":"PLE10004","errorInfo":"Failed to validate client's externalOrderId","error":"The validation of poNumber has failed."}"#,
        ),
        (500, r#"{"code":500,"error":"Eg: Internal server error"}"#),
        (502, "<html>Bad Gateway</html>"),
        (503, ""),
        (504, "{}"),
        (
            400,
            r#"{"error":"Bad request","message":"Invalid request body"}"#,
        ),
        (404, "Not Found"),
        (200, ""),
        (200, "not json"),
        (
            200,
            r#"{"data":{"placeOrder":{"status":0,"data":{"orderId":1}}}}"#,
        ),
        (200, r#"{"data":{"placeOrder":{"status":1}}}"#),
        (
            200,
            r#"{"data":{"placeOrder":{"status":1,"data":{"orderTotal":1}}}}"#,
        ),
        (
            201,
            r#"{"data":{"getOrders":{"status":1,"data":{"orderId":1}}}}"#,
        ),
        (302, ""),
    ];
    for (status, body) in cases {
        assert_eq!(p(http(*status, body)), Unknown, "{status} {body}");
        assert_eq!(l(http(*status, body)), Failed, "{status} {body}");
    }
    for err in [
        "timeout: operation timed out",
        "connect: refused",
        "body: reset",
    ] {
        assert_eq!(p(Answer::Transport(err)), Unknown);
        assert_eq!(l(Answer::Transport(err)), Failed);
    }
}

#[test]
fn every_documented_success_body_is_placed_or_found() {
    for body in [
        include_str!("../fixtures/place_order_workflow.json"),
        include_str!("../fixtures/place_order_spec.json"),
        include_str!("../fixtures/place_order_quick_start.json"),
        include_str!("../fixtures/place_order_delayed_lounge.json"),
    ] {
        assert_eq!(p(http(200, body)), Placed);
    }
    for body in [
        include_str!("../fixtures/order_details_docs.json"),
        include_str!("../fixtures/order_details_adr.json"),
    ] {
        assert_eq!(l(http(200, body)), Found);
    }
}

#[test]
fn rate_limits_are_recognised_by_body_at_any_status() {
    let listed = r#"{"errors":[{"message":"auth.request_limit_exceeded","penaltySeconds":17}]}"#;
    for status in [429, 200, 400, 403, 500, 503] {
        let PlaceOutcome::RateLimited { penalty } = place(http(status, listed)) else {
            panic!("{status} not rate limited")
        };
        assert_eq!(penalty, Duration::from_secs(17));
        assert_eq!(l(http(status, listed)), Limited);
    }
    let bare = r#"{"message":"auth.request_limit_exceeded"}"#;
    let PlaceOutcome::RateLimited { penalty } = place(http(429, bare)) else {
        panic!("bare message not rate limited")
    };
    assert_eq!(penalty, DEFAULT_PENALTY);
    let with_header = Answer::Http {
        status: 429,
        retry_after: Some(Duration::from_secs(5)),
        body: "",
    };
    let PlaceOutcome::RateLimited { penalty } = place(with_header) else {
        panic!("plain 429 not rate limited")
    };
    assert_eq!(penalty, Duration::from_secs(5));
}

#[test]
fn token_problems_are_unauthorized() {
    let cases = [
        (
            401,
            r#"{"error":"invalid_token","error_description":"invalid/expired token"}"#,
        ),
        (
            400,
            r#"{"error":"invalid_request","error_description":"missing/invalid parameters authorization header"}"#,
        ),
        (
            401,
            r#"{"success":0,"error_message_id":"auth.token_error"}"#,
        ),
        (
            403,
            r#"{"success":0,"error_message_id":"auth.token_error"}"#,
        ),
        (401, r#"{"error":"Unauthorized"}"#),
        (401, ""),
    ];
    for (status, body) in cases {
        assert_eq!(p(http(status, body)), Unauthorized, "{status} {body}");
        assert_eq!(l(http(status, body)), Unauthorized, "{status} {body}");
    }
    let server_side = r#"{"error":"invalid_token"}"#;
    assert_eq!(p(http(500, server_side)), Unknown);
}

fn r(answer: Answer<'_>) -> &'static str {
    match refresh(answer) {
        RefreshOutcome::Refreshed(_) => "refreshed",
        RefreshOutcome::Refused(_) => "refused",
        RefreshOutcome::RateLimited { .. } => "limited",
        RefreshOutcome::Failed { .. } => "failed",
    }
}

#[test]
fn refresh_answers_classify() {
    let ok = include_str!("../fixtures/token_auth_spec.json");
    let cases: &[(u16, &str, &str)] = &[
        (200, ok, "refreshed"),
        (200, include_str!("../fixtures/token_adr.json"), "refreshed"),
        (200, "{}", "failed"),
        (200, "", "failed"),
        (401, r#"{"error":"Unauthorized"}"#, "refused"),
        (
            401,
            r#"{"error":"invalid_token","error_description":"invalid/expired token"}"#,
            "refused",
        ),
        (400, r#"{"error":"invalid_grant"}"#, "refused"),
        (
            401,
            r#"{"success":0,"error_message_id":"auth.token_error"}"#,
            "refused",
        ),
        (401, &error_body(401, "PIPE10017"), "refused"),
        (400, &error_body(400, "PLE10014"), "refused"),
        (400, &error_body(400, "PLE10001"), "failed"),
        (
            429,
            r#"{"message":"auth.request_limit_exceeded"}"#,
            "limited",
        ),
        (
            400,
            r#"{"message":"auth.request_limit_exceeded"}"#,
            "limited",
        ),
        (500, r#"{"error":"invalid_token"}"#, "failed"),
        (502, "<html>", "failed"),
        (401, "", "failed"),
    ];
    for (status, body, want) in cases {
        assert_eq!(r(http(*status, body)), *want, "{status} {body}");
    }
    assert_eq!(r(Answer::Transport("connect: refused")), "failed");
}

#[test]
fn reasons_never_show_secrets_from_the_body() {
    let body = r#"{"code":500,"vouchers":[{"voucherCode":"SECRET-CODE","pin":"4321"}]}"#;
    let PlaceOutcome::Unknown { reason } = place(http(500, body)) else {
        panic!("not unknown")
    };
    assert!(
        !reason.contains("SECRET-CODE") && !reason.contains("4321"),
        "{reason}"
    );
}

#[test]
fn the_published_error_examples_classify_as_their_error_ids_say() {
    let cases: &[(u16, &str, K)] = &[
        (
            400,
            r#"{"code":400,"errorId":"PLE10001","errorInfo":"Validation error in place order","error":"Eg: Bad request"}"#,
            Rejected,
        ),
        (
            401,
            r#"{"code":401,"errorId":"PLE10019","errorInfo":"Clients are not allowed to place international orders","error":"Eg: Unauthorized, Client is unauthorized for international orders"}"#,
            Rejected,
        ),
        (
            403,
            r#"{"code":403,"errorId":"PLE10015","errorInfo":"Amazon KYC is not approved","error":"Eg: Forbidden, Ordering Amazon voucher requires client KYC to be approved"}"#,
            Rejected,
        ),
        (
            404,
            r#"{"code":404,"errorId":"PLE10018","errorInfo":"Invalid denomination for the product","error":"Eg: Not found, ProductId and Denomination Combination Not Found, Order Details Not Found"}"#,
            Rejected,
        ),
        (
            422,
            r#"{"code":422,"errorId":"PLE10012","errorInfo":"Failed to process order","error":"Eg: Unprocessable Entity, Order Process Failed due to Unavailability of Vouchers"}"#,
            Unknown,
        ),
        (
            409,
            r#"{"code":409,"errorId":"PLE10041","errorInfo":"Clients are not allowed to place more than 10 Qty","error":"Order Failed, as per your current setup you are not allowed to add more than 10 qty. Plz contact cs@xoxoday.com to get more clarity"}"#,
            Rejected,
        ),
        (
            502,
            r#"{"code":502,"errorId":"PLE10020","errorInfo":"Failed to get currency details for the client","error":"Eg: Bad Gateway, Currency API did not return data"}"#,
            Unknown,
        ),
        (
            500,
            r#"{"code":500,"error":"Eg: Internal server error"}"#,
            Unknown,
        ),
        (
            401,
            r#"{"code":401,"errorId":"PIPE10013","errorInfo":"Plum Pro APIs: Invalid authorization header","error":"Eg: invalid authorization header!"}"#,
            Unauthorized,
        ),
        (
            404,
            r#"{"code":404,"errorId":"PLE10030","errorInfo":"Failed to find vouchers.","error":"No Vouchers Found"}"#,
            Unknown,
        ),
        (
            502,
            r#"{"code":502,"errorId":"PLE10023","errorInfo":"Failed to get client's balance","error":"Eg: Bad Gateway"}"#,
            Unknown,
        ),
    ];
    for (status, body, want) in cases {
        assert_eq!(p(http(*status, body)), *want, "{body}");
    }
    let rejected = place(http(cases[3].0, cases[3].1));
    let PlaceOutcome::Rejected(e) = rejected else {
        panic!("not rejected")
    };
    assert_eq!(e.http_status, 404);
    assert_eq!(
        e.error_info.as_deref(),
        Some("Invalid denomination for the product")
    );
    assert!(
        e.error
            .unwrap()
            .as_str()
            .unwrap()
            .starts_with("Eg: Not found")
    );
}

#[test]
fn insufficient_balance_is_recognised_by_error_id_or_text_on_4xx_only() {
    let documented = r#"{"code":422,"errorId":"PLE10010","errorInfo":"Failed to redeem points","error":"Insufficient balance in the account"}"#;
    assert_eq!(p(http(422, documented)), NoFunds);
    let other_id =
        r#"{"code":400,"errorId":"PLE10099","errorInfo":"Insufficient Balance","error":"x"}"#;
    assert_eq!(p(http(400, other_id)), NoFunds);
    let oauth = r#"{"error":"invalid_request","error_description":"Your balance is low"}"#;
    assert_eq!(p(http(400, oauth)), NoFunds);
    assert_eq!(p(http(402, "insufficient funds")), NoFunds);
    // A 5xx proves nothing, whatever it says.
    assert_eq!(p(http(502, &error_body(502, "PLE10010"))), Unknown);
    assert_eq!(p(http(500, "insufficient balance")), Unknown);
    // A lookup that says so is just a failed read.
    assert_eq!(l(http(422, documented)), Failed);
}

#[test]
fn every_error_id_marker_of_the_balance_rule_is_classed_so_in_the_table() {
    for m in INSUFFICIENT_BALANCE {
        if let BalanceMarker::ErrorId(id) = m {
            assert_eq!(error_class(id), ErrorClass::InsufficientBalance, "{id}");
        }
    }
}
