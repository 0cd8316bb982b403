//! Finds devgate's plugin configurations in Envoy bootstrap YAML (the Wasm filter's
//! `config.configuration` as a `StringValue` next to a `vm_config`; the native dynamic module's
//! `filter_config` as a `StringValue` next to a `dynamic_module_config` with `filter_name: devgate`),
//! Istio `WasmPlugin` resources (`pluginConfig`) and Envoy Gateway `EnvoyExtensionPolicy`
//! resources (`wasm[].config`).

use std::collections::HashMap;

use yaml_rust2::{Yaml, YamlLoader};

/// One devgate plugin configuration found in YAML, with the environment its host gives it.
pub struct PluginConfig {
    /// Where it was found, for messages (`envoy config "devgate"`, `WasmPlugin devgate`).
    pub location: String,
    /// The plugin configuration JSON.
    pub json: String,
    /// Environment the VM is given (`vm_config.environment_variables.key_values`, `vmConfig.env`).
    pub env: HashMap<String, String>,
    /// Where this host reads `secret_env` and `users_env`, for the error when one is not set.
    pub env_place: &'static str,
    /// Why a client certificate on the Envoy filter chain carrying it is not known to be
    /// validated (`edge.client_certs` is then refused); `None`: validated, plain text, or not in
    /// a filter chain this file shows.
    pub unvalidated_certs: Option<&'static str>,
}

/// Why Envoy would report a *presented* client certificate on a filter chain with this
/// `transport_socket` that it did not validate; `None` when it validates every certificate it
/// reports (a `validation_context` with a `trusted_ca`, or a custom validator, and neither
/// `ACCEPT_UNTRUSTED` nor `allow_expired_certificate`), or the chain is not TLS.
fn unvalidated_certs(transport: Option<&Yaml>) -> Option<&'static str> {
    let typed = get(transport?, "typed_config")?;
    let kind = get(typed, "@type")
        .and_then(Yaml::as_str)
        .unwrap_or_default();
    let tls = if kind.ends_with("QuicDownstreamTransport") {
        get(typed, "downstream_tls_context")?
    } else if kind.ends_with("DownstreamTlsContext") {
        typed
    } else {
        return None;
    };
    let Some(common) = get(tls, "common_tls_context") else {
        return Some("has no validation_context");
    };
    let validation = match (
        get(common, "validation_context"),
        get(common, "combined_validation_context"),
    ) {
        (Some(v), _) => v,
        (None, Some(c)) => match get(c, "default_validation_context") {
            Some(v) if get(c, "validation_context_sds_secret_config").is_none() => v,
            _ => {
                return Some("takes its validation context from SDS, which check-config cannot see")
            }
        },
        (None, None) if get(common, "validation_context_sds_secret_config").is_some() => {
            return Some("takes its validation context from SDS, which check-config cannot see")
        }
        (None, None) => return Some("has no validation_context"),
    };
    if get(validation, "trust_chain_verification").and_then(Yaml::as_str)
        == Some("ACCEPT_UNTRUSTED")
    {
        return Some("accepts untrusted certificates (trust_chain_verification: ACCEPT_UNTRUSTED)");
    }
    if get(validation, "allow_expired_certificate").and_then(Yaml::as_bool) == Some(true) {
        return Some("accepts expired certificates (allow_expired_certificate: true)");
    }
    if get(validation, "trusted_ca").is_none()
        && get(validation, "custom_validator_config").is_none()
    {
        return Some("has a validation_context without a trusted_ca");
    }
    None
}

/// The Wasm filter in an Envoy bootstrap: the VM's environment.
const WASM_BOOTSTRAP_ENV: &str = "the Wasm VM (vm_config.environment_variables)";
/// The native module: Envoy's own environment, which check-config stands in for with its own.
const NATIVE_ENV: &str =
    "Envoy's process environment (the native module's; check-config reads its own)";
/// Istio's WasmPlugin: the VM's environment from `spec.vmConfig.env`.
const ISTIO_ENV: &str = "the Wasm VM (spec.vmConfig.env)";
/// Envoy Gateway: the VM's environment from the proxy's, named by `env.hostKeys`.
const GATEWAY_ENV: &str =
    "the Wasm VM (spec.wasm[].env.hostKeys, from the proxy's environment; check-config reads its own)";

fn get<'a>(y: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    y.as_hash()?.get(&Yaml::String(key.to_string()))
}

fn to_json(y: &Yaml) -> serde_json::Value {
    use serde_json::Value;
    match y {
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::from(s.clone()),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), to_json(v))))
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

