//! Known answers from an independent signer: tests/vectors/jose.json, written by
//! tests/vectors/make_jose_vectors.py (PyJWT and cryptography).

use serde_json::Value;

use crate::core::jose::{verify, Alg, PublicKeys, Rules};

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../../../tests/vectors/jose.json")).unwrap()
}

fn jwks(v: &Value) -> PublicKeys {
    PublicKeys::from_jwks(serde_json::to_string(v).unwrap().as_bytes()).unwrap()
}

fn algorithms(v: &Value) -> Vec<Alg> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| Alg::parse(a.as_str().unwrap()).unwrap())
        .collect()
}

/// The outcome of `token` under `keys` as the vectors spell it: `ok` or an error code.
fn outcome(case: &Value, keys: &PublicKeys) -> (String, Option<crate::core::jose::Verified>) {
    let algs = algorithms(&case["algorithms"]);
    let rules = Rules {
        algorithms: &algs,
        padded: case["padded"].as_bool().unwrap(),
    };
    match verify(case["token"].as_str().unwrap().as_bytes(), keys, &rules) {
        Ok(v) => ("ok".to_string(), Some(v)),
        Err(e) => (e.code().to_string(), None),
    }
}

#[test]
fn every_case_has_its_known_answer() {
    let v = vectors();
    let main_set = jwks(&v["jwks"]);
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() > 60);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let keys = match case.get("jwks") {
            Some(set) => jwks(set),
            None => main_set.clone(),
        };
        let (got, verified) = outcome(case, &keys);
        assert_eq!(got, case["expect"].as_str().unwrap(), "{name}");
        if let Some(verified) = verified {
            let payload: Value = serde_json::from_slice(&verified.payload).unwrap();
            assert_eq!(payload, case["payload"], "{name}");
            assert_eq!(
                verified.signer.as_deref(),
                case.get("signer").and_then(Value::as_str),
                "{name}"
            );
            assert_eq!(
                verified.client.as_deref(),
                case.get("client").and_then(Value::as_str),
                "{name}"
            );
        }
    }
}

#[test]
fn every_algorithm_verifies_with_its_pem_key_too() {
    let v = vectors();
    for pem in v["pems"].as_array().unwrap() {
        let kid = pem["kid"].as_str().unwrap();
        let keys = PublicKeys::from_pem(kid, pem["pem"].as_str().unwrap().as_bytes());
        match pem["expect"].as_str().unwrap() {
            "ok" => {
                let keys = keys.unwrap();
                assert!(keys.has_kid(kid));
                assert_eq!(keys.len(), 1);
                let valid = v["cases"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["name"] == format!("{kid} valid (PyJWT)"))
                    .unwrap();
                assert_eq!(outcome(valid, &keys).0, "ok", "{kid}");
            }
            code => assert_eq!(keys.unwrap_err().code(), code, "{kid}"),
        }
    }
}

#[test]
fn sets_read_as_expected() {
    let v = vectors();
    for set in v["sets"].as_array().unwrap() {
        let name = set["name"].as_str().unwrap();
        let got = PublicKeys::from_jwks(serde_json::to_string(&set["jwks"]).unwrap().as_bytes());
        match set["expect"].as_str().unwrap() {
            "ok" => assert_eq!(got.unwrap().len() as u64, set["len"].as_u64().unwrap()),
            code => assert_eq!(got.unwrap_err().code(), code, "{name}"),
        }
    }
}
