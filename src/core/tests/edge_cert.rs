//! Client certificates ([`crate::core::edge::cert`]): matching, and `x-forwarded-client-cert`
//! only from a listed socket peer.

use super::*;
use crate::core::net::Cidr;

const PROXY: &str = "10.0.0.5";

fn source() -> ClientCertSource {
    ClientCertSource {
        uri_sans: vec!["spiffe://example.org/dev/alice".into()],
        dns_sans: vec!["bob.dev.example.org".into()],
        emails: vec!["carol@example.org".into()],
        subjects: vec!["CN=dave,O=devgate".into()],
        forwarded_from: None,
    }
}

fn proxied() -> ClientCertSource {
    ClientCertSource {
        forwarded_from: Some(CidrList(vec![Cidr::parse("10.0.0.5/32").unwrap()])),
        ..source()
    }
}

fn cert(uri: &[&str], dns: &[&str], emails: &[&str], subject: Option<&str>) -> ClientCert {
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect();
    ClientCert {
        validated: true,
        uri_sans: v(uri),
        dns_sans: v(dns),
        emails: v(emails),
        subject: subject.map(str::to_string),
    }
}

fn run(
    src: &ClientCertSource,
    c: Option<&ClientCert>,
    peer: &str,
    headers: &[(&[u8], &[u8])],
) -> Option<Result<Identity, Reason>> {
    let req = Request {
        peer: Some(peer.as_bytes()),
        headers,
        now: 0,
        cert: c,
    };
    let socket = parse_peer(peer.as_bytes()).ok().map(|p| p.ip);
    check(src, &req, socket)
}

fn dev(name: &str) -> Option<Result<Identity, Reason>> {
    Some(Ok(Identity {
        name: name.into(),
        source: Source::ClientCert,
    }))
}

const REFUSED: Option<Result<Identity, Reason>> = Some(Err(Reason::NotADeveloper));

#[test]
fn a_validated_certificate_names_the_first_listed_value_in_order() {
    let src = source();
    let all = cert(
        &["spiffe://x/other", "spiffe://example.org/dev/alice"],
        &["bob.dev.example.org"],
        &["carol@example.org"],
        Some("CN=dave,O=devgate"),
    );
    assert_eq!(
        run(&src, Some(&all), "127.0.0.1:5000", &[]),
        dev("spiffe://example.org/dev/alice")
    );
    let no_uri = cert(
        &["spiffe://x/other"],
        &["bob.dev.example.org"],
        &["carol@example.org"],
        Some("CN=dave,O=devgate"),
    );
    assert_eq!(
        run(&src, Some(&no_uri), "127.0.0.1:5000", &[]),
        dev("bob.dev.example.org")
    );
    let email = cert(
        &[],
        &["x.example.org"],
        &["carol@example.org"],
        Some("CN=dave,O=devgate"),
    );
    assert_eq!(
        run(&src, Some(&email), "127.0.0.1:5000", &[]),
        dev("carol@example.org")
    );
    let subject = cert(&[], &[], &[], Some("CN=dave,O=devgate"));
    assert_eq!(
        run(&src, Some(&subject), "127.0.0.1:5000", &[]),
        dev("CN=dave,O=devgate")
    );
}

#[test]
fn matching_is_exact() {
    let src = source();
    for c in [
        cert(&["spiffe://example.org/dev/alice/"], &[], &[], None),
        cert(&["SPIFFE://example.org/dev/alice"], &[], &[], None),
        cert(&[], &["BOB.dev.example.org"], &[], None),
        cert(&[], &["evil.bob.dev.example.org"], &[], None),
        cert(&[], &[], &["Carol@example.org"], None),
        cert(&[], &[], &[], Some("CN=dave, O=devgate")),
        cert(&[], &[], &[], Some("CN=dave,O=devgate,OU=x")),
        // A SAN value is not a subject, nor the other way round.
        cert(
            &["CN=dave,O=devgate"],
            &["carol@example.org"],
            &[],
            Some("bob.dev.example.org"),
        ),
    ] {
        assert_eq!(run(&src, Some(&c), "127.0.0.1:5000", &[]), REFUSED, "{c:?}");
    }
}

