//! Errors of the test host.

use std::fmt;

/// A failure of the harness itself or of the module (trap), with a readable message.
pub struct HostError(pub String);

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostError {}

pub type HostResult<T> = Result<T, HostError>;

pub(crate) fn err<T>(message: impl Into<String>) -> HostResult<T> {
    Err(HostError(message.into()))
}
