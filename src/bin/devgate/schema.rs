//! `devgate schema`: the configuration's JSON Schema, generated from the parser's own types;
//! `devgate schema --markdown`: the configuration reference rendered from it.

use crate::args::Args;
use crate::cli::{print, Command, Failure, Io};
use crate::reference;

/// `devgate schema [--markdown]`.
pub const COMMAND: Command = Command {
    name: "schema",
    summary: "print the configuration's JSON Schema or reference (docs/config-reference.md)",
    help: HELP,
    options: &[],
    flags: &["--markdown"],
    run,
};

const HELP: &str = "\
usage: devgate schema [--markdown]

Prints the JSON Schema (draft 2020-12) of the plugin configuration, generated from the types
the filter parses: every field, its type, default, range (integers) and description; unknown
fields are errors. The repository ships it as docs/config.schema.json for editors and CI. It
checks structure and integer ranges; the other values (CIDRs, paths, names, a field that
depends on another) are checked by `devgate check-config`, the filter's own parser.

  --markdown   print the configuration reference instead (docs/config-reference.md): one
               table per object, every field with its type, default, range or allowed values
               and description, rendered from the same schema
";

/// The schema as shipped in docs/config.schema.json: pretty JSON and a final newline.
pub fn schema_text() -> Result<String, Failure> {
    serde_json::to_string_pretty(&devgate::config::json_schema())
        .map(|text| text + "\n")
        .map_err(|e| Failure::Io(format!("schema: {e}")))
}

/// The reference as shipped in docs/config-reference.md.
pub fn reference_text() -> String {
    reference::markdown(&devgate::config::json_schema())
}

fn run(args: &Args, io: &mut Io<'_>) -> Result<(), Failure> {
    args.no_positionals()?;
    if args.flag("--markdown") {
        return print(io.out, &reference_text());
    }
    print(io.out, &schema_text()?)
}

