//! The `devgate` binary as a user runs it: files, exit codes, stdin.

// Test helpers outside #[test] functions: clippy.toml's allow-*-in-tests does not cover them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// envoy/SHIPPED and envoy/demo.env, parsed as src/bin/devgate/schema_tests.rs parses them.
#[path = "common/repo_files.rs"]
mod repo_files;

const BIN: &str = env!("CARGO_BIN_EXE_devgate");

/// A fresh directory under Cargo's per-target temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("devgate-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn devgate(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn devgate_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn keygen(dir: &std::path::Path) -> String {
    let path = dir.join("key");
    let o = devgate(&["keygen", "--out", path.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{o:?}");
    path.to_str().unwrap().to_owned()
}

#[test]
fn keygen_prints_32_bytes_base64url() {
    let a = devgate(&["keygen"]);
    let b = devgate(&["keygen"]);
    assert_eq!(code(&a), 0);
    let key = stdout(&a);
    assert_eq!(key.len(), 44);
    assert!(key.ends_with('\n'));
    assert!(key
        .trim_end()
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    assert_ne!(key, stdout(&b));
}

#[cfg(unix)]
#[test]
fn keygen_out_is_private_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("keygen");
    let path = keygen(&dir);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let secret = std::fs::read_to_string(&path).unwrap();
    assert_eq!(secret.trim_end().len(), 43);
    // Nothing about the secret on stdout.
    let again = devgate(&["keygen", "--out", &path]);
    assert_eq!(code(&again), 3);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), secret);
    let missing_dir = dir.join("no/such/dir/key");
    assert_eq!(
        code(&devgate(&[
            "keygen",
            "--out",
            missing_dir.to_str().unwrap()
        ])),
        3
    );
}

#[test]
fn mint_verify_round_trip() {
    let dir = scratch("roundtrip");
    let key = keygen(&dir);
    let o = devgate(&[
        "mint",
        "--sub",
        "Alice Smith",
        "--ttl",
        "8h",
        "--key-file",
        &key,
    ]);
    assert_eq!(code(&o), 0, "{o:?}");
    let token = stdout(&o).trim().to_owned();
    let secret = std::fs::read_to_string(&key).unwrap();
    assert!(!token.contains(secret.trim()));

    let o = devgate(&["verify", &token, "--key-file", &key]);
    assert_eq!(code(&o), 0, "{o:?}");
    let claims: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(claims["sub"], "Alice Smith");
    assert_eq!(claims["dgp"], "developer");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        8 * 3600
    );

    // Token on stdin, with a trailing newline as `echo` writes it.
    let o = devgate_stdin(&["verify", "-", "--key-file", &key], &format!("{token}\n"));
    assert_eq!(code(&o), 0, "{o:?}");

    // Session token bound to a cookie and a peer.
    let o = devgate(&[
        "mint",
        "--sub",
        "bob",
        "--ttl",
        "30m",
        "--key-file",
        &key,
        "--kid",
        "2024-06",
        "--purpose",
        "session",
        "--cookie",
        "devgate_token",
        "--bind-ip",
        "192.0.2.1",
    ]);
    assert_eq!(code(&o), 0, "{o:?}");
    let session = stdout(&o).trim().to_owned();
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            session.as_str(),
            "--key-file",
            key.as_str(),
            "--kid-name",
            "2024-06",
        ];
        args.extend_from_slice(extra);
        devgate(&args)
    };
    assert_eq!(
        code(&verify(&[
            "--purpose",
            "session",
            "--cookie",
            "devgate_token",
            "--peer",
            "192.0.2.1"
        ])),
        0
    );
    let o = verify(&[
        "--purpose",
        "session",
        "--cookie",
        "other",
        "--peer",
        "192.0.2.1",
    ]);
    assert_eq!(
        (code(&o), stdout(&o)),
        (1, "invalid: wrong_cookie\n".to_owned())
    );
    let o = verify(&[
        "--purpose",
        "session",
        "--cookie",
        "devgate_token",
        "--peer",
        "192.0.2.2",
    ]);
    assert_eq!(stdout(&o), "invalid: wrong_peer\n");
    let o = verify(&[]);
    assert_eq!(stdout(&o), "invalid: wrong_purpose\n");
}

