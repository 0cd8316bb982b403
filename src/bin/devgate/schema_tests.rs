//! The generated JSON Schema (`devgate schema`, docs/config.schema.json) and the filter's parser
//! agree: every shipped configuration passes both, and structural mistakes are refused by both,
//! at the same field. The schema is checked by `boon`, a full draft 2020-12 validator that is a
//! dev-dependency only: the CLI itself runs the parser alone.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::envoy_yaml;

/// A compiled schema.
pub struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    /// Compiles `schema`; panics when it is not a valid draft 2020-12 schema (the validator
    /// checks it against the meta-schema).
    pub fn new(schema: &Value) -> Validator {
        const LOCATION: &str = "devgate-config.schema.json";
        let mut compiler = boon::Compiler::new();
        compiler
            .add_resource(LOCATION, schema.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut schemas = boon::Schemas::new();
        let index = compiler
            .compile(LOCATION, &mut schemas)
            .unwrap_or_else(|e| panic!("{e:#}"));
        Validator { schemas, index }
    }

    /// Every field the schema finds wrong in `instance`, in the parser's notation
    /// (`keys[0].secret`, `(root)`); empty when it is valid.
    pub fn problems(&self, instance: &Value) -> Vec<String> {
        let mut fields = Vec::new();
        if let Err(e) = self.schemas.validate(instance, self.index) {
            leaves(&e, &mut fields);
        }
        fields
    }
}

/// The fields of the innermost errors under `e` (an `anyOf` holds one per alternative). An
/// unknown property is reported at its object; the parser names the property itself.
fn leaves(e: &boon::ValidationError, out: &mut Vec<String>) {
    if !e.causes.is_empty() {
        e.causes.iter().for_each(|c| leaves(c, out));
        return;
    }
    let mut at = String::new();
    for token in &e.instance_location.tokens {
        match token {
            boon::InstanceToken::Prop(p) if at.is_empty() => at.push_str(p),
            boon::InstanceToken::Prop(p) => at.push_str(&format!(".{p}")),
            boon::InstanceToken::Item(i) => at.push_str(&format!("[{i}]")),
        }
    }
    match &e.kind {
        boon::ErrorKind::AdditionalProperties { got } => {
            for p in got {
                out.push(if at.is_empty() {
                    p.to_string()
                } else {
                    format!("{at}.{p}")
                });
            }
        }
        _ if at.is_empty() => out.push("(root)".to_owned()),
        _ => out.push(at),
    }
}

/// A base64url secret for the examples' `secret_env` variables and the bench templates'
/// `{{DEVGATE_KEY}}` (32 bytes, not a real key).
const EXAMPLE_SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
/// htpasswd for the examples' `users_env` (bcrypt cost 5).
const EXAMPLE_USERS: &str = "alice:$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK";

/// A shipped plugin configuration: where it is, its JSON and the environment it is given.
struct Shipped {
    name: String,
    json: String,
    env: HashMap<String, String>,
}

/// envoy/SHIPPED and envoy/demo.env, parsed as tests/cli.rs parses them.
#[path = "../../../tests/common/repo_files.rs"]
mod repo_files;
use repo_files::shipped_files;

/// envoy/demo.env: the native demos' process environment.
fn demo_env(root: &Path) -> HashMap<String, String> {
    repo_files::demo_env(root).into_iter().collect()
}

