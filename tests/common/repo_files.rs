//! Two repository files both the CLI's unit tests (src/bin/devgate/schema_tests.rs) and its
//! integration tests (tests/cli.rs) read, with one parser each: envoy/SHIPPED (the shipped files
//! that carry a devgate configuration) and envoy/demo.env (the native demos' environment).

use std::path::Path;

/// The lines of a repository list file that are neither blank nor comments, trimmed.
fn entries(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// envoy/SHIPPED: repository-relative paths.
pub fn shipped_files(root: &Path) -> Vec<String> {
    entries(&root.join("envoy/SHIPPED"))
}

/// The public point (base64url `x`, `y`) of a P-256 key made for these checks, which fills the bench
/// templates' `{{ASSERTION_X}}` and `{{ASSERTION_Y}}` (bench/run.py makes a new key every run).
const EXAMPLE_ASSERTION_POINT: (&str, &str) = (
    "Y3LZfr08tjstBuKj2UZUhWLjgAIx2oUQ8M45dbbTIHw",
    "J_pHrKNxh6dk0Ud44x3mCU6ROOJRNsS91kapG7g3_vw",
);

/// A shipped file's text with the bench templates' placeholders filled as bench/run.py fills
/// them: `secret` for `{{DEVGATE_KEY}}`, a public P-256 point for the edge assertion variants'
/// inline JWK set.
pub fn fill_bench_placeholders(text: &str, secret: &str) -> String {
    text.replace("{{DEVGATE_KEY}}", secret)
        .replace("{{ASSERTION_X}}", EXAMPLE_ASSERTION_POINT.0)
        .replace("{{ASSERTION_Y}}", EXAMPLE_ASSERTION_POINT.1)
}

/// envoy/demo.env: its `NAME='value'` lines as (name, value).
pub fn demo_env(root: &Path) -> Vec<(String, String)> {
    entries(&root.join("envoy/demo.env"))
        .iter()
        .map(|l| {
            let (name, value) = l.split_once('=').unwrap();
            let value = value
                .strip_prefix('\'')
                .unwrap()
                .strip_suffix('\'')
                .unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}
