//! Public keys and algorithms in the configuration, shared by every reader of tokens others sign
//! (edge assertions, the key service's access tokens, user tokens): one mechanism.

use super::edge::{RawPemKey, RawPublicKeys};
use super::{err, ConfigError};
use crate::core::jose::jwk::MAX_JWKS_ENTRIES;
use crate::core::jose::{Alg, KeysError, PublicKeys, MAX_KEY_ID_LEN};
use crate::core::keysource::KeySource;

/// What a JWK set's refusal means, for the config error.
fn jwks_message(e: KeysError) -> &'static str {
    match e {
        KeysError::Malformed => {
            "not a JWK set ({\"keys\": [...]}) of well-formed keys: a usable entry is broken, \
             a member repeats, a private key member (d) is present, or two keys share a kid"
        }
        KeysError::TooLarge => "too large: at most 64 KiB and 32 keys",
        KeysError::NoUsableKey => {
            "no key devgate verifies with: EC P-256 or P-384, RSA of 2048-8192 bits, or OKP \
             Ed25519, with a kid and use absent or sig"
        }
    }
}

/// What a PEM key's refusal means, for the config error.
fn pem_message(e: KeysError) -> &'static str {
    match e {
        KeysError::Malformed => "not an SPKI PEM public key (-----BEGIN PUBLIC KEY-----)",
        KeysError::TooLarge => "too large: at most 16 KiB",
        KeysError::NoUsableKey => {
            "not a key devgate verifies with: EC P-256 or P-384, RSA of 2048-8192 bits, or \
             Ed25519"
        }
    }
}

/// The inline keys of `field` (`jwks` or `pem`, at most one of them given): `None` when neither.
pub(super) fn inline_keys(
    field: &str,
    jwks: Option<&serde_json::Value>,
    pem: Option<&[RawPemKey]>,
) -> Result<Option<PublicKeys>, ConfigError> {
    match (jwks, pem) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(err(field, "exactly one of jwks and pem")),
        (Some(jwks), None) => {
            let field = format!("{field}.jwks");
            let bytes = serde_json::to_vec(jwks).map_err(|_| err(field.as_str(), "not JSON"))?;
            PublicKeys::from_jwks(&bytes)
                .map(Some)
                .map_err(|e| err(field, jwks_message(e)))
        }
        (None, Some(pems)) => {
            if pems.is_empty() {
                return Err(err(format!("{field}.pem"), "must list at least one key"));
            }
            if pems.len() > MAX_JWKS_ENTRIES {
                return Err(err(format!("{field}.pem"), "at most 32 keys"));
            }
            let mut keys = PublicKeys::default();
            for (i, raw) in pems.iter().enumerate() {
                if raw.id.is_empty() || raw.id.len() > MAX_KEY_ID_LEN {
                    return Err(err(
                        format!("{field}.pem[{i}].id"),
                        "must be 1 to 256 bytes",
                    ));
                }
                if keys.has_kid(&raw.id) {
                    return Err(err(
                        format!("{field}.pem[{i}].id"),
                        "names the same key as an earlier entry",
                    ));
                }
                let one = PublicKeys::from_pem(&raw.id, raw.pem.as_bytes())
                    .map_err(|e| err(format!("{field}.pem[{i}].pem"), pem_message(e)))?;
                keys = keys.merged(one);
            }
            Ok(Some(keys))
        }
    }
}

