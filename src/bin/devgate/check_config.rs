//! `devgate check-config`: the filter's own configuration parser, run on a file.

use crate::args::Args;
use crate::cli::{print_line, Command, Failure, Io};
use crate::envoy_yaml;

/// `devgate check-config FILE`.
pub const COMMAND: Command = Command {
    name: "check-config",
    summary: "validate a filter configuration file",
    help: HELP,
    options: &[],
    flags: &[],
    run,
};

const HELP: &str = "\
usage: devgate check-config FILE

Validates the filter's plugin configuration with the code the filter runs in on_configure:
errors name the field, never a value.
FILE is the configuration JSON, or YAML holding it: an Envoy bootstrap (every
envoy.filters.http.wasm `configuration` value next to a `vm_config`, with the VM's
environment_variables.key_values as the environment for `secret_env`; every native
envoy.filters.http.dynamic_modules `filter_config` value with `filter_name: devgate`), an Istio
WasmPlugin (`spec.pluginConfig`, with `spec.vmConfig.env`) or an Envoy Gateway
EnvoyExtensionPolicy (`spec.wasm[].config`). Other `secret_env` and `users_env` variables are
read from this process's environment, standing in for Envoy's (the native module reads its
variables from Envoy's process environment). A variable that is not set is reported with the
place its host reads it from.
Prints `ok` per configuration (exit 0) or its first error, naming the field (exit 1).
";

/// Where a bare JSON file's variables are read: it names no host.
const JSON_ENV: &str = "the environment of devgate check-config (set it where the filter runs: \
                        the Wasm VM's vm_config.environment_variables, or Envoy's process \
                        environment for the native module)";

/// One configuration through the filter's parser: its error, naming the field and never a
/// value, or nothing. `place` says where its host reads `secret_env` and `users_env`.
fn check_one(
    json: &[u8],
    lookup: &dyn Fn(&str) -> Option<String>,
    place: &str,
) -> Result<(), String> {
    let env = devgate::config::Environment { lookup, place };
    devgate::config::parse_policy_in(json, &env)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `edge.client_certs` only where Envoy validates the certificates it reports: neither host can
/// tell a validated client certificate from a presented one (docs/client-certificates.md).
fn client_certs_validated(json: &str, unvalidated: Option<&str>) -> Result<(), String> {
    let Some(why) = unvalidated else {
        return Ok(());
    };
    let config: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    if config
        .pointer("/edge/client_certs")
        .is_some_and(|c| !c.is_null())
    {
        return Err(format!(
            "field `edge.client_certs`: the TLS context of the filter chain carrying devgate \
             {why}; Envoy reports a client certificate as presented, never as validated, so \
             devgate needs a listener that validates every one it accepts (a validation_context \
             with a trusted_ca; see docs/client-certificates.md)"
        ));
    }
    Ok(())
}

fn run(args: &Args, io: &mut Io<'_>) -> Result<(), Failure> {
    let path = args.one_positional("one FILE")?;
    let bytes = std::fs::read(path).map_err(|e| Failure::io(path, &e))?;
    let text = String::from_utf8_lossy(&bytes);
    let first = text.trim_start().chars().next();
    if matches!(first, None | Some('{')) {
        return match check_one(&bytes, &|var| std::env::var(var).ok(), JSON_ENV) {
            Ok(()) => print_line(io.out, "ok"),
            Err(e) => Err(Failure::Refused(format!("{path}: {e}"))),
        };
    }
    let found =
        envoy_yaml::plugin_configs(&text).map_err(|e| Failure::Refused(format!("{path}: {e}")))?;
    if found.is_empty() {
        return Err(Failure::Refused(format!(
            "{path}: no devgate configuration found (neither JSON nor Envoy, Istio or Envoy Gateway YAML with a devgate configuration)"
        )));
    }
    let mut failed = Vec::new();
    for plugin in &found {
        let lookup = |var: &str| {
            plugin
                .env
                .get(var)
                .cloned()
                .or_else(|| std::env::var(var).ok())
        };
        let checked = check_one(plugin.json.as_bytes(), &lookup, plugin.env_place)
            .and_then(|()| client_certs_validated(&plugin.json, plugin.unvalidated_certs));
        match checked {
            Ok(()) => print_line(io.out, &format!("ok: {}", plugin.location))?,
            Err(e) => failed.push(format!("{path}: {}: {e}", plugin.location)),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Refused(failed.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::Failure;
    use crate::test_support::{run_capture, temp_file};

    fn refused(name: &str, json: &str) -> String {
        let path = temp_file(name, json);
        let (r, out) = run_capture(&["check-config", &path], "");
        assert!(out.is_empty(), "{out}");
        let Err(Failure::Refused(msg)) = r else {
            panic!("{json}: {r:?}")
        };
        assert!(msg.starts_with(&format!("{path}: field `")), "{msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
        msg
    }

    /// These messages came from the CLI's own JSON Schema check, which ran before the parser
    /// and listed every structural problem; the parser reports the first one, naming the same
    /// field.
    #[test]
    fn check_config_reports_structural_errors_by_field() {
        let msg = refused(
            "schema-bad.json",
            r#"{"network": {"allow": "10.0.0.0/8"}, "login": {"users": "x", "colour": 1}}"#,
        );
        assert!(
            msg.ends_with("field `network.allow`: invalid type: string \"…\", expected a sequence"),
            "{msg}"
        );
        assert!(!msg.contains("10.0.0.0"), "{msg}");
        let msg = refused(
            "login-bad.json",
            r#"{"login": {"users": "x", "colour": 1}}"#,
        );
        assert!(
            msg.contains("field `login.colour`: unknown field `colour`, expected one of")
                && msg.contains("`users_env`")
                && msg.contains("`max_cost`")
                && msg.contains("`verifies_per_minute`")
                && msg.contains("`verify_burst`"),
            "{msg}"
        );
        // Structure fine, values not: the parser's message, as before.
        let msg = refused(
            "value-bad.json",
            r#"{"network": {"allow": ["10.0.0.1/8"]}}"#,
        );
        assert!(
            msg.ends_with(
                "field `network.allow[0]`: host bits set after the prefix; did you mean 10.0.0.0/8?"
            ),
            "{msg}"
        );
    }

    /// Values in the wrong place (a secret pasted into a field of another type) never come
    /// back in check-config's message.
    #[test]
    fn check_config_never_echoes_values() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQ";
        for (json, field) in [
            (format!(r#"{{"network": "{secret}"}}"#), "network"),
            (
                format!(r#"{{"unauthenticated": "{secret}"}}"#),
                "unauthenticated",
            ),
            (
                format!(r#"{{"keys": [{{"id": ["{secret}"]}}]}}"#),
                "keys[0].id",
            ),
            (
                format!(r#"{{"protect": [{{"prefix": 1, "methods": "{secret}"}}]}}"#),
                "protect[0].prefix",
            ),
            (
                format!(r#"{{"login": {{"users": ["{secret}"], "mount": 12345678901}}}}"#),
                "login.users",
            ),
            (
                format!(r#"{{"revocation": {{"cluster": "c", "when_stale": "{secret}"}}}}"#),
                "revocation.when_stale",
            ),
        ] {
            let msg = refused("echo.json", &json);
            assert!(msg.contains(&format!("field `{field}`")), "{json}: {msg}");
            assert!(
                !msg.contains(secret) && !msg.contains("12345678901"),
                "{msg}"
            );
        }
    }

    /// `api.service` without top-level keys: the key service's keys stand in for them.
    #[test]
    fn check_config_accepts_a_key_service() {
        let service = |extra: &str| {
            format!(
                r#"{{"api": {{"routes": [{{"prefix": "/api/", "product": "maps"}}],
                    "service": {{"cluster": "key_service",
                                 "keys": [{{"id": "ks1", "secret": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}}]{extra}}}}}}}"#
            )
        };
        let path = temp_file("service.json", &service(""));
        let (r, out) = run_capture(&["check-config", &path], "");
        assert_eq!((r, out.as_str()), (Ok(()), "ok\n"));
        let msg = refused("service-bad.json", &service(r#", "cache": {"entries": 0}"#));
        assert!(
            msg.ends_with("field `api.service.cache.entries`: between 1 and 1000000"),
            "{msg}"
        );
        // Neither keys nor a key service: refused at `keys`.
        let msg = refused(
            "no-keys.json",
            r#"{"api": {"routes": [{"prefix": "/api/", "product": "maps"}]}}"#,
        );
        assert!(
            msg.ends_with(
                "field `keys`: api is enabled without api.service, so at least one key is required"
            ),
            "{msg}"
        );
    }

    #[test]
    fn check_config_reports_each_yaml_plugin() {
        let path = temp_file(
            "two.yaml",
            r#"
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: good}
spec: {pluginConfig: {network: {allow: ["10.0.0.0/8"]}}}
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: bad}
spec: {pluginConfig: {network: {alow: []}}}
"#,
        );
        let (r, out) = run_capture(&["check-config", &path], "");
        assert_eq!(out, "ok: WasmPlugin \"good\"\n");
        let Err(Failure::Refused(msg)) = r else {
            panic!("{r:?}")
        };
        assert!(
            msg.starts_with(&format!(
                "{path}: WasmPlugin \"bad\": field `network.alow`: unknown field `alow`"
            )),
            "{msg}"
        );
    }

    /// A bootstrap whose devgate filter sits behind `transport` (YAML at the filter chain's
    /// indentation, or empty for plain text).
    fn bootstrap(transport: &str) -> String {
        bootstrap_with(transport, "{}")
    }

    fn bootstrap_with(transport: &str, config: &str) -> String {
        format!(
            r#"
static_resources:
  listeners:
    - name: l
      filter_chains:
        - {transport}
          filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                http_filters:
                  - name: envoy.filters.http.dynamic_modules
                    typed_config:
                      dynamic_module_config: {{module: {{local: {{filename: x.so}}}}}}
                      filter_name: devgate
                      filter_config: {{value: '{config}'}}
"#
        )
    }

    fn tls(validation: &str) -> String {
        format!(
            "transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              common_tls_context: {{{validation}}}
"
        )
    }

    /// What check-config sees of the filter chain's TLS: whether Envoy validates every client
    /// certificate it reports there.
    #[test]
    fn check_config_sees_whether_the_chain_validates_client_certificates() {
        let seen = |transport: &str| {
            let found = crate::envoy_yaml::plugin_configs(&bootstrap(transport)).unwrap();
            assert_eq!(found.len(), 1, "{transport}");
            found[0].unvalidated_certs
        };
        assert_eq!(seen(""), None);
        assert_eq!(
            seen(&tls("validation_context: {trusted_ca: {filename: ca.pem}}")),
            None
        );
        assert_eq!(
            seen(&tls(
                "validation_context: {custom_validator_config: {name: spiffe}}"
            )),
            None
        );
        assert_eq!(
            seen(&tls("combined_validation_context: {default_validation_context: {trusted_ca: {filename: ca.pem}}}")),
            None
        );
        for (validation, why) in [
            ("", "has no validation_context"),
            ("tls_params: {}", "has no validation_context"),
            ("validation_context: {}", "without a trusted_ca"),
            (
                "validation_context: {trusted_ca: {filename: ca.pem}, trust_chain_verification: ACCEPT_UNTRUSTED}",
                "ACCEPT_UNTRUSTED",
            ),
            (
                "validation_context: {trusted_ca: {filename: ca.pem}, allow_expired_certificate: true}",
                "expired",
            ),
            ("validation_context_sds_secret_config: {name: v}", "SDS"),
            (
                "combined_validation_context: {default_validation_context: {}, validation_context_sds_secret_config: {name: v}}",
                "SDS",
            ),
        ] {
            let got = seen(&tls(validation)).unwrap_or_default();
            assert!(got.contains(why), "{validation}: {got:?}");
        }
    }

    /// Only a configuration with `edge.client_certs` is refused on such a chain, at that field.
    #[test]
    fn check_config_refuses_client_certs_where_envoy_does_not_validate() {
        use super::client_certs_validated;
        let with = r#"{"edge": {"client_certs": {"uri_sans": ["spiffe://x"]}}}"#;
        let msg = client_certs_validated(with, Some("has no validation_context")).unwrap_err();
        assert!(
            msg.starts_with("field `edge.client_certs`: the TLS context of the filter chain carrying devgate has no validation_context;"),
            "{msg}"
        );
        assert_eq!(client_certs_validated(with, None), Ok(()));
        for without in [
            r#"{}"#,
            r#"{"edge": {}}"#,
            r#"{"edge": {"client_certs": null}}"#,
        ] {
            assert_eq!(
                client_certs_validated(without, Some("has no validation_context")),
                Ok(())
            );
        }
    }

    /// The whole command on a bootstrap: the same configuration passes behind a listener that
    /// validates and is refused behind one that does not.
    #[test]
    fn check_config_on_a_bootstrap_with_client_certs() {
        let config =
            r#"{"edge": {"client_certs": {"uri_sans": ["spiffe://devgate.localhost/developer"]}}}"#;
        let good = temp_file(
            "certs-good.yaml",
            &bootstrap_with(
                &tls("validation_context: {trusted_ca: {filename: ca.pem}}"),
                config,
            ),
        );
        let (r, out) = run_capture(&["check-config", &good], "");
        assert_eq!(
            (r, out.as_str()),
            (Ok(()), "ok: Envoy dynamic module \"devgate\"\n")
        );
        let bad = temp_file(
            "certs-bad.yaml",
            &bootstrap_with(
                &tls("validation_context: {trusted_ca: {filename: ca.pem}, trust_chain_verification: ACCEPT_UNTRUSTED}"),
                config,
            ),
        );
        let (r, out) = run_capture(&["check-config", &bad], "");
        assert_eq!(out, "");
        let Err(Failure::Refused(msg)) = r else {
            panic!("{r:?}")
        };
        assert!(
            msg.starts_with(&format!("{bad}: Envoy dynamic module \"devgate\": field `edge.client_certs`: the TLS context of the filter chain carrying devgate accepts untrusted certificates")),
            "{msg}"
        );
        // Plain text: no certificate is ever reported there.
        let plain = temp_file("certs-plain.yaml", &bootstrap_with("", config));
        assert_eq!(run_capture(&["check-config", &plain], "").0, Ok(()));
    }
}
