//! Peer addresses and networks (src/core/net.rs): `parse_peer`, `Cidr::parse`,
//! `Cidr::contains`, `NetPolicy::verdict`.
//!
//! Invariants:
//! * never panics;
//! * `parse_peer` accepts exactly `a.b.c.d:port` and `[v6]:port` (as std's `SocketAddr` reads
//!   them, without a v6 scope id), folds `::ffff:a.b.c.d` to IPv4, and what it returns prints
//!   and parses back to itself;
//! * `Cidr::parse`: an accepted network prints and parses back to itself, contains its own
//!   first and last address and nothing that differs within the prefix (checked against an
//!   independent 128-bit mask); a refused one with host bits set suggests a network that
//!   parses;
//! * `verdict`: deny wins over allow, a forwarded (port 0) address is never a developer
//!   unless trusted, and a developer's address is in `allow` and not in `deny`.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use arbitrary::{Arbitrary, Unstructured};
use devgate::core::net::{
    normalize_ip, parse_peer, Cidr, CidrError, CidrList, NetPolicy, NetVerdict, Peer,
};
use libfuzzer_sys::fuzz_target;

fn check_peer(raw: &[u8]) {
    let got = parse_peer(raw);
    // Reference: std's socket-address grammar, minus scope ids and over-long input.
    let reference = std::str::from_utf8(raw)
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 64 && !s.contains('%'))
        .filter(|s| s.rsplit(':').next().is_some_and(|port| port.len() <= 5))
        .and_then(|s| s.parse::<SocketAddr>().ok());
    match (got, reference) {
        (Ok(p), Some(sa)) => {
            assert_eq!(p.ip, normalize_ip(sa.ip()));
            assert_eq!(p.port, sa.port());
        }
        (Err(_), None) => {}
        (got, reference) => panic!(
            "parse_peer({:?}) = {got:?}, std says {reference:?}",
            String::from_utf8_lossy(raw)
        ),
    }
    if let Ok(p) = got {
        assert!(!matches!(p.ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()));
        let text = match p.ip {
            IpAddr::V4(v4) => format!("{v4}:{}", p.port),
            IpAddr::V6(v6) => format!("[{v6}]:{}", p.port),
        };
        assert_eq!(parse_peer(text.as_bytes()), Ok(p));
    }
}

/// (is v6, 128-bit value) of an address, v4 in the low 32 bits.
fn bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (false, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (true, u128::from(v6)),
    }
}

fn mask(width: u32, prefix: u32) -> u128 {
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    if prefix == 0 {
        0
    } else {
        all & !((1u128 << (width - prefix)) - 1) & all
    }
}

fn check_cidr(text: &str, probe: IpAddr) {
    match Cidr::parse(text) {
        Ok(c) => {
            let shown = c.to_string();
            assert_eq!(Cidr::parse(&shown), Ok(c), "{text:?} printed as {shown:?}");
            let (net_text, prefix) = shown.split_once('/').expect("addr/prefix");
            let net: IpAddr = net_text.parse().expect("address");
            let prefix: u32 = prefix.parse().expect("prefix");
            let (v6, base) = bits(net);
            let width = if v6 { 128 } else { 32 };
            assert!(prefix <= width);
            let m = mask(width, prefix);
            assert_eq!(base & !m & mask(width, width), 0, "host bits in {shown}");
            let make = |x: u128| -> IpAddr {
                if v6 {
                    IpAddr::V6(Ipv6Addr::from(x))
                } else {
                    IpAddr::V4(Ipv4Addr::from(x as u32))
                }
            };
            assert!(c.contains(net));
            let last = base | (!m & mask(width, width));
            assert!(c.contains(make(last)), "{shown} lacks its last address");
            let p = normalize_ip(probe);
            let (pv6, pb) = bits(p);
            let want = pv6 == v6 && (pb & m) == base;
            assert_eq!(c.contains(p), want, "{shown} contains {p}?");
            if prefix > 0 {
                // Flip the last bit of the prefix: outside.
                let flip = base ^ (1u128 << (width - prefix));
                assert!(!c.contains(make(flip)), "{shown} contains {}", make(flip));
            }
        }
        Err(CidrError::HostBitsSet(suggestion)) => {
            let s = Cidr::parse(&suggestion);
            assert!(
                s.is_ok(),
                "{text:?}: suggestion {suggestion:?} is refused: {s:?}"
            );
        }
        Err(_) => {}
    }
}

#[derive(Arbitrary, Debug)]
struct Net {
    allow: Vec<String>,
    deny: Vec<String>,
    trust_forwarded: bool,
    peer: IpAddr,
    port: u16,
}

fn check_policy(n: &Net) {
    let list = |v: &[String]| CidrList(v.iter().filter_map(|s| Cidr::parse(s).ok()).collect());
    let policy = NetPolicy {
        allow: list(&n.allow),
        deny: list(&n.deny),
        trust_forwarded: n.trust_forwarded,
    };
    let peer = Peer {
        ip: normalize_ip(n.peer),
        port: n.port,
    };
    let v = policy.verdict(Ok(peer));
    match v {
        NetVerdict::Developer(ip) => {
            assert_eq!(ip, peer.ip);
            assert!(policy.allow.contains(ip) && !policy.deny.contains(ip));
            assert!(
                n.port != 0 || n.trust_forwarded,
                "forwarded address admitted"
            );
        }
        NetVerdict::Denied => assert!(policy.deny.contains(peer.ip)),
        NetVerdict::Forwarded => assert!(n.port == 0 && !n.trust_forwarded),
        NetVerdict::NotAllowed => assert!(!policy.allow.contains(peer.ip)),
        NetVerdict::Unknown => panic!("a parsed peer is known"),
    }
}

fuzz_target!(|data: &[u8]| {
    check_peer(data);
    let text = String::from_utf8_lossy(data);
    let mut u = Unstructured::new(data);
    let probe = IpAddr::arbitrary(&mut u).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    for line in text.lines().take(8) {
        check_peer(line.as_bytes());
        check_cidr(line, probe);
        check_cidr(line.trim(), probe);
    }
    if let Ok(n) = Net::arbitrary(&mut Unstructured::new(data)) {
        check_policy(&n);
    }
});
