//! Marks the PostgreSQL test variants as ignored when there is no PostgreSQL to run
//! them on, so `cargo test` counts them as ignored instead of passing them unrun.
//! They run when `TEST_DATABASE_URL` is set, and in CI (`CI=true`), where a missing
//! PostgreSQL fails them. Changing either variable rebuilds the crate.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=TEST_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rustc-check-cfg=cfg(postgres_tests)");
    let url = std::env::var("TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty());
    let ci = std::env::var("CI").is_ok_and(|ci| ci == "true");
    if url || ci {
        println!("cargo::rustc-cfg=postgres_tests");
    }
}
