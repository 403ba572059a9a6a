//! The layers by construction (issue 10), read from the source: `src/http`
//! never names the store, the pool and store rows never leave `src/store`,
//! and the roles of `src/orders` (and `AppState`) have no public fields.

use std::{fs, path::Path};

/// Every `.rs` file at or under `dir` (relative to the crate), with its text.
fn sources(dir: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    if root.is_file() {
        return vec![(dir.to_owned(), fs::read_to_string(&root).unwrap())];
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push((
                    path.display().to_string(),
                    fs::read_to_string(&path).unwrap(),
                ));
            }
        }
    }
    out
}

fn offenders(dir: &str, needles: &[&str]) -> Vec<String> {
    sources(dir)
        .into_iter()
        .flat_map(|(path, text)| {
            needles
                .iter()
                .filter(|n| text.contains(**n))
                .map(|n| format!("{path}: {n}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn http_names_only_the_use_cases() {
    assert_eq!(
        offenders("src/http", &["crate::store", "store::"]),
        Vec::<String>::new()
    );
}

#[test]
fn store_rows_and_the_pool_stay_in_the_store() {
    let outside: Vec<String> = ["src/orders", "src/http", "src/dev", "src/startup.rs"]
        .iter()
        .flat_map(|d| offenders(d, &["OrderRow", "to_order(", ".pool()", "pub store"]))
        .collect();
    assert_eq!(outside, Vec::<String>::new());
}

/// The field lines of `pub struct {name}` in `text`, if it is declared there
/// (a tuple struct's fields as one line).
fn fields_of(text: &str, name: &str) -> Option<Vec<String>> {
    if let Some(start) = text.find(&format!("pub struct {name}(")) {
        let body = &text[start + format!("pub struct {name}(").len()..];
        return Some(vec![body[..body.find(");").unwrap()].to_owned()]);
    }
    let start = text.find(&format!("pub struct {name} {{"))?;
    let body = &text[start..];
    let end = body.find("\n}").unwrap();
    Some(body[..end].lines().skip(1).map(str::to_owned).collect())
}

#[test]
fn roles_have_no_public_fields() {
    let roles = [
        "Intake",
        "OrderQueries",
        "WebhookIngest",
        "Dispatcher",
        "Reconciler",
        "Prober",
        "AppState",
    ];
    let files: Vec<_> = sources("src/orders")
        .into_iter()
        .chain(sources("src/http"))
        .collect();
    for role in roles {
        let fields = files
            .iter()
            .find_map(|(_, text)| fields_of(text, role))
            .unwrap_or_else(|| panic!("pub struct {role} not found"));
        let public: Vec<_> = fields
            .iter()
            .filter(|l| l.trim_start().starts_with("pub"))
            .collect();
        assert!(public.is_empty(), "{role} has public fields: {public:?}");
    }
}
