// `sqlx::migrate!` embeds crates/center/migrations at compile time; without this line a
// new migration file would not rebuild the crate, and a stale binary would lack it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
