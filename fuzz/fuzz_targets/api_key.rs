//! API keys (src/core/apikey.rs): `verify`, `mint`, `page_host`, `referer_allowed`,
//! `ip_allowed`, and the endpoint-mode table `core::mode_allows`.
//!
//! Invariants:
//! * never panics;
//! * **only minted keys verify**: a key that verifies under {k1, k2} is byte for byte what
//!   devgate's signer writes for its (authenticated) payload with one of those keys, so it was
//!   made by a holder of the secret (no malleable encodings, no wrong-key acceptance); its
//!   fields obey the format (valid ids, public keys read-only without IPs, private keys without
//!   referers);
//! * a key `mint` accepts verifies at its `iat` to exactly the fields it was minted with
//!   (`mint` "refuses what verify would refuse"); relabelled (`dgpk_` <-> `dgsk_`), unprefixed
//!   or edited, it does not verify;
//! * `page_host` returns a lower-case host without `/?#@`; `referer_allowed` admits a host
//!   only if it is a listed host or a strict subdomain of a `*.` pattern;
//! * `mode_allows`: a public key never writes (except POST on `read_only`), a private key
//!   writes only with `write`.
#![no_main]

mod common;

use std::net::IpAddr;

use arbitrary::{Arbitrary, Unstructured};
use devgate::core::policy::Mode;
use devgate::core::apikey::{
    ip_allowed, is_valid_id, is_valid_referer_pattern, mint, page_host, referer_allowed, verify,
    ApiKey, KeyKind, NewKey, MAX_LIST,
};
use devgate::core::mode_allows;
use devgate::core::net::Cidr;
use devgate::core::token::{authenticate, sign, TokenError, MAX_TOKEN_LEN};
use libfuzzer_sys::fuzz_target;

fn prefix_of(data: &[u8]) -> Option<(KeyKind, &[u8])> {
    [KeyKind::Public, KeyKind::Private]
        .into_iter()
        .find_map(|k| Some((k, data.strip_prefix(k.prefix().as_bytes())?)))
}

fn check_verified(data: &[u8], k: &ApiKey) {
    let (kind, rest) = prefix_of(data).expect("a verified key has a prefix");
    assert_eq!(kind, k.kind);
    let domain = kind.prefix().as_bytes();
    let payload = authenticate(rest, common::keyset(), domain).expect("verified => authentic");
    let remade = [common::k1(), common::k2()]
        .iter()
        .any(|key| sign(&payload, key, domain).as_bytes() == rest);
    assert!(
        remade,
        "FORGERY: a verified API key is not what the signer writes"
    );
    assert!(is_valid_id(&k.id) && is_valid_id(&k.org) && is_valid_id(&k.project));
    assert!(!k.products.is_empty() && k.products.len() <= MAX_LIST);
    assert!(k.products.iter().all(|p| is_valid_id(p)));
    assert!(k.referers.iter().all(|r| is_valid_referer_pattern(r)));
    match k.kind {
        KeyKind::Public => assert!(!k.write && k.ips.0.is_empty()),
        KeyKind::Private => assert!(k.referers.is_empty()),
    }
    common::assert_no_secret("ApiKey", format!("{k:?}").as_bytes());
}

fn check_raw(data: &[u8], now: u64, leeway: u64) {
    match verify(data, common::keyset(), now, leeway) {
        Ok(k) => check_verified(data, &k),
        Err(e) => common::assert_no_secret("TokenError", e.code().as_bytes()),
    }
}

#[derive(Arbitrary, Debug)]
struct MintCase {
    private: bool,
    id: String,
    org: String,
    project: String,
    products: Vec<String>,
    write: bool,
    referers: Vec<String>,
    ips: Vec<String>,
    iat: u64,
    exp: Option<u64>,
    use_k2: bool,
    edits: Vec<(u16, u8)>,
    peer: Option<IpAddr>,
    host: String,
    method: u8,
}

