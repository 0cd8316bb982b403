# Writes tests/vectors/jose.json, the known-answer vectors of devgate's public-key JWS verifier
# (src/core/jose/tests/vectors.rs), with an independent signer: PyJWT and cryptography.
# Run from the repository root:
#   .venv/bin/python tests/vectors/make_jose_vectors.py
# The keys are kept in the vectors file (test keys, never used anywhere else): a re-run reads
# them back, so only the ECDSA and PSS signatures (randomized) change. Commit one output.
# It also writes tests/vectors/jose_assertions.json: per algorithm a few distinct valid OIDC ID
# tokens (far-future exp) under the same keys, for the wasm tier's fuel meter
# (tests/wasm/tests/fuel.rs: a verified-assertion cache miss and hit per algorithm).
import base64, hashlib, hmac, json, pathlib, warnings

import jwt  # PyJWT
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

warnings.simplefilter("ignore")
OUT = pathlib.Path(__file__).with_name("jose.json")
ASSERTIONS_OUT = pathlib.Path(__file__).with_name("jose_assertions.json")
# The fuel meter's assertions: the issuer and audience its configuration names, issued
# 2024-01-01, expiring 2100-01-01 (the wasm host's clock is 2026-01-01).
FUEL_ISSUER = "https://idp.example"
FUEL_AUDIENCE = "devgate-fuel"
FUEL_IAT = 1704067200
FUEL_EXP = 4102444800
FUEL_TOKENS_PER_ALG = 6
ALB_SIGNER = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/dev/50dc6c495c0c9188"
ALB_CLIENT = "5ifq7ncu8m5p4n3kx0example"

