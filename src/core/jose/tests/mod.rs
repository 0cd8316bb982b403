//! Tests of the JOSE verifier: known answers from PyJWT (`vectors.rs`), edge cases
//! (`edges.rs`).

mod edges;
mod vectors;