fn metadata_name(y: &Yaml) -> &str {
    get(y, "metadata")
        .and_then(|m| get(m, "name"))
        .and_then(Yaml::as_str)
        .unwrap_or("(unnamed)")
}

/// `chain`: what [`unvalidated_certs`] says of the innermost filter chain around `y`.
fn walk(y: &Yaml, chain: Option<&'static str>, out: &mut Vec<PluginConfig>) {
    match y {
        Yaml::Hash(h) => {
            // A listener's filter chain: its filters run behind its transport socket.
            let chain = if get(y, "filters").and_then(Yaml::as_vec).is_some() {
                unvalidated_certs(get(y, "transport_socket"))
            } else {
                chain
            };
            if let (Some(cfg), Some(vm)) = (get(y, "configuration"), get(y, "vm_config")) {
                if let Some(json) = get(cfg, "value").and_then(Yaml::as_str) {
                    let env = get(vm, "environment_variables")
                        .and_then(|e| get(e, "key_values"))
                        .and_then(Yaml::as_hash)
                        .map(|kv| {
                            kv.iter()
                                .filter_map(|(k, v)| {
                                    Some((k.as_str()?.to_string(), v.as_str()?.to_string()))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let name = get(y, "name").and_then(Yaml::as_str).unwrap_or("(unnamed)");
                    out.push(PluginConfig {
                        location: format!("Envoy Wasm plugin {name:?}"),
                        json: json.to_string(),
                        env,
                        env_place: WASM_BOOTSTRAP_ENV,
                        unvalidated_certs: chain,
                    });
                }
            }
            if get(y, "dynamic_module_config").is_some()
                && get(y, "filter_name").and_then(Yaml::as_str) == Some("devgate")
            {
                if let Some(json) = get(y, "filter_config")
                    .and_then(|c| get(c, "value"))
                    .and_then(Yaml::as_str)
                {
                    // The native module reads keys from Envoy's own environment: check with ours.
                    out.push(PluginConfig {
                        location: "Envoy dynamic module \"devgate\"".to_string(),
                        json: json.to_string(),
                        env: HashMap::new(),
                        env_place: NATIVE_ENV,
                        unvalidated_certs: chain,
                    });
                }
            }
            if get(y, "kind").and_then(Yaml::as_str) == Some("EnvoyExtensionPolicy") {
                let name = metadata_name(y);
                let wasm = get(y, "spec")
                    .and_then(|s| get(s, "wasm"))
                    .and_then(Yaml::as_vec);
                for (i, plugin) in wasm.into_iter().flatten().enumerate() {
                    // `env.hostKeys` names variables of the proxy's environment: take ours.
                    out.push(PluginConfig {
                        location: format!("EnvoyExtensionPolicy {name:?} wasm[{i}]"),
                        json: get(plugin, "config")
                            .map_or_else(|| "{}".to_string(), |c| to_json(c).to_string()),
                        env: HashMap::new(),
                        env_place: GATEWAY_ENV,
                        unvalidated_certs: None,
                    });
                }
                return;
            }
            if get(y, "kind").and_then(Yaml::as_str) == Some("WasmPlugin") {
                let spec = get(y, "spec");
                let config = spec.and_then(|s| get(s, "pluginConfig"));
                let env = spec
                    .and_then(|s| get(s, "vmConfig"))
                    .and_then(|v| get(v, "env"))
                    .and_then(Yaml::as_vec)
                    .map(|list| {
                        list.iter()
                            .filter_map(|e| {
                                let name = get(e, "name")?.as_str()?.to_string();
                                // valueFrom: HOST reads the proxy's environment: take ours.
                                let value = get(e, "value")?.as_str()?.to_string();
                                Some((name, value))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let name = metadata_name(y);
                out.push(PluginConfig {
                    location: format!("WasmPlugin {name:?}"),
                    json: config.map_or_else(|| "{}".to_string(), |c| to_json(c).to_string()),
                    env,
                    env_place: ISTIO_ENV,
                    unvalidated_certs: None,
                });
                return;
            }
            for v in h.values() {
                walk(v, chain, out);
            }
        }
        Yaml::Array(a) => a.iter().for_each(|v| walk(v, chain, out)),
        _ => {}
    }
}

/// Every plugin configuration in every document of `text`.
pub fn plugin_configs(text: &str) -> Result<Vec<PluginConfig>, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let mut out = Vec::new();
    for d in &docs {
        walk(d, None, &mut out);
    }
    Ok(out)
}
