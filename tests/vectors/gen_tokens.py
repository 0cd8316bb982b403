# Regenerates tests/vectors/tokens.json with PyJWT (run from the repository root):
#   .venv/bin/python tests/vectors/gen_tokens.py > tests/vectors/tokens.json
# Deterministic: the same PyJWT version writes the same file. This source is embedded in the
# output ("generated_by"), so the vectors file records exactly how it was produced.
import base64, hashlib, hmac, json, pathlib, warnings
import jwt  # PyJWT

warnings.simplefilter("ignore")  # PyJWT warns about the short keys of the refused HS384/HS512 vectors

NOW = 1700000000
K1 = hashlib.sha256(b"devgate test vector key k1").digest()  # 32 bytes, public test key
K2 = hashlib.sha256(b"devgate test vector key k2").digest()
WRONG = hashlib.sha256(b"devgate test vector wrong key").digest()
RFC_KEY = ("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9"
           "CAow")
RFC_TOKEN = ("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
             ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
             ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
KNOWN = ["sub", "dgp", "dgc", "cip", "jti", "iat", "nbf", "exp"]  # devgate's claim order


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pyjwt(claims, key=K1, kid="k1", alg="HS256", **headers):
    if kid is not None:
        headers["kid"] = kid
    return jwt.encode(claims, key, algorithm=alg, headers=headers or None)


def raw(header, payload, key=K1):
    # Hand-built token: exact JSON bytes, HMAC-SHA256 signed (for what PyJWT refuses to write).
    signing_input = b64(header.encode()) + "." + b64(payload.encode())
    tag = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(tag)


def dev(**extra):
    claims = {"sub": "alice", "dgp": "developer", "iat": NOW, "exp": NOW + 3600}
    claims.update(extra)
    return {k: claims[k] for k in KNOWN if k in claims} | {k: v for k, v in claims.items() if k not in KNOWN}


def session(**extra):
    return dev(**({"dgp": "session", "dgc": "devgate_token"} | extra))


vectors = []


def vec(name, token, expect, purpose="developer", key_id="k1", secret=K1, now=NOW, mint=False, **more):
    v = {"name": name, "token": token, "key_id": key_id,
         "secret_b64url": secret if isinstance(secret, str) else b64(secret),
         "now": now, "purpose": purpose, "expect": expect}
    v.update(more)
    if expect == "ok":
        payload = jwt.decode(token, options={"verify_signature": False})
        v["claims"] = {k: payload[k] for k in KNOWN if k in payload}
        v["mint"] = mint
    vectors.append(v)


HDR = '{"alg":"HS256","kid":"k1","typ":"JWT"}'
OKP = '{"sub":"alice","dgp":"developer","exp":%d}' % (NOW + 60)

# Accepted.
vec("developer", pyjwt(dev()), "ok", mint=True)
vec("session", pyjwt(session()), "ok", purpose="session", cookie="devgate_token", mint=True)
vec("all_claims", pyjwt(dev(cip="192.0.2.10", jti="0f3c9a", nbf=NOW - 5)), "ok", peer="192.0.2.10", mint=True)
vec("bound_ipv6", pyjwt(dev(cip="2001:db8::7")), "ok", peer="2001:db8:0:0:0:0:0:7", mint=True)
vec("bound_v4_seen_as_mapped_v6", pyjwt(dev(cip="192.0.2.10")), "ok", peer="::ffff:192.0.2.10")
vec("subject_printable_ascii", pyjwt(dev(sub="Alice Smith <alice@example.com> ~!")), "ok", mint=True)
vec("subject_256_bytes", pyjwt(dev(sub="x" * 256)), "ok", mint=True)
vec("unknown_claims_ignored", pyjwt(dev(iss="https://issuer", aud=["a", "b"], admin=True, nested={"a": [1, {"b": None}]})), "ok")
vec("no_typ_header", pyjwt(dev(), typ=None), "ok")
vec("no_iat", pyjwt({"sub": "alice", "dgp": "developer", "exp": NOW + 60}), "ok", mint=True)
vec("rotation_old_key_verifies", pyjwt(dev()), "ok", key_id="k2", secret=K2, extra_keys=[["k1", b64(K1)]])
vec("rotation_new_key_signs", pyjwt(dev(), key=K2, kid="k2"), "ok", key_id="k2", secret=K2, extra_keys=[["k1", b64(K1)]], mint=True)
vec("expired_within_leeway", pyjwt(dev(exp=NOW - 10)), "ok", leeway=30)
vec("not_before_within_leeway", pyjwt(dev(nbf=NOW + 20)), "ok", leeway=30)
vec("long_secret", pyjwt(dev(), key=K1 + K2 + K1), "ok", secret=K1 + K2 + K1, mint=True)

# Time.
vec("expired", pyjwt(dev(exp=NOW - 1)), "expired")
vec("expired_at_exp", pyjwt(dev(exp=NOW)), "expired")
vec("expired_beyond_leeway", pyjwt(dev(exp=NOW - 30)), "expired", leeway=30)
vec("not_before", pyjwt(dev(nbf=NOW + 60)), "not_yet_valid")
vec("issued_in_future", pyjwt(dev(iat=NOW + 60)), "not_yet_valid")

# Purpose, cookie, peer, subject.
vec("session_as_developer", pyjwt(session()), "wrong_purpose")
vec("developer_as_session", pyjwt(dev()), "wrong_purpose", purpose="session", cookie="devgate_token")
vec("unknown_purpose", pyjwt(dev(dgp="apikey")), "wrong_purpose")
vec("session_other_cookie", pyjwt(session(dgc="other")), "wrong_cookie", purpose="session", cookie="devgate_token")
vec("session_without_dgc", pyjwt(dev(dgp="session")), "wrong_cookie", purpose="session", cookie="devgate_token")
vec("bound_other_peer", pyjwt(dev(cip="192.0.2.10")), "wrong_peer", peer="192.0.2.11")
vec("bound_peer_unknown", pyjwt(dev(cip="192.0.2.10")), "wrong_peer")
vec("subject_header_injection", pyjwt(dev(sub="alice\r\nx-admin: 1")), "bad_subject")
vec("subject_leading_space", pyjwt(dev(sub=" alice")), "bad_subject")
vec("subject_empty", pyjwt(dev(sub="")), "bad_subject")
vec("subject_non_ascii", pyjwt(dev(sub="al\u00efce")), "bad_subject")
vec("subject_257_bytes", pyjwt(dev(sub="x" * 257)), "bad_subject")

# Header.
vec("rfc7515_a1_no_kid", RFC_TOKEN, "missing_kid", key_id="rfc7515", secret=RFC_KEY, now=1300000000)
vec("no_kid", pyjwt(dev(), kid=None), "missing_kid")
vec("unknown_kid", pyjwt(dev(), kid="k9"), "unknown_kid")
vec("alg_hs512", pyjwt(dev(), key=K1 + K1, alg="HS512"), "unsupported_alg")
vec("alg_hs384", pyjwt(dev(), alg="HS384"), "unsupported_alg")
vec("alg_none_empty_signature", pyjwt(dev(), key=None, alg="none"), "malformed")
vec("alg_none_with_signature", pyjwt(dev(), key=None, alg="none") + b64(b"x" * 32), "unsupported_alg")
vec("alg_lowercase", raw('{"alg":"hs256","kid":"k1"}', OKP), "unsupported_alg")
vec("crit", pyjwt(dev(), crit=["exp"]), "unsupported_header")
vec("extra_header_cty", pyjwt(dev(), cty="JWT"), "unsupported_header")
vec("extra_header_jku", pyjwt(dev(), jku="https://attacker.example/keys"), "unsupported_header")
vec("typ_not_jwt", pyjwt(dev(), typ="at+jwt"), "unsupported_header")
vec("duplicate_alg", raw('{"alg":"none","alg":"HS256","kid":"k1"}', OKP), "malformed")

# Signature.
vec("wrong_secret", pyjwt(dev(), key=WRONG), "bad_signature")
t = pyjwt(dev())
h, p, s = t.split(".")
vec("tampered_payload", h + "." + b64(json.dumps(dev(sub="root"), separators=(",", ":")).encode()) + "." + s, "bad_signature")
vec("truncated_signature", t[:-2], "bad_signature")
vec("signature_64_bytes", h + "." + p + "." + b64(hmac.new(K1, (h + "." + p).encode(), hashlib.sha512).digest()), "bad_signature")

# Framing and payload.
vec("too_long", pyjwt(dev(pad="p" * 3100)), "too_long")
vec("two_segments", h + "." + p, "malformed")
vec("four_segments", t + "." + s, "malformed")
vec("padded_segment", h + "=." + p + "." + s, "malformed")
vec("whitespace", t + "\n", "malformed")
vec("std_alphabet_char", h + "." + p + "." + s[:-1] + "+", "malformed")
vec("payload_not_json", raw(HDR, "alice"), "malformed")
vec("payload_array", raw(HDR, '["alice","developer",%d]' % (NOW + 60)), "malformed")
vec("exp_float", pyjwt(dev(exp=NOW + 60.5)), "malformed")
vec("exp_negative", raw(HDR, '{"sub":"alice","dgp":"developer","exp":-1}'), "malformed")
vec("exp_string", pyjwt(dev(exp=str(NOW + 60))), "malformed")
vec("exp_huge", raw(HDR, '{"sub":"alice","dgp":"developer","exp":1%s}' % ("0" * 40)), "malformed")
vec("exp_missing", pyjwt({"sub": "alice", "dgp": "developer"}), "malformed")
vec("sub_missing", pyjwt({"dgp": "developer", "exp": NOW + 60}), "malformed")
vec("nbf_null", raw(HDR, '{"sub":"alice","dgp":"developer","exp":%d,"nbf":null}' % (NOW + 60)), "malformed")
vec("duplicate_sub", raw(HDR, '{"sub":"alice","sub":"root","dgp":"developer","exp":%d}' % (NOW + 60)), "malformed")
vec("cip_not_an_address", pyjwt(dev(cip="localhost")), "malformed", peer="127.0.0.1")
vec("jti_129_bytes", pyjwt(dev(jti="j" * 129)), "malformed")

# PyJWT agrees on every vector it has an opinion on: accepted ones verify, time errors are
# its ExpiredSignatureError / ImmatureSignatureError, at the same fixed `now`.
class FixedClock(jwt.api_jwt.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls.fromtimestamp(CLOCK, tz)


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


jwt.api_jwt.datetime = FixedClock
for v in vectors:
    if v["expect"] not in ("ok", "expired", "not_yet_valid"):
        continue
    CLOCK = v["now"]
    keys = dict([(v["key_id"], v["secret_b64url"])] + v.get("extra_keys", []))
    secret = unb64(keys[jwt.get_unverified_header(v["token"])["kid"]])
    try:
        jwt.decode(v["token"], secret, algorithms=["HS256"], leeway=v.get("leeway", 0),
                   options={"verify_aud": False})
        verdict = "ok"
    except jwt.ExpiredSignatureError:
        verdict = "expired"
    except jwt.ImmatureSignatureError:
        verdict = "not_yet_valid"
    assert verdict == v["expect"], (v["name"], verdict)

out = {
    "description": "devgate token known-answer vectors: verify(token) with the given key(s), "
                   "purpose, cookie, leeway, peer and now must give `expect` (ok or an error code); "
                   "for ok, the devgate claims; with mint=true, devgate's mint() reproduces the token.",
    "pyjwt_version": jwt.__version__,
    "generated_by": pathlib.Path(__file__).read_text().splitlines(),
    "vectors": vectors,
}
print(json.dumps(out, indent=1, ensure_ascii=True))
