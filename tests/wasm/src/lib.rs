//! Empty: this package only holds the wasm-host tests in tests/.
