//! Peer addresses and CIDR lists.
//!
//! The peer is what Envoy reports as `source.address`: `"ip:port"` for IPv4, `"[ip]:port"` for
//! IPv6. When the HTTP connection manager runs with `use_remote_address: false` (Envoy's default),
//! Envoy replaces that address with one taken from `X-Forwarded-For`, and such an address carries
//! port 0. No TCP peer has port 0, so port 0 is how devgate tells "the socket" from "a header".

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The peer as Envoy gave it, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The address, with IPv4-mapped IPv6 (`::ffff:a.b.c.d`) folded to IPv4.
    pub ip: IpAddr,
    /// The port; 0 means Envoy took the address from `X-Forwarded-For`.
    pub port: u16,
}

impl Peer {
    /// True when Envoy derived the address from a request header rather than the socket.
    pub fn is_forwarded(&self) -> bool {
        self.port == 0
    }
}

/// Why a `source.address` value was not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerError {
    /// Absent, not UTF-8, not `ip:port`, or not an IP address (a pipe path, a zone id, ...).
    Unparseable,
}

/// Folds `::ffff:a.b.c.d` to `a.b.c.d` so one rule covers both spellings of an IPv4 peer.
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The text of an address, as the identity header carries it. IPv4 is written by hand: the
/// `Display` machinery was a quarter of a network-path decision (measured with callgrind).
pub fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
            out
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// `a.b.c.d` exactly as std parses it (four decimal octets, no leading zeros, no sign), without
/// std's general parser: the common case of every request.
fn parse_v4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        let valid = matches!(part.len(), 1..=3)
            && part.iter().all(u8::is_ascii_digit)
            && !(part.len() > 1 && part.first() == Some(&b'0'));
        if !valid {
            return None;
        }
        let value = part
            .iter()
            .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
        *octet = u8::try_from(value).ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

/// Parses Envoy's `source.address`: `1.2.3.4:5678` or `[::1]:5678`.
pub fn parse_peer(raw: &[u8]) -> Result<Peer, PeerError> {
    // Longest valid form: "[" + 45-char IPv6 text + "]:" + 5 digits.
    if raw.is_empty() || raw.len() > 64 {
        return Err(PeerError::Unparseable);
    }
    let text = std::str::from_utf8(raw).map_err(|_| PeerError::Unparseable)?;
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(PeerError::Unparseable)?;
        let port = after.strip_prefix(':').ok_or(PeerError::Unparseable)?;
        let ip: Ipv6Addr = host.parse().map_err(|_| PeerError::Unparseable)?;
        (IpAddr::V6(ip), port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or(PeerError::Unparseable)?;
        let ip = parse_v4(host.as_bytes()).ok_or(PeerError::Unparseable)?;
        (IpAddr::V4(ip), port)
    };
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PeerError::Unparseable);
    }
    let port: u16 = port.parse().map_err(|_| PeerError::Unparseable)?;
    Ok(Peer {
        ip: normalize_ip(host),
        port,
    })
}

/// An IP network: an address and a prefix length, host bits zero.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a CIDR string was refused. The messages go into config errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CidrError {
    /// Not an IP address (before the `/`, if any).
    NotAnAddress,
    /// The prefix length is not a number, or longer than the address family allows.
    BadPrefix,
    /// `10.0.0.1/8`: almost always a typo for `10.0.0.0/8` or `10.0.0.1/32`, so refused.
    HostBitsSet(String),
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::NotAnAddress => f.write_str("not an IP address or CIDR"),
            CidrError::BadPrefix => {
                f.write_str("bad prefix length (0-32 for IPv4, 0-128 for IPv6)")
            }
            CidrError::HostBitsSet(net) => {
                write!(f, "host bits set after the prefix; did you mean {net}?")
            }
        }
    }
}

fn mask_v4(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let bits = u32::from(ip);
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Ipv4Addr::from(bits & mask)
}

fn mask_v6(ip: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let bits = u128::from(ip);
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    Ipv6Addr::from(bits & mask)
}

impl Cidr {
    /// Parses `a.b.c.d`, `a.b.c.d/n`, `v6`, `v6/n`. A bare address is a host route (/32, /128).
    /// IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) fold to IPv4 like peers do.
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| CidrError::NotAnAddress)?;
        let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CidrError::BadPrefix);
                }
                let n: u8 = p.parse().map_err(|_| CidrError::BadPrefix)?;
                if n > max {
                    return Err(CidrError::BadPrefix);
                }
                n
            }
        };
        let (ip, prefix) = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
                _ => (ip, prefix),
            },
            v4 => (v4, prefix),
        };
        let masked = match ip {
            IpAddr::V4(v4) => IpAddr::V4(mask_v4(v4, prefix)),
            IpAddr::V6(v6) => IpAddr::V6(mask_v6(v6, prefix)),
        };
        if masked != ip {
            return Err(CidrError::HostBitsSet(format!("{masked}/{prefix}")));
        }
        Ok(Cidr { addr: ip, prefix })
    }

    /// True when `ip` (already normalized) lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_v4(ip, self.prefix) == net,
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_v6(ip, self.prefix) == net,
            _ => false,
        }
    }
}

