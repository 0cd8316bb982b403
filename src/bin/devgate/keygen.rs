//! `devgate keygen`: a new 32-byte secret.

use std::io::{self, Write};
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::args::Args;
use crate::cli::{Command, Failure, Io};
use crate::keys::{create_private, random};

/// `devgate keygen`.
pub const COMMAND: Command = Command {
    name: "keygen",
    summary: "generate a new 32-byte secret (base64url)",
    help: HELP,
    options: &["--out"],
    flags: &[],
    run,
};

const HELP: &str = "\
usage: devgate keygen [--out FILE]

Prints 32 random bytes from the operating system (getrandom) as unpadded base64url.
  --out FILE   write the secret to FILE instead, created with mode 0600; refuses to
               overwrite an existing file
";

fn run(args: &Args, io: &mut Io<'_>) -> Result<(), Failure> {
    args.no_positionals()?;
    // Create the output file (0600, never overwriting) before touching any secret.
    let file = match args.get("--out") {
        Some(path) => Some((
            path,
            create_private(Path::new(path)).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Failure::Io(format!("{path}: already exists; refusing to overwrite it"))
                } else {
                    Failure::io(path, &e)
                }
            })?,
        )),
        None => None,
    };
    // Both buffers are wiped when they go out of scope, whichever way this returns.
    let mut bytes = Zeroizing::new([0u8; 32]);
    random(bytes.as_mut_slice())?;
    // 32 bytes are 43 base64url characters; one more for the newline.
    let mut encoded = Zeroizing::new([0u8; 44]);
    let len = URL_SAFE_NO_PAD
        .encode_slice(bytes.as_slice(), encoded.as_mut_slice())
        .map_err(|_| Failure::Io("encoding the secret".to_owned()))?;
    let line = encoded
        .get_mut(..=len)
        .ok_or_else(|| Failure::Io("encoding the secret".to_owned()))?;
    if let Some(last) = line.last_mut() {
        *last = b'\n';
    }
    match file {
        Some((path, mut f)) => f
            .write_all(line)
            .and_then(|()| f.sync_all())
            .map_err(|e| Failure::io(path, &e)),
        None => io
            .out
            .write_all(line)
            .map_err(|e| Failure::io("stdout", &e)),
    }
}