# kid -> (how to make it, JOSE alg it signs with)
SPECS = {
    "es256": (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
    "es384": (lambda: ec.generate_private_key(ec.SECP384R1()), "ES384"),
    "rs256": (lambda: rsa.generate_private_key(65537, 2048), "RS256"),
    "ps256": (lambda: rsa.generate_private_key(65537, 3072), "PS256"),
    "eddsa": (lambda: ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
    "rsa1024": (lambda: rsa.generate_private_key(65537, 1024), "RS256"),
}
CURVE_ORDER = {
    "ES256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "ES384": int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AEC"
                 "EC196ACCC52973", 16),
}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_padded(data):
    return base64.urlsafe_b64encode(data).decode()


def load_keys():
    old = json.loads(OUT.read_text())["private_keys"] if OUT.exists() else {}
    keys = {}
    for kid, (make, _) in SPECS.items():
        if kid in old:
            keys[kid] = serialization.load_pem_private_key(old[kid].encode(), None)
        else:
            keys[kid] = make()
    return keys


def private_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def jwk(key, kid, **extra):
    public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        out = json.loads(ECAlgorithm.to_jwk(public))
    elif isinstance(public, rsa.RSAPublicKey):
        out = json.loads(RSAAlgorithm.to_jwk(public))
    else:
        out = json.loads(OKPAlgorithm.to_jwk(public))
    out["kid"] = kid
    out.update(extra)
    return out


def sign(key, alg, data, der=False):
    """The JWS signature of `data` (raw r||s for ECDSA, unless `der`)."""
    if alg in ("ES256", "ES384"):
        h = hashes.SHA256() if alg == "ES256" else hashes.SHA384()
        sig = key.sign(data, ec.ECDSA(h))
        if der:
            return sig
        r, s = decode_dss_signature(sig)
        n = 32 if alg == "ES256" else 48
        return r.to_bytes(n, "big") + s.to_bytes(n, "big")
    if alg == "RS256":
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if alg == "PS256":
        return key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    return key.sign(data)


def high_s(alg, sig):
    """The other valid ECDSA signature (r, n - s): high-S when s was low, and vice versa."""
    n = len(sig) // 2
    r, s = sig[:n], int.from_bytes(sig[n:], "big")
    return r + (CURVE_ORDER[alg] - s).to_bytes(n, "big")


def token(key, alg, header, payload, enc=b64, der=False):
    signing_input = enc(json.dumps(header, separators=(",", ":")).encode()) + "." + enc(
        json.dumps(payload, separators=(",", ":")).encode())
    return signing_input + "." + enc(sign(key, alg, signing_input.encode(), der))


def main():
    keys = load_keys()
    jwks = {"keys": [jwk(keys[kid], kid) for kid in SPECS if kid != "rsa1024"]}
    cases = []

    def case(name, tok, expect, algorithms, payload=None, jwks_=None, padded=False, **extra):
        c = {"name": name, "token": tok, "algorithms": algorithms, "padded": padded,
             "expect": expect}
        if payload is not None:
            c["payload"] = payload
        if jwks_ is not None:
            c["jwks"] = jwks_
        c.update(extra)
        cases.append(c)

    for kid, (_, alg) in SPECS.items():
        if kid == "rsa1024":
            continue
        key = keys[kid]
        claims = {"sub": f"{kid}@example.com", "iss": "https://issuer.example", "n": 1}
        good = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})  # PyJWT
        case(f"{kid} valid (PyJWT)", good, "ok", [alg], payload=claims)
        case(f"{kid} valid, alg allowed among others", good, "ok", ["RS256", alg, "EdDSA"],
             payload=claims)
        other = "ES256" if alg != "ES256" else "RS256"
        case(f"{kid} alg not in the allow list", good, "unsupported_alg", [other])
        h, p, s = good.split(".")
        other_payload = b64(json.dumps({"sub": "mallory@example.com"}).encode())
        case(f"{kid} tampered payload", f"{h}.{other_payload}.{s}", "bad_signature", [alg])
        sig = bytearray(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
        sig[len(sig) // 2] ^= 1
        case(f"{kid} tampered signature", f"{h}.{p}.{b64(bytes(sig))}", "bad_signature", [alg])
        case(f"{kid} kid not in the set",
             token(key, alg, {"alg": alg, "kid": "nope"}, claims), "unknown_kid", [alg])
        case(f"{kid} no kid", token(key, alg, {"alg": alg}, claims), "missing_kid", [alg])
        case(f"{kid} crit header",
             token(key, alg, {"alg": alg, "kid": kid, "crit": ["exp"], "exp": 1}, claims),
             "unsupported_header", [alg])
        # alg none: unsigned, with an empty and with a non-empty signature segment.
        none_h = b64(json.dumps({"alg": "none", "kid": kid}).encode())
        case(f"{kid} alg none, empty signature", f"{none_h}.{p}.", "malformed", [alg])
        case(f"{kid} alg none, signature kept", f"{none_h}.{p}.{s}", "unsupported_alg", [alg])
        # Algorithm confusion: HS256 with the public key's PEM, and its JWK, as the HMAC secret.
        for what, secret in [("PEM", public_pem(key).encode()),
                             ("JWK", json.dumps(jwk(key, kid)).encode())]:
            hs_in = b64(json.dumps({"alg": "HS256", "kid": kid}).encode()) + "." + p
            tag = hmac.new(secret, hs_in.encode(), hashlib.sha256).digest()
            case(f"{kid} HS256 with the public {what} as secret", f"{hs_in}.{b64(tag)}",
                 "unsupported_alg", [alg])
        if alg in ("ES256", "ES384"):
            raw_sig = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
            case(f"{kid} the other S (high-S when PyJWT's was low)",
                 f"{h}.{p}.{b64(high_s(alg, raw_sig))}", "ok", [alg], payload=claims)
            case(f"{kid} DER signature", token(key, alg, {"alg": alg, "kid": kid}, claims,
                                               der=True), "bad_signature", [alg])
        # A key of another type under this kid: the alg does not fit the key's type.
        mismatched = {"keys": [jwk(keys["es256" if kid != "es256" else "rs256"], kid)]}
        case(f"{kid} the set's key under this kid is of another type", good,
             "unsupported_alg", [alg], jwks_=mismatched)

    # A JWK's own alg must equal the token's.
    rs = keys["rs256"]
    pinned = {"keys": [jwk(rs, "rs256", alg="PS256")]}
    rs_tok = token(rs, "RS256", {"alg": "RS256", "kid": "rs256"}, {"sub": "a"})
    case("JWK alg PS256, token RS256", rs_tok, "unsupported_alg", ["RS256", "PS256"],
         jwks_=pinned)
    ps_tok = token(rs, "PS256", {"alg": "PS256", "kid": "rs256"}, {"sub": "a"})
    case("JWK alg PS256, token PS256", ps_tok, "ok", ["RS256", "PS256"], jwks_=pinned,
         payload={"sub": "a"})
    # The same RSA key verifies RS256 and PS256 when its JWK pins no alg.
    case("RSA key without alg, PS256", ps_tok, "ok", ["PS256"], payload={"sub": "a"},
         jwks_={"keys": [jwk(rs, "rs256")]})

    # AWS ALB: padded base64url, signer and client in the header, signature over the bytes sent.
    es = keys["es256"]
    alb_header = {"typ": "JWT", "kid": "es256", "alg": "ES256", "iss": "https://idp.example",
                  "client": ALB_CLIENT, "signer": ALB_SIGNER, "exp": 1700000300}
    alb_claims = {"sub": "1234", "email": "alice@example.com", "exp": 1700000300,
                  "iss": "https://idp.example"}
    alb = token(es, "ES256", alb_header, alb_claims, enc=b64_padded)
    assert "=" in alb, "the vector must carry padding"
    case("ALB padded token, padded allowed", alb, "ok", ["ES256"], padded=True,
         payload=alb_claims, signer=ALB_SIGNER, client=ALB_CLIENT)
    case("ALB padded token, padding not allowed", alb, "malformed", ["ES256"])
    h, p, s = alb.split(".")
    case("ALB token, padding stripped after signing (signature over other bytes)",
         f"{h.rstrip('=')}.{p.rstrip('=')}.{s}", "bad_signature", ["ES256"], padded=True)

    # RSA-1024: never a usable key.
    small = keys["rsa1024"]
    small_tok = token(small, "RS256", {"alg": "RS256", "kid": "rsa1024"}, {"sub": "a"})
    case("RSA-1024 key in the set beside others", small_tok, "unknown_kid", ["RS256"],
         jwks_={"keys": [jwk(small, "rsa1024"), jwk(rs, "rs256")]})

    pems = [{"kid": kid, "pem": public_pem(keys[kid]), "alg": alg,
             "expect": "no_usable_key" if kid == "rsa1024" else "ok"}
            for kid, (_, alg) in SPECS.items()]
    sets = [
        {"name": "only an RSA-1024 key", "jwks": {"keys": [jwk(small, "rsa1024")]},
         "expect": "no_usable_key"},
        {"name": "the main set", "jwks": jwks, "expect": "ok", "len": len(jwks["keys"])},
    ]
    out = {
        "generated_by": f"tests/vectors/make_jose_vectors.py, PyJWT {jwt.__version__}",
        "private_keys": {kid: private_pem(k) for kid, k in keys.items()},
        "jwks": jwks,
        "cases": cases,
        "pems": pems,
        "sets": sets,
    }
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{OUT}: {len(cases)} cases, {len(pems)} PEM keys")
    write_assertions(keys, jwks)


def write_assertions(keys, jwks):
    """Distinct valid ID tokens per algorithm (they differ in `jti` only, all the same length),
    signed by PyJWT with the main set's keys."""
    tokens = {}
    for kid, (_, alg) in SPECS.items():
        if kid == "rsa1024":
            continue
        tokens[alg] = [
            jwt.encode({"iss": FUEL_ISSUER, "aud": FUEL_AUDIENCE, "sub": f"{kid}-{i}",
                        "email": "ada@example.com", "iat": FUEL_IAT, "exp": FUEL_EXP,
                        "jti": f"fuel-{kid}-{i}"},
                       keys[kid], algorithm=alg, headers={"kid": kid})
            for i in range(FUEL_TOKENS_PER_ALG)]
    out = {
        "generated_by": f"tests/vectors/make_jose_vectors.py, PyJWT {jwt.__version__}",
        "issuer": FUEL_ISSUER,
        "audience": FUEL_AUDIENCE,
        "iat": FUEL_IAT,
        "exp": FUEL_EXP,
        "jwks": jwks,
        "tokens": tokens,
    }
    ASSERTIONS_OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{ASSERTIONS_OUT}: {FUEL_TOKENS_PER_ALG} tokens for each of {', '.join(tokens)}")


main()