/// A list of networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CidrList(pub Vec<Cidr>);

impl CidrList {
    /// Whether any range of the list holds `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The loopback networks, devgate's default allow list.
    pub fn loopback() -> CidrList {
        CidrList(vec![
            Cidr {
                addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                prefix: 8,
            },
            Cidr {
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ])
    }

    /// Every address, v4 and v6.
    pub fn any() -> CidrList {
        CidrList(vec![
            Cidr {
                addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                prefix: 0,
            },
            Cidr {
                addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                prefix: 0,
            },
        ])
    }
}

/// The network rule: who is a developer by address alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetPolicy {
    /// `network.allow`: developers by address.
    pub allow: CidrList,
    /// `network.deny`: never developers, refused on protected paths whatever they send.
    pub deny: CidrList,
    /// Accept an address Envoy derived from `X-Forwarded-For` (port 0) as the peer.
    pub trust_forwarded: bool,
}

/// What the network rule says of one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetVerdict {
    /// A developer by address.
    Developer(IpAddr),
    /// Listed in `deny` (deny wins over allow).
    Denied,
    /// Not in `allow`.
    NotAllowed,
    /// The address came from `X-Forwarded-For` and forwarded addresses are not trusted.
    Forwarded,
    /// `source.address` absent or not an IP.
    Unknown,
}

impl NetPolicy {
    /// The usable peer IP, or the verdict explaining why there is none. Shared by every rule that
    /// looks at the peer (network developers, token `allow_from`, peer binding).
    pub fn peer_ip(&self, peer: Result<Peer, PeerError>) -> Result<IpAddr, NetVerdict> {
        match peer {
            Err(PeerError::Unparseable) => Err(NetVerdict::Unknown),
            Ok(p) if p.is_forwarded() && !self.trust_forwarded => Err(NetVerdict::Forwarded),
            Ok(p) => Ok(p.ip),
        }
    }

    /// [`peer_ip`](NetPolicy::peer_ip), refusing a peer in `deny` too ([`NetVerdict::Denied`]):
    /// the address of a peer that may become a developer by some means (the login form). `deny`
    /// means never a developer from there, whatever the credential.
    pub fn undenied_ip(&self, peer: Result<Peer, PeerError>) -> Result<IpAddr, NetVerdict> {
        match self.peer_ip(peer) {
            Ok(ip) if self.deny.contains(ip) => Err(NetVerdict::Denied),
            other => other,
        }
    }

