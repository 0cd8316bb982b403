//! The developers who may use the login form: an Apache htpasswd file, bcrypt hashes only.
//!
//! # Format
//!
//! One `user:hash` per line, as `htpasswd -B` writes them. Lines that are empty (or only
//! whitespace) and lines whose first character is `#` are ignored; trailing whitespace
//! (including the `\r` of CRLF files) is ignored. Everything else must be a valid entry, and the
//! first bad line rejects the whole file with its line number and the reason ([`Problem`]):
//!
//! * the hash must be bcrypt, `$2y$` (what `htpasswd -B` writes), `$2b$` (OpenBSD, Python,
//!   Go, ...) or `$2a$`: all three are the same algorithm for the passwords a browser sends.
//!   `{SHA}` (unsalted SHA-1), `$apr1$` (Apache MD5), `$1$`/`$5$`/`$6$` (crypt MD5/SHA),
//!   13-character DES crypt and plain text are refused: they fall to a GPU in minutes, and
//!   supporting them would mean shipping their code in the filter. `$2x$` (the marker of
//!   passwords hashed with an old sign-extension bug) is refused too;
//! * the cost must be at most `max_cost` ([`DEFAULT_MAX_COST`], 10);
//! * the user name becomes the developer name the upstream receives, so it must be one the
//!   identity header and a session token can carry: 1 to 256 printable ASCII characters, no
//!   leading or trailing space ([`token::is_valid_subject`](crate::core::token::is_valid_subject));
//! * a user may appear only once: with two lines for the same user, which password counts
//!   would depend on the reader.
//!
//! # Why a cost cap
//!
//! A proxy-wasm filter runs on an Envoy worker thread, and a bcrypt verify runs to completion:
//! while it runs, every other connection of that worker waits. The time doubles with each cost
//! step. Measured for one verify (bcrypt 0.19, devgate's release profile, a 2-vCPU x86-64 VM):
//! cost 10 takes 70-100 ms natively and 95-110 ms as Wasm in wasmtime; cost 12 takes
//! 280-410 ms natively and 440-530 ms in wasmtime. Cost 10 keeps a login to about a tenth of
//! a second of one worker (every attempt pays it, unknown users too), and the per-address rate
//! limit of the login form bounds how often anyone can make a worker pay it. `htpasswd -B`
//! uses cost 5 (about 3 ms) unless given `-C`; `htpasswd -B -C 10` is the recommended choice.
//!
//! # Timing
//!
//! [`Users::verify`] costs the same whether the user exists or not, and whatever cost the
//! user's own hash has: an unknown user is verified against a fixed dummy hash at the file's
//! highest cost, and a user whose hash has a lower cost is followed by dummy verifies that
//! make up the difference (costs `c, c+1, ..., top-1` add up to the work of cost `top`). The
//! time of a failed login therefore says nothing about which users exist.
//!
//! # Secrets
//!
//! Hashes and passwords never appear in errors, logs or `Debug` output. bcrypt reads at most
//! the first 72 bytes of a password (as every bcrypt implementation, `htpasswd` included).

use std::collections::BTreeMap;
use std::fmt;
use std::hint::black_box;

use crate::core::token::is_valid_subject;

/// The default cap on the bcrypt cost of an entry (see the module documentation).
pub const DEFAULT_MAX_COST: u32 = 10;

/// The lowest cost bcrypt defines.
pub const MIN_COST: u32 = 4;

/// The highest cost bcrypt defines.
pub const MAX_BCRYPT_COST: u32 = 31;

/// Length of a bcrypt hash string: `$2y$NN$` + 22 characters of salt + 31 of hash.
const BCRYPT_LEN: usize = 60;