#[test]
fn tampered_and_foreign_tokens_exit_1() {
    let dir = scratch("tamper");
    let key = keygen(&dir);
    let other = dir.join("other");
    assert_eq!(
        code(&devgate(&["keygen", "--out", other.to_str().unwrap()])),
        0
    );
    let token = stdout(&devgate(&[
        "mint",
        "--sub",
        "alice",
        "--ttl",
        "1h",
        "--key-file",
        &key,
    ]))
    .trim()
    .to_owned();
    let (head, sig) = token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &sig[1..]);
    let o = devgate(&["verify", &tampered, "--key-file", &key]);
    assert_eq!(
        (code(&o), stdout(&o)),
        (1, "invalid: bad_signature\n".to_owned())
    );
    let o = devgate(&["verify", &token, "--key-file", other.to_str().unwrap()]);
    assert_eq!(
        (code(&o), stdout(&o)),
        (1, "invalid: bad_signature\n".to_owned())
    );
    let o = devgate(&["verify", "not-a-token", "--key-file", &key]);
    assert_eq!(
        (code(&o), stdout(&o)),
        (1, "invalid: malformed\n".to_owned())
    );
    let o = devgate(&["verify", &token, "--key-file", &key, "--now", "99999999999"]);
    assert_eq!((code(&o), stdout(&o)), (1, "invalid: expired\n".to_owned()));
}