fn check_mint(m: &MintCase) {
    let kind = if m.private {
        KeyKind::Private
    } else {
        KeyKind::Public
    };
    let new = NewKey {
        kind,
        id: &m.id,
        org: &m.org,
        project: &m.project,
        products: &m.products,
        write: m.write,
        referers: &m.referers,
        ips: &m.ips,
        iat: m.iat,
        exp: m.exp,
    };
    let key = if m.use_k2 { common::k2() } else { common::k1() };
    let Ok(text) = mint(&new, &key) else {
        return;
    };
    let keys = common::keyset();
    let got = verify(text.as_bytes(), keys, m.iat, 0);
    if m.exp.is_some_and(|e| e <= m.iat) {
        assert_eq!(got, Err(TokenError::Expired));
        return;
    }
    let got = match got {
        Ok(k) => k,
        // `mint` documents that it refuses what `verify` would refuse.
        Err(e) => panic!(
            "minted key does not verify: {} (len {}, max {MAX_TOKEN_LEN})",
            e.code(),
            text.len()
        ),
    };
    check_verified(text.as_bytes(), &got);
    assert_eq!(
        (
            &got.id,
            &got.org,
            &got.project,
            &got.products,
            got.write,
            &got.referers,
            got.exp
        ),
        (
            &m.id,
            &m.org,
            &m.project,
            &m.products,
            m.write,
            &m.referers,
            m.exp
        )
    );
    let cidrs: Vec<Cidr> = m
        .ips
        .iter()
        .map(|i| Cidr::parse(i).expect("minted"))
        .collect();
    assert_eq!(got.ips.0, cidrs);

    // Relabelled, unprefixed, edited: refused.
    let other = match kind {
        KeyKind::Public => KeyKind::Private,
        KeyKind::Private => KeyKind::Public,
    };
    let body = &text[kind.prefix().len()..];
    let relabelled = format!("{}{body}", other.prefix());
    assert!(
        verify(relabelled.as_bytes(), keys, m.iat, 0).is_err(),
        "prefix not signed"
    );
    assert!(verify(body.as_bytes(), keys, m.iat, 0).is_err());
    let mut edited = text.clone().into_bytes();
    for &(pos, byte) in m.edits.iter().take(4) {
        let i = usize::from(pos) % edited.len().max(1);
        if let Some(b) = edited.get_mut(i) {
            *b = byte;
        }
    }
    if edited != text.as_bytes() {
        assert!(
            verify(&edited, keys, m.iat, 300).is_err(),
            "FORGERY: edited key verifies"
        );
    }

    // The peer restriction and the mode table, on a real key.
    let allowed = ip_allowed(&got, m.peer);
    let want = got.ips.0.is_empty() || m.peer.is_some_and(|p| got.ips.contains(p));
    assert_eq!(allowed, want);
    let method: &[u8] = [
        &b"GET"[..],
        b"HEAD",
        b"OPTIONS",
        b"POST",
        b"PUT",
        b"PATCH",
        b"DELETE",
        b"get",
        b"PROPFIND",
    ][usize::from(m.method) % 9];
    let read = matches!(method, b"GET" | b"HEAD" | b"OPTIONS");
    for mode in [Mode::ReadWrite, Mode::ReadOnly, Mode::WriteOnly] {
        let ok = mode_allows(mode, method, &got).is_ok();
        let can_write = got.kind == KeyKind::Private && got.write;
        let want = match mode {
            Mode::ReadWrite => read || can_write,
            Mode::ReadOnly => read || method == b"POST",
            Mode::WriteOnly => can_write,
        };
        assert_eq!(
            ok,
            want,
            "{mode:?} {:?} {:?}",
            String::from_utf8_lossy(method),
            got.kind
        );
    }
    if let Some(host) = page_host(m.host.as_bytes()) {
        let _ = referer_allowed(&got.referers, &host);
    }
}

fn check_page(value: &[u8], patterns: &[String]) {
    let Some(host) = page_host(value) else {
        return;
    };
    assert!(!host.is_empty());
    assert!(!host.contains(['/', '?', '#', '@']), "{host:?}");
    assert!(!host.bytes().any(|b| b.is_ascii_uppercase()), "{host:?}");
    let allowed = referer_allowed(patterns, &host);
    let want = patterns.iter().any(|p| match p.strip_prefix("*.") {
        Some(d) => host.len() > d.len() + 1 && host.ends_with(&format!(".{d}")),
        None => *p == host,
    });
    assert_eq!(allowed, want, "{host:?} {patterns:?}");
}

fuzz_target!(|data: &[u8]| {
    common::set_input(data);
    check_raw(data, common::NOW, 30);
    let mut u = Unstructured::new(data);
    if let (Ok(now), Ok(leeway)) = (u64::arbitrary(&mut u), u16::arbitrary(&mut u)) {
        check_raw(data, now, u64::from(leeway));
    }
    let patterns: Vec<String> = String::from_utf8_lossy(data)
        .split(['\n', ' ', ','])
        .filter(|s| is_valid_referer_pattern(s))
        .map(str::to_string)
        .collect();
    for line in data.split(|&b| b == b'\n') {
        check_page(line, &patterns);
    }
    if let Ok(m) = MintCase::arbitrary(&mut Unstructured::new(data)) {
        check_mint(&m);
    }
});
