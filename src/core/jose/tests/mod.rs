//! Tests of the JOSE verifier.
