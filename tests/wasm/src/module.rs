//! The compiled module, once per test process.

use std::path::PathBuf;
use std::sync::OnceLock;

use wasmtime::{Config, Engine, Module};

use crate::error::{HostError, HostResult};

/// Where the module is: `$DEVGATE_WASM`, else `<repo>/target/wasm32-wasip1/release/devgate.wasm`.
pub fn wasm_path() -> PathBuf {
    match std::env::var_os("DEVGATE_WASM") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/wasm32-wasip1/release/devgate.wasm"),
    }
}

pub(crate) struct Compiled {
    pub(crate) engine: Engine,
    pub(crate) module: Module,
}

pub(crate) static COMPILED: OnceLock<Result<Compiled, String>> = OnceLock::new();

pub(crate) fn compiled() -> HostResult<&'static Compiled> {
    let result = COMPILED.get_or_init(|| {
        let path = wasm_path();
        if !path.is_file() {
            let mut message = String::from(
                "devgate.wasm not built: run `make build` (target/wasm32-wasip1/release/devgate.wasm)",
            );
            if std::env::var_os("DEVGATE_WASM").is_some() {
                message.push_str(&format!("; DEVGATE_WASM points at {}", path.display()));
            }
            return Err(message);
        }
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config).map_err(|e| format!("wasmtime engine: {e:#}"))?;
        let module = Module::from_file(&engine, &path)
            .map_err(|e| format!("compiling {}: {e:#}", path.display()))?;
        Ok(Compiled { engine, module })
    });
    result.as_ref().map_err(|m| HostError(m.clone()))
}

/// The module's imports as `module::name` strings (sorted), for inspection in tests.
pub fn module_imports() -> HostResult<Vec<String>> {
    let c = compiled()?;
    let mut v: Vec<String> = c
        .module
        .imports()
        .map(|i| format!("{}::{}", i.module(), i.name()))
        .collect();
    v.sort();
    Ok(v)
}

/// The module's exports (sorted).
pub fn module_exports() -> HostResult<Vec<String>> {
    let c = compiled()?;
    let mut v: Vec<String> = c.module.exports().map(|e| e.name().to_string()).collect();
    v.sort();
    Ok(v)
}
