//! Rebuilds the crate when a migration is added: `sqlx::migrate!()` embeds
//! `migrations/`, but cargo only tracks the files it already knew about.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
