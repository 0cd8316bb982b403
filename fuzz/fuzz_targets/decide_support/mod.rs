//! What the `decide` target needs beside its entry point: the fixed policies and credential
//! pools ([`pool`]), the fuzzed request ([`input`]) and the reference every decision is checked
//! against ([`reference`]). A directory, like `common/`, so that no file here looks like a target.

pub mod input;
pub mod pool;
pub mod reference;
