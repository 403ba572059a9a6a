use super::*;

fn parse(body: &str) -> Result<NewOrder, Vec<FieldError>> {
    NewOrder::parse(body.as_bytes())
}

fn fields(body: &str) -> Vec<String> {
    parse(body)
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect()
}

#[test]
fn a_minimal_body_gets_the_contract_defaults() {
    let o = parse(r#"{"productId": 1001, "denomination": 50}"#).unwrap();
    assert_eq!(o.quantity, 1);
    assert!(!o.notify_receiver_email && !o.notify_admin_email);
    assert_eq!(o.denomination.to_string(), "50");
}

#[test]
fn denominations_are_read_exactly_from_number_or_string_text() {
    for (text, shown) in [
        ("12.5", "12.5"),
        ("\"12.50\"", "12.5"),
        ("0.29", "0.29"),
        ("100.00", "100"),
    ] {
        let body = format!(r#"{{"productId": 1, "denomination": {text}}}"#);
        assert_eq!(parse(&body).unwrap().denomination.to_string(), shown);
    }
}

#[test]
fn every_bad_field_is_named_at_once() {
    let body = r#"{"productId": 0, "denomination": -1, "quantity": 11, "email": "x",
        "contact": "call me", "tag": "TAG", "notifyReceiverEmail": "yes",
        "notifyAdminEmail": 1, "userMeta": [], "performOperatorValidation": 0, "extra": 1}"#
        .replace("TAG", &"t".repeat(101));
    let mut got = fields(&body);
    got.sort();
    let mut want = vec![
        "productId",
        "denomination",
        "quantity",
        "email",
        "contact",
        "tag",
        "notifyReceiverEmail",
        "notifyAdminEmail",
        "userMeta",
        "performOperatorValidation",
        "extra",
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn missing_required_fields_and_bad_documents_are_named() {
    assert_eq!(fields("{}"), ["productId", "denomination"]);
    assert_eq!(fields("[1]"), ["body"]);
    assert_eq!(fields("{"), ["body"]);
    assert_eq!(
        fields(r#"{"productId":1,"productId":2,"denomination":5}"#),
        ["body"]
    );
    for bad in ["0", "1e2", "\"abc\"", "true", "1.234", "\"NaN\""] {
        let body = format!(r#"{{"productId": 1, "denomination": {bad}}}"#);
        assert_eq!(fields(&body), ["denomination"], "{bad}");
    }
    assert_eq!(
        fields(r#"{"productId": 1.5, "denomination": 5}"#),
        ["productId"]
    );
}

#[test]
fn the_fingerprint_ignores_spelling_but_not_meaning() {
    let fp = |b: &str| parse(b).unwrap().fingerprint();
    let base = fp(r#"{"productId": 1, "denomination": 50}"#);
    assert_eq!(
        base,
        fp(r#"{"denomination": "50.00", "quantity": 1, "productId": 1, "tag": null}"#)
    );
    assert_eq!(
        base,
        fp(r#"{"productId": 1, "denomination": 50, "notifyAdminEmail": false}"#)
    );
    assert_ne!(base, fp(r#"{"productId": 1, "denomination": 25}"#));
    assert_ne!(
        base,
        fp(r#"{"productId": 1, "denomination": 50, "quantity": 2}"#)
    );
    assert_eq!(
        fp(r#"{"productId":1,"denomination":5,"userMeta":{"a":1,"b":2}}"#),
        fp(r#"{"productId":1,"denomination":5,"userMeta":{"b":2,"a":1}}"#)
    );
}

#[test]
fn contacts_and_emails_follow_the_xoxoday_shapes() {
    for ok in ["+1-4705000000", "+91-8168147851", "4705000000"] {
        let body = format!(r#"{{"productId":1,"denomination":5,"contact":"{ok}"}}"#);
        assert!(parse(&body).is_ok(), "{ok}");
    }
    for bad in ["a@b", "@b.c", "a b@c.d", "a@@b.c", "a@b..c"] {
        let body = format!(r#"{{"productId":1,"denomination":5,"email":"{bad}"}}"#);
        assert_eq!(fields(&body), ["email"], "{bad}");
    }
}

#[test]
fn nul_characters_that_postgres_cannot_store_are_client_errors() {
    assert_eq!(
        fields(r#"{"productId":1,"denomination":5,"tag":"a\u0000b"}"#),
        ["tag"]
    );
    assert_eq!(
        fields(r#"{"productId":1,"denomination":5,"userMeta":{"k":["a\u0000"]}}"#),
        ["userMeta"]
    );
    assert!(parse(r#"{"productId":1,"denomination":5,"userMeta":{"k":"a\\u0000"}}"#).is_ok());
}

#[test]
fn integers_with_a_zero_fraction_are_integers_as_in_json_schema() {
    let o = parse(r#"{"productId": 1001.0, "denomination": 50, "quantity": 5.00}"#).unwrap();
    assert_eq!((o.product_id, o.quantity), (1001, 5));
    for body in [
        r#"{"productId": 1001, "denomination": 50, "quantity": 5.5}"#,
        r#"{"productId": 1001, "denomination": 50, "quantity": "5"}"#,
    ] {
        assert_eq!(fields(body), ["quantity"], "{body}");
    }
}