/// The plugin configurations shipped in the repository: every file of envoy/SHIPPED (as
/// check-config finds them) and the JSON examples of docs/config.md, docs/key-service.md,
/// docs/edge.md and docs/client-certificates.md,
/// each with the environment its deployment gives it (the VM's own, envoy/demo.env for the native
/// demos, then the examples' `secret_env` and `users_env` variables).
fn shipped_configs() -> Vec<Shipped> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut deployment: HashMap<String, String> = [
        ("DEVGATE_K1", EXAMPLE_SECRET),
        ("DEVGATE_K2", EXAMPLE_SECRET),
        ("DEVGATE_USERS", EXAMPLE_USERS),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    deployment.extend(demo_env(root));
    let mut configs = Vec::new();
    for file in shipped_files(root) {
        // bench/run.py fills the templates' {{DEVGATE_KEY}} with a fresh key, {{ASSERTION_X}}
        // and {{ASSERTION_Y}} with a fresh P-256 key's point.
        let text = repo_files::fill_bench_placeholders(
            &std::fs::read_to_string(root.join(&file)).unwrap(),
            EXAMPLE_SECRET,
        );
        let found = envoy_yaml::plugin_configs(&text).unwrap();
        assert!(!found.is_empty(), "{file}: no devgate configuration");
        for plugin in found {
            let mut env = deployment.clone();
            env.extend(plugin.env);
            configs.push(Shipped {
                name: format!("{file}: {}", plugin.location),
                json: plugin.json,
                env,
            });
        }
    }
    deployment.insert("KEY_SERVICE_SECRET".to_owned(), EXAMPLE_SECRET.to_owned());
    for file in [
        "docs/config.md",
        "docs/key-service.md",
        "docs/edge.md",
        "docs/client-certificates.md",
    ] {
        let doc = std::fs::read_to_string(root.join(file)).unwrap();
        for (i, block) in doc.split("```json\n").skip(1).enumerate() {
            configs.push(Shipped {
                name: format!("{file} example {i}"),
                json: block.split("```").next().unwrap().to_owned(),
                env: deployment.clone(),
            });
        }
    }
    configs
}

/// envoy/SHIPPED is complete: every YAML under envoy/ that holds a devgate configuration is listed
/// (a file that is not, like the bench's other contenders and its reference filter, holds none).
#[test]
fn every_shipped_devgate_config_is_listed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listed = shipped_files(root);
    let mut dirs = vec![root.join("envoy")];
    let mut unlisted = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if path.extension().is_none_or(|e| e != "yaml") || listed.contains(&rel) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let ours = envoy_yaml::plugin_configs(&text)
                .unwrap_or_default()
                .into_iter()
                .any(|p| p.location.contains("\"devgate\""));
            if ours {
                unlisted.push(rel);
            }
        }
    }
    assert!(unlisted.is_empty(), "add to envoy/SHIPPED: {unlisted:?}");
    for must in ["envoy/envoy.yaml", "envoy/envoy-native-tls.yaml"] {
        assert!(listed.iter().any(|f| f == must), "{must}");
    }
}

/// The native demos read from Envoy's process environment (envoy/demo.env) what the Wasm demo's
/// VM gets in envoy/envoy.yaml: the same users and session key, so both demos behave alike.
#[test]
fn native_demo_environment_is_the_wasm_demos() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("envoy/envoy.yaml")).unwrap();
    let plugins = envoy_yaml::plugin_configs(&text).unwrap();
    let [wasm] = plugins.as_slice() else {
        panic!("envoy.yaml: one devgate plugin expected")
    };
    let demo = demo_env(root);
    assert_eq!(demo.len(), 2, "{:?}", demo.keys());
    for (name, value) in &demo {
        assert_eq!(wasm.env.get(name), Some(value), "{name}");
    }
}

#[test]
fn every_example_config_matches_the_schema_and_the_parser() {
    let validator = Validator::new(&devgate::config::json_schema());
    let configs = shipped_configs();
    assert!(
        configs.iter().any(|c| c.name == "docs/config.md example 0"),
        "docs/config.md has no JSON example"
    );
    let mut sections = std::collections::BTreeSet::new();
    for c in &configs {
        let value: Value =
            serde_json::from_str(&c.json).unwrap_or_else(|e| panic!("{}: not JSON: {e}", c.name));
        let problems = validator.problems(&value);
        assert!(problems.is_empty(), "{}: schema: {problems:?}", c.name);
        if let Err(e) =
            devgate::config::parse_policy_with_env(c.json.as_bytes(), &|v| c.env.get(v).cloned())
        {
            panic!("{}: parser: {e}", c.name);
        }
        sections.extend(value.as_object().unwrap().keys().cloned());
    }
    // The examples exercise the newer sections too.
    for s in [
        "login",
        "upstream_challenge",
        "revocation",
        "tokens",
        "keys",
        "api",
    ] {
        assert!(sections.contains(s), "no example has {s}");
    }
}

