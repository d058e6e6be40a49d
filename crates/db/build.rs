//! Rebuilds the crate when a migration is added, changed or removed, so the migrations
//! embedded by `embed_migrations!` never go stale.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