/// Why a line of an htpasswd file was refused. Never carries the hash or a password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// No `:` separating the user from the hash.
    NoColon,
    /// The user name cannot be a developer name.
    BadUser,
    /// A hash in another format; the field names it.
    NotBcrypt(Scheme),
    /// Starts like bcrypt but is not a well-formed bcrypt hash.
    MalformedBcrypt,
    /// The bcrypt cost is above the configured cap.
    CostTooHigh {
        /// The hash's cost.
        cost: u32,
        /// The configured cap.
        max: u32,
    },
    /// The user already appeared, on line `first`.
    Duplicate {
        /// The line (1-based) where the user first appeared.
        first: usize,
    },
}

/// A password-hash format that is not accepted, as far as it can be recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `{SHA}`: unsalted SHA-1 (`htpasswd -s`).
    Sha1,
    /// `$apr1$`: Apache's MD5 (`htpasswd -m`, its old default).
    Apr1,
    /// `$1$`: crypt MD5.
    Md5Crypt,
    /// `$5$`: crypt SHA-256 (`htpasswd -2`).
    Sha256Crypt,
    /// `$6$`: crypt SHA-512 (`htpasswd -5`).
    Sha512Crypt,
    /// `$2x$`: bcrypt of the sign-extension bug.
    Bcrypt2x,
    /// Nothing after the `:`.
    Empty,
    /// 13 characters of the crypt alphabet (`htpasswd -d`), or a plain-text password.
    CryptOrPlain,
    /// Anything else (another `$id$` scheme, or plain text).
    Unknown,
}

impl Scheme {
    fn describe(self) -> &'static str {
        match self {
            Scheme::Sha1 => "a {SHA} hash (unsalted SHA-1)",
            Scheme::Apr1 => "an $apr1$ hash (Apache MD5)",
            Scheme::Md5Crypt => "a $1$ hash (crypt MD5)",
            Scheme::Sha256Crypt => "a $5$ hash (crypt SHA-256)",
            Scheme::Sha512Crypt => "a $6$ hash (crypt SHA-512)",
            Scheme::Bcrypt2x => "a $2x$ hash (bcrypt with the old sign-extension bug)",
            Scheme::Empty => "an empty password field",
            Scheme::CryptOrPlain => "a crypt(3) DES hash or a plain-text password",
            Scheme::Unknown => "not a hash format devgate knows (or a plain-text password)",
        }
    }

    fn recognise(hash: &str) -> Scheme {
        let all_crypt64 = hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
        if hash.is_empty() {
            Scheme::Empty
        } else if hash.starts_with("{SHA}") {
            Scheme::Sha1
        } else if hash.starts_with("$apr1$") {
            Scheme::Apr1
        } else if hash.starts_with("$1$") {
            Scheme::Md5Crypt
        } else if hash.starts_with("$5$") {
            Scheme::Sha256Crypt
        } else if hash.starts_with("$6$") {
            Scheme::Sha512Crypt
        } else if hash.starts_with("$2x$") {
            Scheme::Bcrypt2x
        } else if hash.len() == 13 && all_crypt64 {
            Scheme::CryptOrPlain
        } else {
            Scheme::Unknown
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HINT: &str = "only bcrypt ($2y$/$2b$) hashes are accepted: htpasswd -B";
        match self {
            Problem::NoColon => f.write_str("expected `user:hash`"),
            Problem::BadUser => f.write_str(
                "the user name must be 1 to 256 printable ASCII characters without leading or \
                 trailing spaces (it becomes the developer name)",
            ),
            Problem::NotBcrypt(scheme) => write!(f, "{}; {HINT}", scheme.describe()),
            Problem::MalformedBcrypt => write!(
                f,
                "not a valid bcrypt hash ($2y$, two-digit cost 04..31, $, 53 characters of \
                 ./A-Za-z0-9); {HINT}"
            ),
            Problem::CostTooHigh { cost, max } => write!(
                f,
                "bcrypt cost {cost} is above the limit of {max} (every login would stall an \
                 Envoy worker); re-hash with htpasswd -B -C {max}"
            ),
            Problem::Duplicate { first } => {
                write!(f, "the user already appears on line {first}")
            }
        }
    }
}

