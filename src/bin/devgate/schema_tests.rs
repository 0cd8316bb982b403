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

/// The plugin configurations shipped in the repository: every envoy/*.yaml,
/// envoy/bench/*.yaml and envoy/istio/wasmplugin.yaml (as check-config finds them), and the
/// JSON examples of docs/config.md, each with the environment its deployment gives it (the VM's
/// own, then the examples' `secret_env` and `users_env` variables). envoy/bench/reference.yaml
/// is left out: it loads the benchmark's reference filter (bench/reference-filter), whose
/// configuration is not devgate's.
fn shipped_configs() -> Vec<Shipped> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let deployment: HashMap<String, String> = [
        ("DEVGATE_K1", EXAMPLE_SECRET),
        ("DEVGATE_K2", EXAMPLE_SECRET),
        ("DEVGATE_USERS", EXAMPLE_USERS),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut files = Vec::new();
    for dir in ["envoy", "envoy/bench"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml")
                && !path.ends_with("envoy/bench/reference.yaml")
            {
                files.push(path);
            }
        }
    }
    files.push(root.join("envoy/istio/wasmplugin.yaml"));
    files.push(root.join("envoy/gateway/envoyextensionpolicy.yaml"));
    files.sort();
    let mut configs = Vec::new();
    for file in files {
        // bench/run.py fills the templates' {{DEVGATE_KEY}} with a fresh key.
        let text = std::fs::read_to_string(&file)
            .unwrap()
            .replace("{{DEVGATE_KEY}}", EXAMPLE_SECRET);
        for plugin in envoy_yaml::plugin_configs(&text).unwrap() {
            let mut env = deployment.clone();
            env.extend(plugin.env);
            configs.push(Shipped {
                name: format!("{}: {}", file.display(), plugin.location),
                json: plugin.json,
                env,
            });
        }
    }
    let doc = std::fs::read_to_string(root.join("docs/config.md")).unwrap();
    for (i, block) in doc.split("```json\n").skip(1).enumerate() {
        configs.push(Shipped {
            name: format!("docs/config.md example {i}"),
            json: block.split("```").next().unwrap().to_owned(),
            env: deployment.clone(),
        });
    }
    configs
}

#[test]
fn every_example_config_matches_the_schema_and_the_parser() {
    let validator = Validator::new(&devgate::config::json_schema());
    let configs = shipped_configs();
    let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
    for must in [
        "envoy/envoy.yaml",
        "envoy/envoy-tls.yaml",
        "envoy/bench/devgate_network.yaml",
        "envoy/bench/devgate_tokens.yaml",
        "envoy/bench/devgate_api.yaml",
        "envoy/istio/wasmplugin.yaml",
        "envoy/gateway/envoyextensionpolicy.yaml: EnvoyExtensionPolicy",
        "envoy/envoy-native.yaml: Envoy dynamic module",
        "docs/config.md example 0",
    ] {
        assert!(
            names.iter().any(|n| n.contains(must)),
            "{must} not found in {names:?}"
        );
    }
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
    // through (it must never refuse what the filter accepts) and the parser decides.
    for json in [
        "{}",
        r#"{"header": null, "protect": [], "public": []}"#,
        r#"{"network": {"allow": ["10.0.0.1/8"]}}"#,
        r#"{"protect": ["debug", {"prefix": "/a", "methods": []}]}"#,
        r#"{"keys": [{"id": "bad id", "secret": "x", "secret_env": "Y"}], "tokens": {"bearer": false, "cookie": null}}"#,
        r#"{"login": {}, "upstream_challenge": "login"}"#,
        r#"{"login": {"users": "x", "max_cost": 13, "session_seconds": 10, "cookie": "__Host-s"}}"#,
        r#"{"revocation": {"cluster": "bad cluster", "timeout_ms": 1, "max_stale_seconds": 0}}"#,
        r#"{"api": {"routes": [], "revoked": ["not an id!"], "headers": {"count": "bad header"}}}"#,
        r#"{"tokens": null, "api": null, "login": null, "revocation": null}"#,
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