#[test]
fn usage_errors_exit_2() {
    let dir = scratch("usage");
    let key = keygen(&dir);
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["keygen", "extra"],
        vec!["keygen", "--bogus"],
        vec!["mint"],
        vec!["mint", "--sub", "alice", "--key-file", &key],
        vec!["mint", "--sub", "alice", "--ttl", "8x", "--key-file", &key],
        vec!["mint", "--sub", "alice", "--ttl", "0s", "--key-file", &key],
        vec![
            "mint",
            "--sub",
            "alice\u{7f}",
            "--ttl",
            "1h",
            "--key-file",
            &key,
        ],
        vec![
            "mint",
            "--sub",
            "alice",
            "--ttl",
            "1h",
            "--key-file",
            &key,
            "--purpose",
            "session",
        ],
        vec![
            "mint",
            "--sub",
            "alice",
            "--ttl",
            "1h",
            "--key-file",
            &key,
            "--bind-ip",
            "10.0.0.300",
        ],
        vec![
            "mint",
            "--sub",
            "alice",
            "--sub",
            "bob",
            "--ttl",
            "1h",
            "--key-file",
            &key,
        ],
        vec!["verify", "--key-file", &key],
        vec!["verify", "a", "b", "--key-file", &key],
        vec!["verify", "a.b.c"],
        vec!["verify", "a.b.c", "--key-file", &key, "--leeway", "-1"],
        vec!["check-config"],
        vec!["schema", "extra"],
    ] {
        let o = devgate(&args);
        assert_eq!(code(&o), 2, "{args:?}: {o:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn io_errors_exit_3_and_bad_keys_exit_1() {
    let dir = scratch("io");
    let missing = dir.join("missing");
    let o = devgate(&[
        "mint",
        "--sub",
        "a",
        "--ttl",
        "1h",
        "--key-file",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 3);
    assert_eq!(
        code(&devgate(&["check-config", missing.to_str().unwrap()])),
        3
    );
    let bad = dir.join("bad");
    std::fs::write(&bad, "c2hvcnQ\n").unwrap();
    let o = devgate(&[
        "mint",
        "--sub",
        "a",
        "--ttl",
        "1h",
        "--key-file",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least 32"));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("c2hvcnQ"));
}

#[test]
fn help_exits_0() {
    for args in [
        vec!["--help"],
        vec!["help"],
        vec!["mint", "--help"],
        vec!["verify", "-h"],
        vec!["mint-key", "--help"],
        vec!["keygen", "--help"],
        vec!["check-config", "--help"],
        vec!["schema", "--help"],
    ] {
        let o = devgate(&args);
        assert_eq!(code(&o), 0, "{args:?}");
        assert!(stdout(&o).starts_with("usage: devgate"), "{args:?}");
    }
}

#[test]
fn check_config_reports() {
    let dir = scratch("config");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let o = devgate(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{o:?}");
    assert!(!String::from_utf8_lossy(&o.stderr).is_empty());
}

#[test]
fn check_config_reads_envoy_and_istio_yaml() {
    let dir = scratch("yaml");
    // The shipped demo config is valid.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/envoy/envoy.yaml");
    let o = devgate(&["check-config", shipped]);
    assert_eq!(code(&o), 0, "{o:?}");
    assert!(stdout(&o).contains("ok: Envoy Wasm plugin \"devgate\""));

    // A secret_env served by the VM's environment_variables is found; a bad field is named.
    let envoy = dir.join("envoy.yaml");
    let secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    let good = format!(
        r#"
http_filters:
- name: envoy.filters.http.wasm
  typed_config:
    config:
      name: devgate
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: '{{"keys": [{{"id": "k1", "secret_env": "DEVGATE_K1"}}], "tokens": {{}}}}'
      vm_config:
        runtime: envoy.wasm.runtime.v8
        environment_variables:
          key_values: {{DEVGATE_K1: "{secret}"}}
"#
    );
    std::fs::write(&envoy, &good).unwrap();
    let o = devgate(&["check-config", envoy.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{o:?}");
    std::fs::write(&envoy, good.replace("DEVGATE_K1: ", "OTHER: ")).unwrap();
    let o = devgate(&["check-config", envoy.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    let err = String::from_utf8(o.stderr.clone()).unwrap() + &stdout(&o);
    assert!(err.contains("keys[0].secret_env"), "{err}");
    assert!(!err.contains(secret), "never print a secret: {err}");
    assert!(
        err.contains("is not set in the Wasm VM (vm_config.environment_variables)"),
        "{err}"
    );

    // An Istio WasmPlugin: pluginConfig is YAML, not a string.
    let istio = dir.join("wasmplugin.yaml");
    std::fs::write(
        &istio,
        r#"
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: devgate}
spec:
  phase: AUTHN
  pluginConfig:
    network: {allow: ["10.0.0.1/8"]}
"#,
    )
    .unwrap();
    let o = devgate(&["check-config", istio.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    let err = String::from_utf8(o.stderr.clone()).unwrap() + &stdout(&o);
    assert!(
        err.contains("WasmPlugin \"devgate\"") && err.contains("network.allow[0]"),
        "{err}"
    );

    // YAML without any plugin is an error, not a silent ok.
    std::fs::write(&envoy, "admin: {}\n").unwrap();
    assert_eq!(
        code(&devgate(&["check-config", envoy.to_str().unwrap()])),
        1
    );
}

/// The native dynamic module's filter and Envoy Gateway's EnvoyExtensionPolicy are read too: a bad
/// field is named with where it was found.
#[test]
fn check_config_reads_native_and_envoy_gateway_yaml() {
    let dir = scratch("yaml-native-gateway");
    let native = dir.join("envoy-native.yaml");
    std::fs::write(
        &native,
        r#"
http_filters:
- name: envoy.filters.http.dynamic_modules
  typed_config:
    dynamic_module_config: {module: {local: {filename: libdevgate.so}}}
    filter_name: devgate
    filter_config:
      "@type": type.googleapis.com/google.protobuf.StringValue
      value: '{"network": {"allow": ["10.0.0.1/8"]}}'
"#,
    )
    .unwrap();
    let o = devgate(&["check-config", native.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{o:?}");
    let err = String::from_utf8(o.stderr.clone()).unwrap() + &stdout(&o);
    assert!(
        err.contains("Envoy dynamic module \"devgate\"") && err.contains("network.allow[0]"),
        "{err}"
    );

    let gateway = dir.join("eep.yaml");
    std::fs::write(
        &gateway,
        r#"
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyExtensionPolicy
metadata: {name: devgate}
spec:
  wasm:
  - name: devgate
    config:
      protect: ["/_debug/"]
  - name: devgate-2
    config:
      tokens: {cokie: x}
"#,
    )
    .unwrap();
    let o = devgate(&["check-config", gateway.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{o:?}");
    let out = stdout(&o);
    let err = String::from_utf8(o.stderr.clone()).unwrap();
    assert!(
        out.contains("ok: EnvoyExtensionPolicy \"devgate\" wasm[0]"),
        "{out}"
    );
    assert!(
        err.contains("EnvoyExtensionPolicy \"devgate\" wasm[1]") && err.contains("tokens"),
        "{err}"
    );
}

#[test]
fn mint_key_prints_prefixed_keys_and_refuses_contradictions() {
    let dir = scratch("mintkey");
    let key = keygen(&dir);
    let common = [
        "--org",
        "acme",
        "--project",
        "web",
        "--product",
        "maps",
        "--key-file",
        key.as_str(),
    ];
    let mut args = vec!["mint-key", "--kind", "public", "--referer", "*.acme.com"];
    args.extend(common);
    let o = devgate(&args);
    assert_eq!(code(&o), 0, "{o:?}");
    assert!(stdout(&o).starts_with("dgpk_"));
    let mut args = vec![
        "mint-key",
        "--kind",
        "private",
        "--write",
        "--ip",
        "10.0.0.0/8",
        "--id",
        "etl-1",
    ];
    args.extend(common);
    let o = devgate(&args);
    assert_eq!(code(&o), 0, "{o:?}");
    assert!(stdout(&o).starts_with("dgsk_"));
    let mut args = vec!["mint-key", "--kind", "public", "--write"];
    args.extend(common);
    assert_eq!(code(&devgate(&args)), 2, "a public key cannot write");
    let mut args = vec!["mint-key", "--kind", "secret"];
    args.extend(common);
    assert_eq!(code(&devgate(&args)), 2);
}

/// A `secret_env` or `users_env` variable that is not set is reported with the place its host
/// reads it from: the Wasm VM's environment, Envoy's process environment for the native module,
/// the resource's own field for Istio, and for a bare JSON file (no host named) both.
#[test]
fn check_config_names_where_each_host_reads_its_variables() {
    let dir = scratch("env-place");
    let unset = "DEVGATE_CLI_TEST_NEVER_SET";
    let json = format!(r#"{{"keys": [{{"id": "k1", "secret_env": "{unset}"}}], "tokens": {{}}}}"#);
    let cases = [
        (
            "native.yaml",
            format!(
                r#"
http_filters:
- name: envoy.filters.http.dynamic_modules
  typed_config:
    dynamic_module_config: {{module: {{local: {{filename: libdevgate.so}}}}}}
    filter_name: devgate
    filter_config:
      "@type": type.googleapis.com/google.protobuf.StringValue
      value: '{json}'
"#
            ),
            "is not set in Envoy's process environment (the native module's",
        ),
        (
            "wasm.yaml",
            format!(
                r#"
http_filters:
- name: envoy.filters.http.wasm
  typed_config:
    config:
      name: devgate
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: '{json}'
      vm_config:
        runtime: envoy.wasm.runtime.v8
"#
            ),
            "is not set in the Wasm VM (vm_config.environment_variables)",
        ),
        (
            "istio.yaml",
            format!(
                r#"
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {{name: devgate}}
spec:
  pluginConfig: {json}
"#
            ),
            "is not set in the Wasm VM (spec.vmConfig.env)",
        ),
        (
            "config.json",
            json.clone(),
            "is not set in the environment of devgate check-config",
        ),
    ];
    for (name, text, place) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let o = Command::new(BIN)
            .args(["check-config", path.to_str().unwrap()])
            .env_remove(unset)
            .output()
            .unwrap();
        assert_eq!(code(&o), 1, "{name}: {o:?}");
        let err = String::from_utf8(o.stderr).unwrap();
        assert!(
            err.contains(&format!(
                "field `keys[0].secret_env`: environment variable {unset} {place}"
            )),
            "{name}: {err}"
        );
        assert!(
            !err.contains("Wasm VM") || !name.starts_with("native"),
            "{name}: {err}"
        );
    }
}

#[test]
fn schema_prints_the_shipped_schema() {
    let o = devgate(&["schema"]);
    assert_eq!(code(&o), 0, "{o:?}");
    let printed = stdout(&o);
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.schema.json");
    assert!(
        std::fs::read_to_string(shipped).unwrap_or_default() == printed,
        "docs/config.schema.json is stale: run `target/release/devgate schema > docs/config.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    assert!(printed.ends_with("}\n"));
    // The configuration reference, rendered from the same schema.
    let o = devgate(&["schema", "--markdown"]);
    assert_eq!(code(&o), 0, "{o:?}");
    let reference = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config-reference.md");
    assert!(
        std::fs::read_to_string(reference).unwrap_or_default() == stdout(&o),
        "docs/config-reference.md is stale: run `make schema`"
    );
    assert!(stdout(&o).starts_with("# devgate configuration reference\n"));
}

/// A base64url secret for the examples' `secret_env` variables (32 bytes, not a real key).
const EXAMPLE_SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
/// htpasswd for the examples' `users_env` (bcrypt cost 5).
const EXAMPLE_USERS: &str = "alice:$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK";

/// check-config with the environment the examples expect from their deployment: Istio's
/// `valueFrom: HOST` variables, docs/config.md's `secret_env`s and the native demos' process
/// environment (envoy/demo.env).
fn check_example(path: &str) -> Output {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new(BIN)
        .args(["check-config", path])
        .env("DEVGATE_K1", EXAMPLE_SECRET)
        .env("DEVGATE_K2", EXAMPLE_SECRET)
        .env("DEVGATE_USERS", EXAMPLE_USERS)
        .envs(repo_files::demo_env(root))
        .output()
        .unwrap()
}

/// Every file of envoy/SHIPPED (the list src/bin/devgate/schema_tests.rs checks against the
/// schema, and keeps complete) passes `devgate check-config`.
#[test]
fn check_config_accepts_every_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = scratch("examples");
    let files = repo_files::shipped_files(root);
    assert!(
        files.iter().any(|f| f == "envoy/envoy-native.yaml"),
        "{files:?}"
    );
    for (i, file) in files.iter().enumerate() {
        // bench/run.py fills the templates' {{DEVGATE_KEY}} with a fresh key, {{ASSERTION_X}}
        // and {{ASSERTION_Y}} with a fresh P-256 key's point.
        let text = repo_files::fill_bench_placeholders(
            &std::fs::read_to_string(root.join(file)).unwrap(),
            EXAMPLE_SECRET,
        );
        let copy = dir.join(format!("{i}-{}", file.rsplit('/').next().unwrap()));
        std::fs::write(&copy, text).unwrap();
        let o = check_example(copy.to_str().unwrap());
        assert_eq!(code(&o), 0, "{file}: {o:?}");
        assert!(stdout(&o).starts_with("ok: "), "{file}");
    }
    // docs/config.md's example, as a JSON file.
    let doc = std::fs::read_to_string(root.join("docs/config.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```json\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(!blocks.is_empty());
    for (i, json) in blocks.iter().enumerate() {
        let path = dir.join(format!("config-md-{i}.json"));
        std::fs::write(&path, json).unwrap();
        let o = check_example(path.to_str().unwrap());
        assert_eq!(
            (code(&o), stdout(&o)),
            (0, "ok\n".to_owned()),
            "docs/config.md example {i}: {o:?}"
        );
    }
}

/// Structural errors name the field and never the value. (They came from a JSON Schema check
/// the CLI ran before the parser, which listed every problem; check-config now runs the
/// filter's parser alone, which reports the first, naming the same field.)
#[test]
fn check_config_reports_structural_errors_without_values() {
    let dir = scratch("schema-errors");
    let path = dir.join("c.json");
    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQ";
    for (json, expected) in [
        (
            format!(
                r#"{{"keys": [{{"id": "k1", "secret": ["{secret}"]}}], "tokens": {{"cokie": "x"}}}}"#
            ),
            "field `keys[0].secret`: invalid type: sequence, expected a string\n",
        ),
        (
            format!(
                r#"{{"keys": [{{"id": "k1", "secret": "{secret}"}}], "tokens": {{"cokie": "x"}}}}"#
            ),
            "field `tokens.cokie`: unknown field `cokie`, expected one of",
        ),
    ] {
        std::fs::write(&path, &json).unwrap();
        let o = devgate(&["check-config", path.to_str().unwrap()]);
        assert_eq!(code(&o), 1, "{o:?}");
        assert!(o.stdout.is_empty(), "{o:?}");
        let err = String::from_utf8(o.stderr.clone()).unwrap();
        assert!(err.contains(expected), "{json}: {err}");
        assert!(!err.contains(secret), "never print a value: {err}");
    }
}