/// Why an htpasswd file was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HtpasswdError {
    /// Line `line` (1-based) is not a valid entry.
    Line {
        /// The line, 1-based.
        line: usize,
        /// What is wrong with it.
        problem: Problem,
    },
    /// No entries at all: nobody could log in.
    NoUsers,
}

impl fmt::Display for HtpasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HtpasswdError::Line { line, problem } => write!(f, "line {line}: {problem}"),
            HtpasswdError::NoUsers => f.write_str("no users (every line is empty or a comment)"),
        }
    }
}

impl std::error::Error for HtpasswdError {}

/// One user's hash.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    /// The 60-character bcrypt hash, already checked to parse.
    hash: String,
    cost: u32,
}

/// The users of an htpasswd file, ready to verify passwords.
///
/// `Debug` shows how many users there are and the cost, never a hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Users {
    users: BTreeMap<String, Entry>,
    /// The highest cost in the file: every [`Users::verify`] does this much work.
    cost: u32,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users")
            .field("count", &self.users.len())
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

/// Checks a bcrypt hash string: `Ok(cost)` or what is wrong with it.
fn check_bcrypt(hash: &str, max_cost: u32) -> Result<u32, Problem> {
    let b = hash.as_bytes();
    let version = b.get(..4).unwrap_or_default();
    if !matches!(version, b"$2y$" | b"$2b$" | b"$2a$") {
        return Err(Problem::NotBcrypt(Scheme::recognise(hash)));
    }
    let cost = match (b.get(4), b.get(5), b.get(6)) {
        (Some(&h @ b'0'..=b'9'), Some(&l @ b'0'..=b'9'), Some(b'$')) => {
            u32::from(h - b'0') * 10 + u32::from(l - b'0')
        }
        _ => return Err(Problem::MalformedBcrypt),
    };
    if b.len() != BCRYPT_LEN || !(MIN_COST..=MAX_BCRYPT_COST).contains(&cost) {
        return Err(Problem::MalformedBcrypt);
    }
    // The bcrypt crate's own parser: the salt and hash must decode (canonically) too, or
    // every verify against this entry would fail.
    if hash.parse::<bcrypt::HashParts>().is_err() {
        return Err(Problem::MalformedBcrypt);
    }
    if cost > max_cost {
        return Err(Problem::CostTooHigh {
            cost,
            max: max_cost,
        });
    }
    Ok(cost)
}

/// The hash unknown users are checked against (and lower-cost users are padded with): a
/// well-formed bcrypt hash of cost `cost`, all-zero salt and digest, that no password matches
/// in practice. Verifying against it does exactly the work of a real verify.
fn dummy_hash(cost: u32) -> String {
    format!("$2b${cost:02}${}", ".".repeat(53))
}

/// One bcrypt verify whose result is thrown away, kept from being optimised out.
fn burn(password: &[u8], cost: u32) {
    let hash = dummy_hash(cost);
    let _ = black_box(bcrypt::verify(black_box(password), black_box(&hash)));
}

impl Users {
    /// Parses htpasswd `content` (see the module documentation), refusing entries whose bcrypt
    /// cost is above `max_cost` ([`DEFAULT_MAX_COST`] unless configured).
    pub fn parse(content: &str, max_cost: u32) -> Result<Users, HtpasswdError> {
        let mut users: BTreeMap<String, Entry> = BTreeMap::new();
        let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
        let mut top = MIN_COST;
        for (index, raw) in content.split('\n').enumerate() {
            let line = index.saturating_add(1);
            let text = raw.trim_end();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let err = |problem| HtpasswdError::Line { line, problem };
            let (user, hash) = text.split_once(':').ok_or(err(Problem::NoColon))?;
            if !is_valid_subject(user) {
                return Err(err(Problem::BadUser));
            }
            if let Some(&first) = first_line.get(user) {
                return Err(err(Problem::Duplicate { first }));
            }
            let cost = check_bcrypt(hash, max_cost).map_err(err)?;
            top = top.max(cost);
            first_line.insert(user.to_string(), line);
            users.insert(
                user.to_string(),
                Entry {
                    hash: hash.to_string(),
                    cost,
                },
            );
        }
        if users.is_empty() {
            return Err(HtpasswdError::NoUsers);
        }
        Ok(Users { users, cost: top })
    }