#[test]
fn no_certificate_or_an_unvalidated_one_is_no_answer() {
    let src = source();
    assert_eq!(run(&src, None, "127.0.0.1:5000", &[]), None);
    let mut c = cert(&["spiffe://example.org/dev/alice"], &[], &[], None);
    c.validated = false;
    assert_eq!(run(&src, Some(&c), "127.0.0.1:5000", &[]), None);
    // An empty source admits nobody: a certificate is still a refusal.
    let empty = ClientCertSource::default();
    let c = cert(&["spiffe://example.org/dev/alice"], &[], &[], None);
    assert_eq!(run(&empty, Some(&c), "127.0.0.1:5000", &[]), REFUSED);
}

const ALICE_XFCC: &[u8] = b"By=spiffe://example.org/devgate;Hash=0123abcd;Subject=\"CN=x,O=y\";URI=spiffe://example.org/dev/alice";

#[test]
fn xfcc_from_a_listed_socket_peer_is_believed() {
    let src = proxied();
    let peer = "10.0.0.5:40000";
    assert_eq!(
        run(&src, None, peer, &[(XFCC, ALICE_XFCC)]),
        dev("spiffe://example.org/dev/alice")
    );
    let dns = b"Hash=00;DNS=a.example.org;DNS=bob.dev.example.org";
    assert_eq!(
        run(&src, None, peer, &[(XFCC, dns)]),
        dev("bob.dev.example.org")
    );
    // Envoy quotes the subject; commas and semicolons inside quotes are the value's.
    let subject = b"Hash=00;Subject=\"CN=dave,O=devgate\"";
    assert_eq!(
        run(&src, None, peer, &[(XFCC, subject)]),
        dev("CN=dave,O=devgate")
    );
    let escaped = b"Subject=\"CN=\\\"q\\\";x,O=devgate\"";
    let with_quote = ClientCertSource {
        subjects: vec!["CN=\"q\";x,O=devgate".into()],
        ..proxied()
    };
    assert_eq!(
        run(&with_quote, None, peer, &[(XFCC, escaped)]),
        dev("CN=\"q\";x,O=devgate")
    );
    // Keys are case-insensitive.
    assert_eq!(
        run(
            &src,
            None,
            peer,
            &[(XFCC, b"uri=spiffe://example.org/dev/alice")]
        ),
        dev("spiffe://example.org/dev/alice")
    );
    // No XFCC from the proxy: no answer.
    assert_eq!(run(&src, None, peer, &[]), None);
}

#[test]
fn the_last_element_is_the_nearest_proxys() {
    let src = proxied();
    let peer = "10.0.0.5:40000";
    // A client's forged element first, the proxy's appended after it.
    let appended =
        b"URI=spiffe://example.org/dev/alice,Hash=00;URI=spiffe://example.org/dev/mallory";
    assert_eq!(run(&src, None, peer, &[(XFCC, appended)]), REFUSED);
    let other_way = b"URI=spiffe://x/mallory, By=a;URI=spiffe://example.org/dev/alice";
    assert_eq!(
        run(&src, None, peer, &[(XFCC, other_way)]),
        dev("spiffe://example.org/dev/alice")
    );
    // Two header lines are one list: the last line's last element.
    let two: &[(&[u8], &[u8])] = &[(XFCC, ALICE_XFCC), (XFCC, b"URI=spiffe://x/mallory")];
    assert_eq!(run(&src, None, peer, two), REFUSED);
}

