//! Rebuild when a migration is added: `sqlx::migrate!` embeds the folders at
//! compile time and does not notice new files on its own.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