/// Structural mistakes: both refuse them, and the schema names the field the parser does.
#[test]
fn schema_and_parser_agree_on_structural_errors() {
    let validator = Validator::new(&devgate::config::json_schema());
    for (json, field) in [
        (r#"{"nope": 1}"#, "nope"),
        (r#"{"network": {"alow": []}}"#, "network.alow"),
        (
            r#"{"network": {"trust_forwarded": "yes"}}"#,
            "network.trust_forwarded",
        ),
        (r#"{"network": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}"#, "network"),
        (r#"{"network": {"deny": "topsecretvalue"}}"#, "network.deny"),
        (r#"{"unauthenticated": "maybe"}"#, "unauthenticated"),
        (r#"{"protect": [{"prefix": "/a", "x": 1}]}"#, "protect[0].x"),
        (r#"{"protect": [7]}"#, "protect[0]"),
        (r#"{"protect": [{"methods": ["GET"]}]}"#, "protect[0]"),
        (r#"{"protect": "/"}"#, "protect"),
        (r#"{"keys": [{"id": "k1", "secret": 5}]}"#, "keys[0].secret"),
        (r#"{"keys": [{"secret_env": "X"}]}"#, "keys[0]"),
        (r#"{"tokens": {"cokie": "x"}}"#, "tokens.cokie"),
        (
            r#"{"tokens": {"leeway_seconds": -1}}"#,
            "tokens.leeway_seconds",
        ),
        (
            r#"{"tokens": {"leeway_seconds": 1.5}}"#,
            "tokens.leeway_seconds",
        ),
        (r#"{"login": {"colour": 1}}"#, "login.colour"),
        (r#"{"login": {"max_cost": "10"}}"#, "login.max_cost"),
        (
            r#"{"upstream_challenge": "redirect"}"#,
            "upstream_challenge",
        ),
        (r#"{"api": {}}"#, "api"),
        (
            r#"{"api": {"routes": [{"prefix": "/a", "product": "p", "mode": "rw"}]}}"#,
            "api.routes[0].mode",
        ),
        (
            r#"{"api": {"routes": [], "headers": {"org": "x"}}}"#,
            "api.headers.org",
        ),
        (
            r#"{"api": {"routes": [], "service": {"path": "/x"}}}"#,
            "api.service",
        ),
        (
            r#"{"api": {"routes": [], "service": {"cluster": "c", "keys": [], "cache": {"entries": "1"}}}}"#,
            "api.service.cache.entries",
        ),
        (
            r#"{"api": {"routes": [], "service": {"cluster": "c", "keys": [], "claims": {"org": "o"}}}}"#,
            "api.service.claims.org",
        ),
        (r#"{"revocation": {"path": "/r"}}"#, "revocation"),
        (
            r#"{"revocation": {"cluster": "c", "when_stale": "ignore"}}"#,
            "revocation.when_stale",
        ),
        (
            r#"{"revocation": {"cluster": "c", "timeout": 5}}"#,
            "revocation.timeout",
        ),
        ("[]", "(root)"),
    ] {
        let parser = devgate::config::parse_policy_with_env(json.as_bytes(), &|_| None)
            .err()
            .unwrap_or_else(|| panic!("{json}: the parser accepts it"));
        assert_eq!(parser.field, field, "{json}: parser");
        let problems = validator.problems(&serde_json::from_str(json).unwrap());
        assert!(
            problems.iter().any(|p| p == field),
            "{json}: schema: {problems:?}"
        );
    }
    // Structurally fine, some refused by the parser's value checks: the schema lets them
    // through (it must never refuse what the filter accepts) and the parser decides. (Integer
    // ranges are the schema's too: `integer_ranges_are_the_parsers` below.)
    for json in [
        "{}",
        r#"{"header": null, "protect": [], "public": []}"#,
        r#"{"network": {"allow": ["10.0.0.1/8"]}}"#,
        r#"{"protect": ["debug", {"prefix": "/a", "methods": []}]}"#,
        r#"{"keys": [{"id": "bad id", "secret": "x", "secret_env": "Y"}], "tokens": {"bearer": false, "cookie": null}}"#,
        r#"{"login": {}, "upstream_challenge": "login"}"#,
        r#"{"login": {"users": "x", "max_cost": 12, "session_seconds": 60, "cookie": "__Host-s"}}"#,
        r#"{"revocation": {"cluster": "bad cluster", "refresh_seconds": 60, "max_stale_seconds": 30}}"#,
        r#"{"api": {"routes": [], "revoked": ["not an id!"], "headers": {"count": "bad header"}}}"#,
        r#"{"tokens": null, "api": null, "login": null, "revocation": null}"#,
        r#"{"api": {"routes": [], "service": {"cluster": "bad cluster", "keys": [], "path": "x?y", "key_header": "host", "claims": {"id": "exp"}, "shape": {"public_prefix": "a/b"}}}}"#,
    ] {
        let problems = validator.problems(&serde_json::from_str(json).unwrap());
        assert!(problems.is_empty(), "{json}: {problems:?}");
    }
}

/// The validator is no rubber stamp: it refuses a schema that breaks the meta-schema, and an
/// integer field refuses a fraction, a negative and a string (the parser's view, above).
#[test]
fn validator_refuses_an_invalid_schema_and_checks_numbers() {
    assert!(std::panic::catch_unwind(|| {
        Validator::new(&serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": 5
        }))
    })
    .is_err());
    let v = Validator::new(&serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"cost": {"type": "integer", "minimum": 4, "maximum": 12}},
        "additionalProperties": false
    }));
    assert!(v.problems(&serde_json::json!({"cost": 4})).is_empty());
    assert!(v.problems(&serde_json::json!({"cost": 12.0})).is_empty());
    for bad in [
        serde_json::json!({"cost": 3}),
        serde_json::json!({"cost": 13}),
        serde_json::json!({"cost": 4.5}),
        serde_json::json!({"cost": "4"}),
    ] {
        assert_eq!(v.problems(&bad), ["cost"], "{bad}");
    }
    assert_eq!(v.problems(&serde_json::json!({"cots": 4})), ["cots"]);
    assert_eq!(v.problems(&serde_json::json!([])), ["(root)"]);
}

/// `field`'s bounds: the schema and the parser accept `min` and `max` in `config(value)`, and
/// both refuse one past each, naming `field`.
fn check_bounds(
    validator: &Validator,
    field: &str,
    (min, max): (u64, u64),
    config: impl Fn(u64) -> String,
) {
    for ok in [min, max] {
        let json = config(ok);
        let problems = validator.problems(&serde_json::from_str(&json).unwrap());
        assert!(problems.is_empty(), "{json}: schema: {problems:?}");
        if let Err(e) = devgate::config::parse_policy_with_env(json.as_bytes(), &|_| None) {
            panic!("{json}: parser: {e}");
        }
    }
    let below = min.checked_sub(1);
    for bad in below.into_iter().chain([max + 1]) {
        let json = config(bad);
        let problems = validator.problems(&serde_json::from_str(&json).unwrap());
        assert!(
            problems.iter().any(|p| p == field),
            "{json}: schema: {problems:?}"
        );
        let e = devgate::config::parse_policy_with_env(json.as_bytes(), &|_| None)
            .err()
            .unwrap_or_else(|| panic!("{json}: the parser accepts it"));
        assert_eq!(e.field, field, "{json}: parser");
    }
}

/// The integer fields of the schema's definition `def`, with their bounds; panics on one
/// without both.
fn integer_fields(schema: &Value, def: &str, section: &str) -> Vec<(String, (u64, u64))> {
    let props = schema["$defs"][def]["properties"].as_object().unwrap();
    props
        .iter()
        .filter(|(_, p)| p["type"] == "integer")
        .map(|(name, p)| {
            let (min, max) = (p["minimum"].as_u64(), p["maximum"].as_u64());
            let (Some(min), Some(max)) = (min, max) else {
                panic!("{section}.{name}: an integer without minimum and maximum")
            };
            (name.clone(), (min, max))
        })
        .collect()
}

/// Every integer field's `minimum` and `maximum` in the schema (and so in
/// docs/config-reference.md) are the parser's: both accept each bound, both refuse one past it,
/// naming the field. Every integer field has both.
#[test]
fn integer_ranges_are_the_parsers() {
    let schema = devgate::config::json_schema();
    let validator = Validator::new(&schema);
    // htpasswd at the lowest cost login.max_cost accepts, so its minimum can be tried.
    let hash = bcrypt::hash_with_salt(b"pw", 4, [7u8; 16]).unwrap();
    let users = format!("alice:{}", hash.format_for_version(bcrypt::Version::TwoY));
    let key = format!(r#"[{{"id": "k1", "secret": "{EXAMPLE_SECRET}"}}]"#);
    let mut tried = Vec::new();
    for (section, def) in [
        ("tokens", "Tokens"),
        ("api", "Api"),
        ("login", "Login"),
        ("revocation", "Revocation"),
    ] {
        for (name, bounds) in integer_fields(&schema, def, section) {
            let field = format!("{section}.{name}");
            // What the section needs besides the field, and the fields it is checked against.
            let others = match (section, name.as_str()) {
                ("api", _) => r#""routes": [{"prefix": "/api/", "product": "p"}]"#.to_owned(),
                ("login", _) => format!(r#""users": {}"#, serde_json::json!(users)),
                ("revocation", "max_stale_seconds") => {
                    r#""cluster": "c", "refresh_seconds": 1"#.to_owned()
                }
                ("revocation", _) => r#""cluster": "c", "max_stale_seconds": 604800"#.to_owned(),
                _ => String::new(),
            };
            check_bounds(&validator, &field, bounds, |value: u64| {
                let sep = if others.is_empty() { "" } else { ", " };
                let body = format!(r#"{{{others}{sep}"{name}": {value}}}"#);
                let tokens = if section == "revocation" {
                    r#""tokens": {}, "#
                } else {
                    ""
                };
                format!(r#"{{"keys": {key}, {tokens}"{section}": {body}}}"#)
            });
            tried.push(field);
        }
    }
    // api.service and its nested sections (an api without top-level keys).
    for (sub, def) in [
        ("", "KeyService"),
        ("cache", "KeyServiceCache"),
        ("budget", "KeyServiceBudget"),
        ("shape", "KeyServiceShape"),
    ] {
        let section = if sub.is_empty() {
            "api.service".to_owned()
        } else {
            format!("api.service.{sub}")
        };
        for (name, bounds) in integer_fields(&schema, def, &section) {
            let field = format!("{section}.{name}");
            // min_length is checked against max_length.
            let others = match (sub, name.as_str()) {
                ("shape", "min_length") => r#""max_length": 4096, "#,
                ("shape", "max_length") => r#""min_length": 1, "#,
                _ => "",
            };
            check_bounds(&validator, &field, bounds, |value: u64| {
                let member = format!(r#"{others}"{name}": {value}"#);
                let member = if sub.is_empty() {
                    member
                } else {
                    format!(r#""{sub}": {{{member}}}"#)
                };
                format!(
                    r#"{{"api": {{"routes": [{{"prefix": "/api/", "product": "p"}}],
                        "service": {{"cluster": "c", "keys": {key}, {member}}}}}}}"#
                )
            });
            tried.push(field);
        }
    }
    assert_eq!(tried.len(), 26, "{tried:?}");
}