/// `raw` (`field`) as algorithms, or `default` when absent; never empty, never an HS* or `none`.
pub(super) fn algorithms(
    field: &str,
    raw: Option<&[String]>,
    default: &[Alg],
) -> Result<Vec<Alg>, ConfigError> {
    let Some(raw) = raw else {
        return match default.is_empty() {
            true => Err(err(field, "required")),
            false => Ok(default.to_vec()),
        };
    };
    if raw.is_empty() {
        return Err(err(field, "must list at least one algorithm"));
    }
    let mut out = Vec::new();
    for (i, name) in raw.iter().enumerate() {
        let alg = Alg::parse(name).ok_or_else(|| {
            err(
                format!("{field}[{i}]"),
                "one of ES256, ES384, RS256, PS256, EdDSA",
            )
        })?;
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    Ok(out)
}

/// The key source of a reader of tokens others sign that takes inline keys only
/// (`api.service`, `api.user_tokens`): `<section>.public_keys` (`jwks` or `pem`) and
/// `<section>.algorithms` (required; each must fit one of the keys).
pub(super) fn inline_key_source(
    section: &str,
    keys: &RawPublicKeys,
    algorithms_raw: Option<&[String]>,
) -> Result<KeySource, ConfigError> {
    let field = format!("{section}.public_keys");
    for (name, given) in [
        ("jwks_url", keys.jwks_url.is_some()),
        ("pem_url", keys.pem_url.is_some()),
    ] {
        if given {
            return Err(err(
                format!("{field}.{name}"),
                format!(
                    "not supported in {section}: give the keys inline (jwks or pem); fetched \
                     keys are for edge assertions"
                ),
            ));
        }
    }
    let keys = inline_keys(&field, keys.jwks.as_ref(), keys.pem.as_deref())?
        .ok_or_else(|| err(field.as_str(), "one of jwks and pem is required"))?;
    let algorithms = algorithms(&format!("{section}.algorithms"), algorithms_raw, &[])?;
    let names = algorithms_raw.unwrap_or_default();
    for (i, alg) in names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| Some((i, Alg::parse(n)?)))
    {
        if !keys.fits(alg) {
            return Err(err(
                format!("{section}.algorithms[{i}]"),
                format!("no key of public_keys verifies {}", alg.code()),
            ));
        }
    }
    Ok(KeySource::Public { algorithms, keys })
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::{Signature, SigningKey};
    use serde_json::{json, Value};

    use crate::config::parse_policy_with_env;
    use crate::core::callout::CalloutAnswer;
    use crate::core::keyservice::answer::classify;
    use crate::core::keyservice::testing::{claims, NOW};
    use crate::core::keyservice::Resolution;
    use crate::core::keysource::KeySource;
    use crate::core::usertoken;

    const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn env(v: &str) -> Option<String> {
        (v == "KS").then(|| SECRET.to_string())
    }

    fn b64(data: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(data)
    }

    fn signing_key() -> SigningKey {
        SigningKey::from_slice(&[9u8; 32]).unwrap()
    }

    /// The JWK set of the ES256 key, its key named `es1`.
    fn jwks() -> Value {
        let point = signing_key().verifying_key().to_encoded_point(false);
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "es1", "use": "sig",
            "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}]})
    }

    /// An ES256 token of `claims`, signed by `es1`.
    fn es256(claims: &Value) -> String {
        let header = b64(br#"{"alg":"ES256","kid":"es1","typ":"at+jwt"}"#);
        let input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
        let sig: Signature = signing_key().sign(input.as_bytes());
        format!("{input}.{}", b64(&sig.to_bytes()))
    }

    /// A configuration with the key service given `service` (extra members) and
    /// `api.user_tokens` given `users` (`None`: absent).
    fn config(service: Value, users: Option<Value>) -> Value {
        let mut svc = json!({"cluster": "ks"});
        for (k, v) in service.as_object().unwrap() {
            svc[k] = v.clone();
        }
        let mut api = json!({
            "routes": [{"prefix": "/v1/", "product": "maps", "user_tokens": {"require": "staff"}}],
            "service": svc,
        });
        if let Some(users) = users {
            api["user_tokens"] = users;
        }
        json!({ "api": api })
    }

    fn parse(config: &Value) -> Result<crate::core::policy::Policy, String> {
        parse_policy_with_env(config.to_string().as_bytes(), &env).map_err(|e| e.field)
    }

    fn public() -> Value {
        json!({"public_keys": {"jwks": jwks()}, "algorithms": ["ES256"]})
    }

    #[test]
    fn the_key_service_and_user_tokens_verify_es256_access_tokens() {
        let policy = parse(&config(public(), None)).unwrap();
        let api = policy.api.unwrap();
        let service = api.service.unwrap();
        assert!(matches!(service.signing, KeySource::Public { .. }));
        let token = es256(&claims("private_key", NOW + 3600));
        let answer = CalloutAnswer {
            status: Some(200),
            retry_after: None,
            body: token.as_bytes(),
        };
        let r = classify(&service, answer, NOW);
        assert!(matches!(r, Resolution::Resolved { .. }), "{r:?}");
        // The same claims under HS256 do not resolve with public keys.
        let hs = crate::core::keyservice::testing::token(&claims("private_key", NOW + 3600));
        let answer = CalloutAnswer {
            status: Some(200),
            retry_after: None,
            body: hs.as_bytes(),
        };
        assert!(!matches!(
            classify(&service, answer, NOW),
            Resolution::Resolved { .. }
        ));

        // User tokens default to the key service's keys.
        let users = api.user_tokens.unwrap();
        let user = json!({"sub": "u1", "exp": NOW + 60, "is_staff": true});
        let got = usertoken::verify(&users, es256(&user).as_bytes(), NOW).unwrap();
        assert_eq!(got.id, "u1");
        assert!(got.staff);
    }

    #[test]
    fn user_tokens_take_their_own_public_keys_as_pem() {
        let vectors: Value =
            serde_json::from_str(include_str!("../../tests/vectors/jose.json")).unwrap();
        let pem = &vectors["pems"][0];
        assert_eq!(pem["kid"], "es256");
        let hs = json!({"keys": [{"id": "ks1", "secret_env": "KS"}]});
        let users = json!({"public_keys": {"pem": [{"id": "es256", "pem": pem["pem"]}]},
            "algorithms": ["ES256"]});
        let policy = parse(&config(hs, Some(users))).unwrap();
        let api = policy.api.unwrap();
        assert!(matches!(api.service.unwrap().signing, KeySource::Hmac(_)));
        let users = api.user_tokens.unwrap();
        let valid = vectors["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "es256 valid (PyJWT)")
            .unwrap();
        let payload = users
            .keys
            .authenticate(valid["token"].as_str().unwrap().as_bytes())
            .unwrap();
        let payload: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(payload, valid["payload"]);
    }

    #[test]
    fn errors_name_the_field() {
        let hs = json!([{"id": "ks1", "secret_env": "KS"}]);
        let cases = [
            (
                json!({"keys": hs, "public_keys": {"jwks": jwks()}}),
                "api.service",
            ),
            (json!({}), "api.service"),
            (
                json!({"keys": hs, "algorithms": ["ES256"]}),
                "api.service.algorithms",
            ),
            (
                json!({"public_keys": {"jwks": jwks()}}),
                "api.service.algorithms",
            ),
            (
                json!({"public_keys": {"jwks": jwks()}, "algorithms": []}),
                "api.service.algorithms",
            ),
            (
                json!({"public_keys": {"jwks": jwks()}, "algorithms": ["ES256", "HS256"]}),
                "api.service.algorithms[1]",
            ),
            (
                json!({"public_keys": {"jwks": jwks()}, "algorithms": ["ES256", "RS256"]}),
                "api.service.algorithms[1]",
            ),
            (
                json!({"public_keys": {"jwks": {"keys": []}}, "algorithms": ["ES256"]}),
                "api.service.public_keys.jwks",
            ),
            (
                json!({"public_keys": {}, "algorithms": ["ES256"]}),
                "api.service.public_keys",
            ),
            (
                json!({"public_keys": {"jwks": jwks(), "pem": []}, "algorithms": ["ES256"]}),
                "api.service.public_keys",
            ),
            (
                json!({"public_keys": {"pem": []}, "algorithms": ["ES256"]}),
                "api.service.public_keys.pem",
            ),
            (
                json!({"public_keys": {"pem": [{"id": "a", "pem": "nope"}]},
                    "algorithms": ["ES256"]}),
                "api.service.public_keys.pem[0].pem",
            ),
            (
                json!({"public_keys": {"jwks_url": {"cluster": "idp", "path": "/jwks"}},
                    "algorithms": ["ES256"]}),
                "api.service.public_keys.jwks_url",
            ),
            (
                json!({"public_keys": {"pem_url": {"cluster": "idp", "path": "/k/"}},
                    "algorithms": ["ES256"]}),
                "api.service.public_keys.pem_url",
            ),
        ];
        for (service, field) in cases {
            assert_eq!(
                parse(&config(service.clone(), None)).unwrap_err(),
                field,
                "{service}"
            );
        }
        let vectors: Value =
            serde_json::from_str(include_str!("../../tests/vectors/jose.json")).unwrap();
        let pem = &vectors["pems"][0]["pem"];
        let users = json!({"public_keys": {"pem": [{"id": "a", "pem": pem}, {"id": "a", "pem": pem}]},
            "algorithms": ["ES256"]});
        assert_eq!(
            parse(&config(public(), Some(users))).unwrap_err(),
            "api.user_tokens.public_keys.pem[1].id"
        );
        let users =
            json!({"keys": [{"id": "u1", "secret_env": "KS"}], "public_keys": {"jwks": jwks()}});
        assert_eq!(
            parse(&config(public(), Some(users))).unwrap_err(),
            "api.user_tokens"
        );
        let users = json!({"algorithms": ["ES256"]});
        assert_eq!(
            parse(&config(public(), Some(users))).unwrap_err(),
            "api.user_tokens.algorithms"
        );
    }
}
