//! Compile-time behaviour of `#[derive(Session)]`: every misuse is one clear
//! error (`tests/ui/*.rs` with their `.stderr`), and every attribute compiles
//! (`tests/ui/pass/*.rs`). The cases live in the workspace's `tests/ui`; they
//! are driven from here so that trybuild builds them against this package's
//! lean dev-dependencies.
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test -p
//! carafe-macros --test ui`, then read them.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("../tests/ui/*.rs");
    t.pass("../tests/ui/pass/*.rs");
}