    /// What `network` says of the peer.
    pub fn verdict(&self, peer: Result<Peer, PeerError>) -> NetVerdict {
        match self.undenied_ip(peer) {
            Err(v) => v,
            Ok(ip) if self.allow.contains(ip) => NetVerdict::Developer(ip),
            Ok(_) => NetVerdict::NotAllowed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        normalize_ip(s.parse().unwrap())
    }

    #[test]
    fn peer_forms_envoy_gives() {
        assert_eq!(
            parse_peer(b"127.0.0.1:5000"),
            Ok(Peer {
                ip: ip("127.0.0.1"),
                port: 5000
            })
        );
        assert_eq!(parse_peer(b"[::1]:443").unwrap().ip, ip("::1"));
        assert!(parse_peer(b"127.0.0.1:0").unwrap().is_forwarded());
        assert_eq!(
            parse_peer(b"[::ffff:10.1.2.3]:80").unwrap().ip,
            ip("10.1.2.3")
        );
    }

    #[test]
    fn peer_garbage_is_unparseable() {
        for bad in [
            &b""[..],
            b"127.0.0.1",
            b"127.0.0.1:",
            b"127.0.0.1:65536",
            b"127.0.0.1:+80",
            b"::1:80",
            b"[::1]80",
            b"[::1]",
            b"[fe80::1%eth0]:80",
            b"localhost:80",
            b"/tmp/envoy.sock",
            b"\xff\xfe:80",
            b"1.2.3.4:5:6",
            b"01.2.3.4:80",
        ] {
            assert_eq!(parse_peer(bad), Err(PeerError::Unparseable), "{bad:?}");
        }
        assert_eq!(parse_peer(&[b'1'; 200]), Err(PeerError::Unparseable));
    }

    #[test]
    fn cidr_parse_and_contains() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        let host = Cidr::parse("127.0.0.77").unwrap();
        assert!(host.contains(ip("127.0.0.77")));
        assert!(!host.contains(ip("127.0.0.78")));
        let all4 = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all4.contains(ip("1.2.3.4")));
        assert!(!all4.contains(ip("::2")), "v4 rules never match v6 peers");
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all6 = Cidr::parse("::/0").unwrap();
        assert!(all6.contains(ip("::1")));
        assert!(!all6.contains(ip("127.0.0.1")));
    }

    #[test]
    fn cidr_v4_mapped_folds_to_v4() {
        let c = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(c, Cidr::parse("10.0.0.0/8").unwrap());
        assert!(c.contains(ip("::ffff:10.9.9.9")));
        let h = Cidr::parse("::ffff:127.0.0.1").unwrap();
        assert!(h.contains(ip("127.0.0.1")));
    }

    #[test]
    fn cidr_refuses_typos() {
        assert_eq!(
            Cidr::parse("10.0.0.1/8"),
            Err(CidrError::HostBitsSet("10.0.0.0/8".into()))
        );
        assert_eq!(Cidr::parse("10.0.0.0/33"), Err(CidrError::BadPrefix));
        assert_eq!(Cidr::parse("::/129"), Err(CidrError::BadPrefix));
        assert_eq!(Cidr::parse("10.0.0.0/"), Err(CidrError::BadPrefix));
        assert_eq!(Cidr::parse("10.0.0.0/-1"), Err(CidrError::BadPrefix));
        assert_eq!(Cidr::parse("10.0.0.0/08x"), Err(CidrError::BadPrefix));
        assert_eq!(Cidr::parse("10.0.0/8"), Err(CidrError::NotAnAddress));
        assert_eq!(Cidr::parse(""), Err(CidrError::NotAnAddress));
        assert_eq!(Cidr::parse("host.example"), Err(CidrError::NotAnAddress));
        assert!(Cidr::parse("2001:db8::1/32").is_err());
    }

    #[test]
    fn deny_wins_and_forwarded_is_not_the_socket() {
        let p = NetPolicy {
            allow: CidrList(vec![Cidr::parse("127.0.0.0/8").unwrap()]),
            deny: CidrList(vec![Cidr::parse("127.0.0.77").unwrap()]),
            trust_forwarded: false,
        };
        assert_eq!(
            p.verdict(parse_peer(b"127.0.0.5:1")),
            NetVerdict::Developer(ip("127.0.0.5"))
        );
        assert_eq!(p.verdict(parse_peer(b"127.0.0.77:1")), NetVerdict::Denied);
        assert_eq!(p.verdict(parse_peer(b"10.0.0.1:1")), NetVerdict::NotAllowed);
        assert_eq!(p.verdict(parse_peer(b"127.0.0.1:0")), NetVerdict::Forwarded);
        assert_eq!(p.verdict(parse_peer(b"junk")), NetVerdict::Unknown);
        let trusting = NetPolicy {
            trust_forwarded: true,
            ..p
        };
        assert_eq!(
            trusting.verdict(parse_peer(b"127.0.0.1:0")),
            NetVerdict::Developer(ip("127.0.0.1"))
        );
    }

    #[test]
    fn loopback_default_covers_both_families() {
        let l = CidrList::loopback();
        assert!(l.contains(ip("127.1.2.3")));
        assert!(l.contains(ip("::1")));
        assert!(l.contains(ip("::ffff:127.0.0.1")));
        assert!(!l.contains(ip("::2")));
        assert!(!l.contains(ip("128.0.0.1")));
    }

    #[test]
    fn denied_peers_have_no_undenied_address() {
        let net = NetPolicy {
            allow: CidrList(vec![Cidr::parse("127.0.0.0/8").unwrap()]),
            deny: CidrList(vec![Cidr::parse("127.0.0.77").unwrap()]),
            trust_forwarded: false,
        };
        let denied = parse_peer(b"127.0.0.77:4000");
        assert_eq!(net.verdict(denied), NetVerdict::Denied);
        assert_eq!(net.undenied_ip(denied), Err(NetVerdict::Denied));
        assert_eq!(net.peer_ip(denied), Ok(ip("127.0.0.77")));
        // IPv4-mapped spelling of the denied address: the same peer.
        let mapped = parse_peer(b"[::ffff:127.0.0.77]:4000");
        assert_eq!(net.undenied_ip(mapped), Err(NetVerdict::Denied));
        // Outside allow but not denied: an address (tokens and the form may still admit it).
        let outside = parse_peer(b"192.0.2.1:4000");
        assert_eq!(net.verdict(outside), NetVerdict::NotAllowed);
        assert_eq!(net.undenied_ip(outside), Ok(ip("192.0.2.1")));
        assert_eq!(
            net.undenied_ip(parse_peer(b"127.0.0.1:1")),
            Ok(ip("127.0.0.1"))
        );
        // Forwarded and unknown peers keep their own verdicts.
        assert_eq!(
            net.undenied_ip(parse_peer(b"127.0.0.77:0")),
            Err(NetVerdict::Forwarded)
        );
        assert_eq!(net.undenied_ip(parse_peer(b"")), Err(NetVerdict::Unknown));
    }

    #[test]
    fn fast_v4_paths_agree_with_std() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.0.200.9",
            "1.22.133.4",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "1..2.3",
            "",
            "a.b.c.d",
            "+1.2.3.4",
            "1.2.3.4 ",
            "1.2.3.0004",
            "999.1.1.1",
            "1.2.3.-4",
        ] {
            assert_eq!(
                parse_v4(text.as_bytes()),
                text.parse::<Ipv4Addr>().ok(),
                "{text}"
            );
        }
        for n in (0..=u32::MAX).step_by(16_777_259) {
            let ip = IpAddr::V4(Ipv4Addr::from(n));
            assert_eq!(ip_text(ip), ip.to_string());
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ip_text(v6), "2001:db8::1");
    }
}