/// The schema against the parser, through a kept JSON Schema validator (a dev-dependency).
#[cfg(test)]
#[path = "schema_tests.rs"]
mod agreement;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::run_capture;

    const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.schema.json");
    const REFERENCE_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config-reference.md");

    /// docs/config-reference.md is what `devgate schema --markdown` prints: a field added to the
    /// configuration types and not to the reference fails here.
    #[test]
    fn reference_file_is_current() {
        let shipped = std::fs::read_to_string(REFERENCE_FILE).unwrap_or_default();
        assert!(
            shipped == reference_text(),
            "docs/config-reference.md differs from the reference the code generates: run \
             `make schema` (or `target/release/devgate schema --markdown > docs/config-reference.md`)"
        );
        let (r, out) = run_capture(&["schema", "--markdown"], "");
        assert_eq!(r, Ok(()));
        assert_eq!(out, shipped);
    }

    /// The reference has a row for every field of the schema, at its full path, and says what
    /// the hand-written tables used to miss.
    #[test]
    fn reference_lists_every_field_with_its_range_and_default() {
        fn paths(
            schema: &serde_json::Value,
            at: &str,
            defs: &serde_json::Value,
            out: &mut Vec<String>,
        ) {
            let target = match schema["$ref"].as_str() {
                Some(r) => &defs[r.trim_start_matches("#/$defs/")],
                None => schema,
            };
            if let Some(props) = target["properties"].as_object() {
                for (name, p) in props {
                    let path = if at.is_empty() {
                        name.clone()
                    } else {
                        format!("{at}.{name}")
                    };
                    out.push(path.clone());
                    paths(p, &path, defs, out);
                }
            }
            for alt in target["anyOf"].as_array().into_iter().flatten() {
                paths(alt, at, defs, out);
            }
            if !target["items"].is_null() {
                paths(&target["items"], &format!("{at}[]"), defs, out);
            }
        }
        let schema = devgate::config::json_schema();
        let mut all = Vec::new();
        paths(&schema, "", &schema["$defs"], &mut all);
        assert!(all.len() > 60, "{}", all.len());
        let text = reference_text();
        for path in &all {
            assert!(
                text.contains(&format!("\n| `{path}` | ")),
                "no row for {path}"
            );
        }
        for (path, cells) in [
            ("api.routes[].prefix", "| string | required |"),
            ("api.headers.key_id", "| `\"x-devgate-key-id\"` |"),
            ("login.leeway_seconds", "| integer | `30` | 0 to 300 |"),
            ("revocation.authority", "| string or null | *absent* |"),
            (
                "revocation.refresh_seconds",
                "| integer | `30` | 1 to 3600 |",
            ),
            ("revocation.timeout_ms", "| `2000` | 100 to 60000 |"),
            ("revocation.max_stale_seconds", "| `300` | 1 to 604800 |"),
            ("login.max_cost", "| `10` | 4 to 12 |"),
            ("protect[].methods", "`GET` covers `HEAD`"),
            ("unauthenticated", "| `challenge`, `forbid` |"),
            ("revocation.when_stale", "`refuse`:"),
        ] {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("| `{path}` | ")))
                .unwrap_or_else(|| panic!("no row for {path}"));
            assert!(line.contains(cells), "{line}");
        }
    }

    #[test]
    fn schema_file_is_current() {
        let shipped = std::fs::read_to_string(SCHEMA_FILE).unwrap_or_default();
        assert!(
            shipped == schema_text().unwrap(),
            "docs/config.schema.json differs from the schema the code generates: \
             run `target/release/devgate schema > docs/config.schema.json` (after `make cli`), \
             or `make schema`"
        );
        let (r, out) = run_capture(&["schema"], "");
        assert_eq!(r, Ok(()));
        assert_eq!(out, shipped);
        assert!(matches!(
            run_capture(&["schema", "extra"], "").0,
            Err(Failure::Usage(_))
        ));
        let (r, out) = run_capture(&["schema", "--help"], "");
        assert_eq!(r, Ok(()));
        assert!(out.starts_with("usage: devgate schema"));
    }

    /// Each field's description agrees with the schema about its default: a scalar default is
    /// the one the description names ("Default 30"), and a field with none says what leaving it
    /// out means. So the reference's default column and its description cannot disagree.
    #[test]
    fn descriptions_state_the_schema_defaults() {
        let schema = devgate::config::json_schema();
        let mut found = Vec::new();
        objects(&schema, "#".to_owned(), &mut found);
        let mut checked = 0;
        for (at, o) in found {
            let required = o["required"].as_array().cloned().unwrap_or_default();
            for (name, p) in o["properties"].as_object().unwrap() {
                let words: Vec<&str> = p["description"]
                    .as_str()
                    .unwrap()
                    .split_whitespace()
                    .collect();
                let d = words.join(" ");
                let want = match &p["default"] {
                    serde_json::Value::Bool(b) => Some(format!("Default {b}")),
                    serde_json::Value::Number(n) => Some(format!("Default {n}")),
                    serde_json::Value::String(s) => Some(format!("Default `{s}`")),
                    _ => None,
                };
                if let Some(want) = want {
                    assert!(d.contains(&want), "{at}/{name}: says not {want:?}: {d}");
                    checked += 1;
                } else if p["default"].is_null() && !required.contains(&serde_json::json!(name)) {
                    let object = p["$ref"].is_string();
                    assert!(
                        object
                            || ["Absent", "Default", "Exactly one of"]
                                .iter()
                                .any(|w| d.contains(w)),
                        "{at}/{name}: says nothing about leaving it out: {d}"
                    );
                }
            }
        }
        assert!(checked > 30, "{checked}");
    }

    /// Every object schema reachable from `s`, with its JSON pointer.
    fn objects<'a>(
        s: &'a serde_json::Value,
        at: String,
        out: &mut Vec<(String, &'a serde_json::Value)>,
    ) {
        match s {
            serde_json::Value::Object(o) => {
                if o.contains_key("properties") {
                    out.push((at.clone(), s));
                }
                for (k, v) in o {
                    objects(v, format!("{at}/{k}"), out);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    objects(v, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn schema_is_strict_documented_and_supported() {
        let schema = devgate::config::json_schema();
        // A valid draft 2020-12 schema: the kept validator checks it against the meta-schema.
        super::agreement::Validator::new(&schema);
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        let mut found = Vec::new();
        objects(&schema, "#".to_owned(), &mut found);
        assert!(found.len() >= 10, "{}", found.len());
        for (at, o) in found {
            // deny_unknown_fields on every Raw* struct.
            assert_eq!(o["additionalProperties"], false, "{at}");
            assert!(o["description"].is_string(), "{at}");
            for (name, p) in o["properties"].as_object().unwrap() {
                let d = p["description"].as_str().unwrap_or_default();
                assert!(d.len() > 10, "{at}/properties/{name} has no description");
            }
        }
        let top = schema["properties"].as_object().unwrap();
        for name in [
            "header",
            "network",
            "protect",
            "public",
            "unauthenticated",
            "keys",
            "tokens",
            "api",
            "login",
            "upstream_challenge",
            "revocation",
            "edge",
        ] {
            assert!(top.contains_key(name), "{name}");
        }
        assert_eq!(top.len(), 12, "a new top-level field: add it above");
        // Defaults from `default = "fn"`, Default impls and the ones validation applies.
        for (pointer, default) in [
            (
                "/properties/header/default",
                serde_json::json!("x-wsgiorg-developer-user"),
            ),
            ("/properties/protect/default", serde_json::json!(["/"])),
            (
                "/properties/unauthenticated/default",
                serde_json::json!("challenge"),
            ),
            (
                "/properties/upstream_challenge/default",
                serde_json::json!("forbid"),
            ),
            (
                "/$defs/Network/properties/allow/default",
                serde_json::json!(["127.0.0.0/8", "::1"]),
            ),
            (
                "/$defs/Tokens/properties/cookie/default",
                serde_json::json!("devgate_token"),
            ),
            (
                "/$defs/Tokens/properties/leeway_seconds/default",
                serde_json::json!(30),
            ),
            (
                "/$defs/Login/properties/mount/default",
                serde_json::json!("/.devgate"),
            ),
            (
                "/$defs/Login/properties/session_seconds/default",
                serde_json::json!(28800),
            ),
            (
                "/$defs/Login/properties/max_cost/default",
                serde_json::json!(10),
            ),
            (
                "/$defs/ApiRoute/properties/mode/default",
                serde_json::json!("read_write"),
            ),
            (
                "/$defs/Revocation/properties/when_stale/default",
                serde_json::json!("refuse"),
            ),
        ] {
            assert_eq!(schema.pointer(pointer), Some(&default), "{pointer}");
        }
        assert_eq!(
            schema["$defs"]["Revocation"]["required"],
            serde_json::json!(["cluster"])
        );
        // The hand-written RawRule schema: a string or the object.
        let rule = &schema["$defs"]["Rule"]["anyOf"];
        assert_eq!(rule[0]["type"], "string");
        assert_eq!(rule[1]["$ref"], "#/$defs/RuleObject");
        // Secrets are marked as such.
        let secret = schema["$defs"]["Key"]["properties"]["secret"]["description"].as_str();
        assert!(secret.unwrap().starts_with("Secret:"));
    }
}
