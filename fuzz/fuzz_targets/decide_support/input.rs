//! The fuzzed request: what `arbitrary` builds from the input bytes, and how its texts are
//! rendered into header values with pool credentials spliced in.

use arbitrary::Arbitrary;

use super::pool::{api_keys, tokens};

#[derive(Arbitrary, Debug)]
pub enum PeerC {
    None,
    Known(u8, u16),
    Raw(Vec<u8>),
}

pub const PEERS: &[&str] = &[
    "127.0.0.1",
    "10.1.1.1",
    "10.1.2.3",
    "192.0.2.7",
    "10.9.1.1",
    "198.51.100.9",
    "203.0.113.5",
    "[::1]",
    "[::ffff:10.1.1.1]",
    "[::ffff:127.0.0.1]",
    "[2001:db8::1]",
    "[::ffff:192.0.2.7]",
];

#[derive(Arbitrary, Debug)]
pub enum Text {
    Raw(Vec<u8>),
    Token(u8, u8),
    Key(u8, u8),
    Concat(Vec<u8>, u8, Vec<u8>),
}

pub const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "PROPFIND",
];
pub const PATHS: &[&str] = &[
    "/",
    "/_debug/",
    "/_debug",
    "/_DEBUG/x",
    "/_debug/health",
    "/_debug/healthz",
    "/admin",
    "/admin/x",
    "/healthz",
    "/v1/maps/tiles",
    "/v1/search",
    "/v1/admin",
    "/v1/geo",
    "/%5Fdebug/",
    "/x/../_debug/",
    "/_debug./",
    "//_debug//",
    "/_debug;a=b/",
    "/\\_debug\\",
    "/v1/maps/../admin",
    "/healthz/../_debug/",
    "/_debug%2F",
    "/_debug%3F",
    "/.devgate/login",
];
pub const NAMES: &[&str] = &[
    "authorization",
    "cookie",
    "x-api-key",
    "X-Api-Key",
    "x_api_key",
    "x-wsgiorg-developer-user",
    "X_Wsgiorg_Developer_User",
    "x-dev-user",
    "X-DEV_USER",
    "origin",
    "referer",
    "x-forwarded-for",
    "x-devgate-project",
    "X_Devgate_Organization",
    "x-devgate-count",
    ":authority",
    ":path",
    ":method",
    "Authorization",
];

#[derive(Arbitrary, Debug)]
pub struct Input {
    pub fixture: u8,
    pub peer: PeerC,
    pub method: Option<Text>,
    pub path: Option<(Text, Option<Text>)>,
    pub headers: Vec<(Result<u8, Vec<u8>>, Text)>,
    pub now: Result<i32, u64>,
}

pub fn render(t: &Text, pick: &[&str]) -> Vec<u8> {
    let toks = tokens();
    let keys = api_keys();
    match t {
        Text::Raw(b) => b.clone(),
        Text::Token(i, form) => {
            let tok = &toks[usize::from(*i) % toks.len()].text;
            match form % 10 {
                0 => format!("Bearer {tok}"),
                1 => format!("bearer   {tok} "),
                2 => format!("devgate_token={tok}"),
                3 => format!("a=1; devgate_token=\"{tok}\"; b=2"),
                4 => format!("dev={tok}"),
                5 => format!("Bearer {tok}, Basic Zm9vOmJhcg=="),
                6 => tok.clone(),
                7 => format!("devgate_session={tok}"),
                8 => format!("x=1; devgate_session={tok}; devgate_token={tok}"),
                _ => format!("devgate_token={tok}; dev={tok}"),
            }
            .into_bytes()
        }
        Text::Key(i, form) => {
            let k = &keys[usize::from(*i) % keys.len()].text;
            match form % 5 {
                0 => k.clone(),
                1 => format!("?key={k}"),
                2 => format!("?a=1&private_key={k}&b=2"),
                3 => format!("?k%65y={k}"),
                _ => format!("{k}, {k}"),
            }
            .into_bytes()
        }
        Text::Concat(a, i, b) => {
            let mut out = a.clone();
            out.extend_from_slice(pick[usize::from(*i) % pick.len()].as_bytes());
            out.extend_from_slice(b);
            out
        }
    }
}
