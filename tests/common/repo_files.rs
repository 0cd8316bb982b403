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