    /// How many users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Always false for a parsed file (an empty one is refused); here for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The highest bcrypt cost in the file: the work every [`Users::verify`] does.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// True if `user` exists and `password` matches their hash. Takes the same time for
    /// unknown users and for users of any cost (see the module documentation). Only the first
    /// 72 bytes of `password` count, as in every bcrypt implementation.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(entry) => {
                let ok = matches!(bcrypt::verify(password, &entry.hash), Ok(true));
                for cost in entry.cost..self.cost {
                    burn(password, cost);
                }
                ok
            }
            None => {
                burn(password, self.cost);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by `htpasswd -nbB -C <cost> <user> <password>` (Apache 2.4.71, Debian 12).
    /// Password: correct horse
    const ALICE_05: &str = "$2y$05$WBNRJBi.4c8ilvNVGxxUCOTTVPsWRpkAqpvHW2izxuA1HtxO/eNdK";
    /// Password: s3cret
    const BOB_10: &str = "$2y$10$HlyJmN8Vs5mqpA4c.3v1QeD.xxEuABmkfcIwuuHi979zcGbrtML6K";
    /// Password: pw12
    const CAROL_12: &str = "$2y$12$RJAqmLxvAKtex8.pALOyu.qo.jf2BX9hcU6cpSIbCtcaJ1jCvF1R.";
    /// Password: pw4
    const DAVE_04: &str = "$2y$04$JZvtNra6rAJeuvkYEvBT1OJU4Xart.tMqynAn8LVPA77/z4HIdAEq";
    /// Password: pässwörd €
    const UTF_04: &str = "$2y$04$VANq9toRsjknQgqv37dKeOis3B54XMJvTT9Pc45fUPTAf85MR.0Cu";
    /// Password: 'a'*72 + TAIL
    const LONG_04: &str = "$2y$04$Z/nNTtGcxRPTX9veNk0yquPjtIMbz55cxNwOmf0l9/8ZkC4NWqOla";
    /// Password: a:b c
    const COLON_04: &str = "$2y$04$Z/ddOFgP/wPTbE1gxKH/WusRzg1wogMwJJNfeN3NSdFBVIsfd/q/i";
    /// Password: (empty)
    const EMPTY_04: &str = "$2y$04$s1n/Ux0aLggcmtH8lcn46uOLf/K5oG2KdKLZbUPpALuDBt5NaPMUe";

    fn parse(content: &str) -> Result<Users, HtpasswdError> {
        Users::parse(content, DEFAULT_MAX_COST)
    }

    fn line_err(content: &str) -> (usize, Problem) {
        match parse(content) {
            Err(HtpasswdError::Line { line, problem }) => (line, problem),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn verifies_htpasswd_b_hashes() {
        let file = format!(
            "dave:{DAVE_04}\nutf:{UTF_04}\nlong:{LONG_04}\ncolon:{COLON_04}\nempty:{EMPTY_04}\n"
        );
        let users = parse(&file).unwrap();
        assert_eq!(users.len(), 5);
        assert!(!users.is_empty());
        assert_eq!(users.cost(), 4);
        assert!(users.verify("dave", b"pw4"));
        assert!(!users.verify("dave", b"pw5"));
        assert!(!users.verify("dave", b"PW4"));
        assert!(!users.verify("dave", b"pw4 "));
        assert!(!users.verify("dave", b"pw4\0"));
        assert!(!users.verify("dave", b""));
        assert!(
            !users.verify("Dave", b"pw4"),
            "user names are case-sensitive"
        );
        assert!(!users.verify("nobody", b"pw4"));
        assert!(!users.verify("", b"pw4"));
        assert!(users.verify("utf", "pässwörd €".as_bytes()));
        assert!(!users.verify("utf", "passwörd €".as_bytes()));
        assert!(users.verify("colon", b"a:b c"));
        assert!(users.verify("empty", b""));
        assert!(!users.verify("empty", b"x"));
        // bcrypt reads 72 bytes, htpasswd too: what follows them does not count.
        let mut long = vec![b'a'; 72];
        assert!(users.verify("long", &long));
        long.extend_from_slice(b"TAIL");
        assert!(users.verify("long", &long));
        long.extend_from_slice(b"anything");
        assert!(users.verify("long", &long));
        assert!(!users.verify("long", &[b'a'; 71]));
        // Arbitrary bytes as a password: no panic.
        assert!(!users.verify("dave", &[0xff, 0x00, 0xc3]));
        assert!(!users.verify("dave", &[0u8; 1000]));
    }

    #[test]
    fn all_three_bcrypt_prefixes_are_the_same_algorithm() {
        for prefix in ["$2y$", "$2b$", "$2a$"] {
            let hash = format!("{prefix}{}", DAVE_04.get(4..).unwrap());
            let users = parse(&format!("dave:{hash}")).unwrap();
            assert!(users.verify("dave", b"pw4"), "{prefix}");
            assert!(!users.verify("dave", b"pw"), "{prefix}");
        }
    }

    #[test]
    fn comments_blank_lines_and_crlf() {
        let file = format!(
            "# developers\n\n   \n\t\r\ndave:{DAVE_04}\r\n# utf:{UTF_04}\r\n  \
             # indented comment? no: not a comment\n"
        );
        // An indented `#` is not a comment: the line has no valid user.
        assert_eq!(line_err(&file), (7, Problem::BadUser));
        let file = format!("# developers\n\n   \n\t\r\ndave:{DAVE_04}\r\n# utf:{UTF_04}\r\n");
        let users = parse(&file).unwrap();
        assert_eq!(users.len(), 1);
        assert!(users.verify("dave", b"pw4"));
        assert!(!users.verify("utf", "pässwörd €".as_bytes()));
        // Trailing whitespace after the hash is ignored; no final newline is fine.
        let users = parse(&format!("dave:{DAVE_04} \t")).unwrap();
        assert!(users.verify("dave", b"pw4"));
    }

    #[test]
    fn refuses_every_other_format_with_line_and_reason() {
        let cases = [
            ("eve:{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI=", Scheme::Sha1),
            ("eve:$apr1$ARW4oLQu$3UsMCz1s6QqF2TM/OsjJA0", Scheme::Apr1),
            ("eve:$1$abcdefgh$0123456789012345678901", Scheme::Md5Crypt),
            (
                "eve:$5$MgYCCN8KfDw/p1bB$pHUxwmO/p/9wpIq2zfrDz2jBkWW5S7J9/oPAGtxRV34",
                Scheme::Sha256Crypt,
            ),
            (
                concat!(
                    "eve:$6$T1.Axcbr6KUGcCB4$0VlgO.YQB5OCgAkaiwJml4HRHXydCEL/y0BVZ3SYS9RCqt1QJ0y",
                    "Jo.OU2I2NQ42PDzk2kuuc.jX65mD9KTyC40"
                ),
                Scheme::Sha512Crypt,
            ),
            ("eve:rN8yGAOJe59A6", Scheme::CryptOrPlain),
            ("eve:x", Scheme::Unknown),
            ("eve:correct horse battery staple", Scheme::Unknown),
            ("eve:", Scheme::Empty),
            (
                "eve:$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
                Scheme::Unknown,
            ),
        ];
        for (entry, scheme) in cases {
            let file = format!("# header\ndave:{DAVE_04}\n{entry}\n");
            let err = parse(&file).unwrap_err();
            assert_eq!(
                err,
                HtpasswdError::Line {
                    line: 3,
                    problem: Problem::NotBcrypt(scheme)
                },
                "{entry}"
            );
            let text = err.to_string();
            assert!(text.starts_with("line 3: "), "{text}");
            assert!(
                text.contains("only bcrypt ($2y$/$2b$) hashes are accepted: htpasswd -B"),
                "{text}"
            );
            // The message never echoes the hash.
            let hash = entry.split_once(':').unwrap().1;
            if hash.len() > 1 {
                assert!(!text.contains(hash), "{text}");
            }
        }
        let x2 = format!("eve:$2x${}", DAVE_04.get(4..).unwrap());
        assert_eq!(line_err(&x2), (1, Problem::NotBcrypt(Scheme::Bcrypt2x)));
    }

    #[test]
    fn refuses_malformed_bcrypt() {
        let body = DAVE_04.get(7..).unwrap();
        let cases = [
            format!("$2y$4${body}"),
            format!("$2y$004${body}"),
            format!("$2y$xx${body}"),
            format!("$2y$03${body}"),
            format!("$2y$32${body}"),
            format!("$2y$99${body}"),
            format!("$2y$04{body}"),
            format!("$2y$04${body}x"),
            format!("$2y$04${}", body.get(1..).unwrap()),
            format!("$2y$04${}!", body.get(1..).unwrap()),
            format!("$2y$04${}+", body.get(1..).unwrap()),
            format!("$2y$04${}é", body.get(2..).unwrap()),
            // The last character carries unused bits that must be zero.
            format!("$2y$04${}r", body.get(..52).unwrap()),
            "$2y$".to_string(),
            "$2y$04$".to_string(),
            "$2b".to_string(),
        ];
        for hash in cases {
            let (line, problem) = line_err(&format!("dave:{hash}"));
            assert_eq!(line, 1);
            assert!(
                matches!(problem, Problem::MalformedBcrypt | Problem::NotBcrypt(_)),
                "{hash}: {problem:?}"
            );
        }
        assert_eq!(
            line_err(&format!("dave:$2y$04{body}")),
            (1, Problem::MalformedBcrypt)
        );
    }

    #[test]
    fn cost_cap() {
        // Parsing never runs bcrypt: a cost-31 entry is refused instantly.
        let body = DAVE_04.get(7..).unwrap();
        let err = line_err(&format!("dave:$2y$31${body}"));
        assert_eq!(err, (1, Problem::CostTooHigh { cost: 31, max: 10 }));
        let file = format!("dave:{DAVE_04}\nbob:{BOB_10}\ncarol:{CAROL_12}\n");
        let err = parse(&file).unwrap_err();
        assert_eq!(
            err,
            HtpasswdError::Line {
                line: 3,
                problem: Problem::CostTooHigh { cost: 12, max: 10 }
            }
        );
        assert_eq!(
            err.to_string(),
            "line 3: bcrypt cost 12 is above the limit of 10 (every login would stall an Envoy \
             worker); re-hash with htpasswd -B -C 10"
        );
        assert_eq!(Users::parse(&file, 12).unwrap().cost(), 12);
        assert_eq!(Users::parse(&file, 31).unwrap().len(), 3);
        let err = Users::parse(&format!("alice:{ALICE_05}"), 4).unwrap_err();
        assert_eq!(
            err,
            HtpasswdError::Line {
                line: 1,
                problem: Problem::CostTooHigh { cost: 5, max: 4 }
            }
        );
    }

    #[test]
    fn duplicates_and_bad_users() {
        let file = format!("dave:{DAVE_04}\n\nutf:{UTF_04}\ndave:{UTF_04}\n");
        assert_eq!(line_err(&file), (4, Problem::Duplicate { first: 1 }));
        assert_eq!(
            parse(&file).unwrap_err().to_string(),
            "line 4: the user already appears on line 1"
        );
        // Same password, same hash: still a duplicate.
        let file = format!("dave:{DAVE_04}\ndave:{DAVE_04}\n");
        assert_eq!(line_err(&file), (2, Problem::Duplicate { first: 1 }));
        // Differently cased names are different users.
        let file = format!("dave:{DAVE_04}\nDave:{UTF_04}\n");
        assert_eq!(parse(&file).unwrap().len(), 2);

        let long = "u".repeat(257);
        for user in [
            "",
            " dave",
            "dave ",
            "dä",
            "da\tve",
            "da\u{7f}ve",
            long.as_str(),
        ] {
            assert_eq!(
                line_err(&format!("{user}:{DAVE_04}")),
                (1, Problem::BadUser),
                "{user:?}"
            );
        }
        assert!(parse(&format!("{}:{DAVE_04}", "u".repeat(256))).is_ok());
        assert!(parse(&format!("Jane Doe <jane@example.com>:{DAVE_04}")).is_ok());
        assert_eq!(line_err("just a line"), (1, Problem::NoColon));
        assert_eq!(
            line_err("dave pw4").1.to_string(),
            "expected `user:hash`".to_string()
        );
    }

    #[test]
    fn empty_files() {
        for content in ["", "\n", "# only\n# comments\n", " \r\n\t\n"] {
            assert_eq!(parse(content).unwrap_err(), HtpasswdError::NoUsers);
        }
        assert!(HtpasswdError::NoUsers.to_string().contains("no users"));
    }

    #[test]
    fn debug_never_shows_hashes() {
        let users = parse(&format!("dave:{DAVE_04}\nutf:{UTF_04}")).unwrap();
        let debug = format!("{users:?}");
        assert_eq!(debug, "Users { count: 2, cost: 4, .. }");
        assert!(!debug.contains("$2y$"));
        assert!(!debug.contains("dave"));
    }

    #[test]
    fn dummy_hash_is_well_formed_and_matches_nothing() {
        for cost in MIN_COST..=MAX_BCRYPT_COST {
            let hash = dummy_hash(cost);
            assert_eq!(hash.len(), BCRYPT_LEN);
            assert_eq!(check_bcrypt(&hash, MAX_BCRYPT_COST), Ok(cost));
        }
        // Ok(false), not an error: the unknown-user path does the full bcrypt work.
        assert!(matches!(bcrypt::verify(b"", &dummy_hash(4)), Ok(false)));
        assert!(matches!(bcrypt::verify(b"pw4", &dummy_hash(4)), Ok(false)));
    }

    #[test]
    fn padding_makes_every_verify_cost_the_top_cost() {
        // With a cost-4 and a cost-5 user, the top is 5: dave (4) is padded with one cost-4
        // dummy, which together with his own verify is the work of one cost-5 verify.
        let users = parse(&format!("dave:{DAVE_04}\nalice:{ALICE_05}")).unwrap();
        assert_eq!(users.cost(), 5);
        assert!(users.verify("dave", b"pw4"));
        assert!(users.verify("alice", b"correct horse"));
        assert!(!users.verify("alice", b"pw4"));
        assert!(!users.verify("zed", b"correct horse"));
    }

    /// Rough timing of one verify, natively (`cargo test --release -- --ignored
    /// --nocapture bcrypt_timing`). Not a unit test: it takes seconds.
    #[test]
    #[ignore]
    fn bcrypt_timing() {
        use std::time::Instant;
        for (cost, hash) in [(10u32, BOB_10), (12, CAROL_12)] {
            let runs = 10;
            let start = Instant::now();
            for _ in 0..runs {
                black_box(bcrypt::verify(b"wrong", hash).unwrap());
            }
            let per = start.elapsed() / runs;
            println!("bcrypt cost {cost}: {per:?} per verify");
        }
        let users = parse(&format!("dave:{DAVE_04}\nbob:{BOB_10}")).unwrap();
        let names = ["dave", "bob", "nobody"];
        let mut total = [std::time::Duration::ZERO; 3];
        let rounds = 20;
        for _ in 0..rounds {
            for (i, user) in names.iter().enumerate() {
                let start = Instant::now();
                black_box(users.verify(user, b"wrong"));
                total[i] += start.elapsed();
            }
        }
        for (user, t) in names.iter().zip(total) {
            println!("Users::verify({user}): {:?}", t / rounds);
        }
    }
}