#[test]
fn xfcc_from_anyone_else_is_ignored() {
    let src = proxied();
    // Not a listed peer.
    assert_eq!(
        run(&src, None, "10.0.0.6:40000", &[(XFCC, ALICE_XFCC)]),
        None
    );
    // The listed address, but from X-Forwarded-For (port 0): never believed.
    assert_eq!(run(&src, None, "10.0.0.5:0", &[(XFCC, ALICE_XFCC)]), None);
    // No forwarded_from at all.
    assert_eq!(
        run(&source(), None, "10.0.0.5:40000", &[(XFCC, ALICE_XFCC)]),
        None
    );
    // A socket_peer that is not the request's own source.address.
    let headers: &[(&[u8], &[u8])] = &[(XFCC, ALICE_XFCC)];
    let req = Request {
        peer: Some(b"10.0.0.6:40000"),
        headers,
        now: 0,
        cert: None,
    };
    assert_eq!(check(&src, &req, PROXY.parse().ok()), None);
    let req = Request { peer: None, ..req };
    assert_eq!(check(&src, &req, PROXY.parse().ok()), None);
    // An ignored XFCC never spoils the connection's own certificate.
    let c = cert(&[], &["bob.dev.example.org"], &[], None);
    assert_eq!(
        run(&src, Some(&c), "10.0.0.6:1", &[(XFCC, b"garbage\"")]),
        dev("bob.dev.example.org")
    );
}

#[test]
fn the_connection_certificate_comes_first_then_a_believed_xfcc() {
    let src = proxied();
    let peer = "10.0.0.5:40000";
    let proxy_cert = cert(&["spiffe://example.org/proxy"], &[], &[], None);
    assert_eq!(
        run(&src, Some(&proxy_cert), peer, &[(XFCC, ALICE_XFCC)]),
        dev("spiffe://example.org/dev/alice")
    );
    assert_eq!(run(&src, Some(&proxy_cert), peer, &[]), REFUSED);
    let dev_cert = cert(&[], &["bob.dev.example.org"], &[], None);
    assert_eq!(
        run(&src, Some(&dev_cert), peer, &[(XFCC, b"URI=spiffe://x")]),
        dev("bob.dev.example.org")
    );
}

#[test]
fn malformed_xfcc_from_a_listed_proxy_is_refused_never_a_panic() {
    let src = proxied();
    let peer = "10.0.0.5:40000";
    let long = format!("URI={}", "a".repeat(MAX_XFCC));
    let many = "URI=spiffe://x;".repeat(MAX_VALUES + 1) + "URI=spiffe://example.org/dev/alice";
    let bad: Vec<&[u8]> = vec![
        b"",
        b",",
        b"URI=spiffe://example.org/dev/alice,",
        b"URI",
        b"=x",
        b"URI=",
        b"Subject=\"CN=dave,O=devgate",
        b"Subject=\"CN=dave,O=devgate\\",
        b"Subject=\"a\"b\"",
        b"Subject=CN=\"dave\"",
        b"Subject=\"CN=dave,O=devgate\";Subject=\"CN=dave,O=devgate\"",
        b"By=x;Hash=y;Cert=z",
        b"U RI=spiffe://example.org/dev/alice",
        b"URI=spiffe://example.org/dev/alice;;",
        b"\xff\xfe",
        long.as_bytes(),
        many.as_bytes(),
        b"URI=\"\"",
        b"\"",
        b"\\",
        b";;;=;=",
    ];
    for v in bad {
        assert_eq!(
            run(&src, None, peer, &[(XFCC, v)]),
            REFUSED,
            "{:?}",
            String::from_utf8_lossy(v)
        );
    }
    // The bound is on all values together.
    let half = format!("URI={}", "a".repeat(MAX_XFCC / 2));
    let two: &[(&[u8], &[u8])] = &[(XFCC, half.as_bytes()), (XFCC, half.as_bytes())];
    assert_eq!(run(&src, None, peer, two), REFUSED);
}

#[test]
fn every_prefix_of_a_real_header_parses_or_refuses() {
    let src = proxied();
    let full = b"By=spiffe://cluster.local/ns/default/sa/devgate;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Cert=\"-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----%0A\";Subject=\"/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client\";URI=spiffe://example.org/dev/alice;DNS=bob.dev.example.org";
    for n in 0..=full.len() {
        let v = full.get(..n).unwrap();
        let got = run(&src, None, "10.0.0.5:1", &[(XFCC, v)]);
        assert!(got.is_some(), "{n}");
    }
    assert_eq!(
        run(&src, None, "10.0.0.5:1", &[(XFCC, full)]),
        dev("spiffe://example.org/dev/alice")
    );
}
