//! Key files and fresh randomness, shared by keygen, mint, mint-key, verify and hash-password.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use devgate::core::token::{Key, KeySet, Secret};
use zeroize::Zeroizing;

use crate::cli::Failure;

/// Largest key file read.
const MAX_KEY_FILE: usize = 4096;

/// Fills `buf` from the operating system's random source.
pub fn random(buf: &mut [u8]) -> Result<(), Failure> {
    getrandom::fill(buf).map_err(|e| Failure::Io(format!("random source: {e}")))
}

/// Creates `path` for a new secret: mode 0600, never over an existing file.
#[cfg(unix)]
pub fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Creates `path` for a new secret: refused where a file mode cannot keep it private.
#[cfg(not(unix))]
pub fn create_private(_path: &Path) -> io::Result<File> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "--out needs a Unix system (file mode 0600)",
    ))
}

/// Warns when a key file is readable by group or others.
#[cfg(unix)]
fn warn_if_shared(path: &str, file: &File) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = file.metadata() {
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "devgate: warning: {path} is accessible by group or others (chmod 600 {path})"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &str, _file: &File) {}

/// The base64url secret in the file at `path` (surrounding whitespace ignored), as the only
/// key of a key set, with id `kid`. Messages name the file, never its contents.
pub fn read_key(path: &str, kid: &str) -> Result<KeySet, Failure> {
    let mut file = File::open(path).map_err(|e| Failure::io(path, &e))?;
    warn_if_shared(path, &file);
    // Wiped on every return. Room for the whole read, so it never moves (leaving a copy).
    let mut text = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE + 1));
    (&mut file)
        .take(MAX_KEY_FILE as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|e| Failure::io(path, &e))?;
    if text.len() > MAX_KEY_FILE {
        return Err(Failure::Refused(format!(
            "{path}: too large for a key file"
        )));
    }
    let secret = match std::str::from_utf8(&text) {
        Ok(s) => {
            Secret::from_b64url(s.trim()).map_err(|e| Failure::Refused(format!("{path}: {e}")))?
        }
        Err(_) => {
            return Err(Failure::Refused(format!(
                "{path}: secret is not valid base64url"
            )))
        }
    };
    KeySet::new(vec![Key {
        id: kid.to_owned(),
        secret,
    }])
    .map_err(|e| Failure::Refused(e.to_string()))
}

#[cfg(test)]
mod tests {
    use crate::cli::Failure;
    use crate::test_support::{run_capture, temp_file};

    #[test]
    fn key_file_errors() {
        let mint = |path: &str| {
            run_capture(
                &["mint", "--sub", "a", "--ttl", "1h", "--key-file", path],
                "",
            )
            .0
        };
        assert!(matches!(
            mint("/nonexistent/devgate/key"),
            Err(Failure::Io(_))
        ));
        let short = temp_file("short", "AAAA");
        assert!(matches!(mint(&short), Err(Failure::Refused(m)) if m.contains("at least 32")));
        let std_alpha = temp_file("std", "+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/");
        assert!(
            matches!(mint(&std_alpha), Err(Failure::Refused(m)) if m.contains("base64url") && !m.contains("+/+/"))
        );
        let binary = temp_file("bin", "\u{1}\u{2}");
        assert!(matches!(mint(&binary), Err(Failure::Refused(_))));
    }

    #[test]
    fn key_file_too_large_is_refused_without_its_contents() {
        let big = temp_file("big", &"A".repeat(4097));
        let Err(Failure::Refused(m)) = run_capture(
            &["mint", "--sub", "a", "--ttl", "1h", "--key-file", &big],
            "",
        )
        .0
        else {
            panic!()
        };
        assert!(
            m.ends_with("too large for a key file") && !m.contains("AAAA"),
            "{m}"
        );
        // 4096 bytes with surrounding whitespace is read (and then judged as a secret).
        let padded = temp_file(
            "padded",
            &format!("{}{}\n", " ".repeat(4096 - 44), crate::test_support::KEY),
        );
        assert!(run_capture(
            &["mint", "--sub", "a", "--ttl", "1h", "--key-file", &padded],
            ""
        )
        .0
        .is_ok());
    }

    #[test]
    fn random_fills_differently_each_time() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        super::random(&mut a).unwrap();
        super::random(&mut b).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
