//! Guest memory helpers.

use wasmtime::{Caller, Extern};

use crate::state::State;

pub(crate) type Ctx<'a> = Caller<'a, State>;
pub(crate) type WResult<T> = wasmtime::Result<T>;

pub(crate) fn memory(caller: &mut Ctx<'_>) -> WResult<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => wasmtime::bail!("host: the module exports no memory"),
    }
}

pub(crate) fn read(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> WResult<Vec<u8>> {
    let mem = memory(caller)?;
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    match mem.data(&*caller).get(start..start.saturating_add(len)) {
        Some(bytes) => Ok(bytes.to_vec()),
        None => wasmtime::bail!("host: guest buffer {start:#x}+{len} is out of bounds"),
    }
}

pub(crate) fn write(caller: &mut Ctx<'_>, ptr: i32, bytes: &[u8]) -> WResult<()> {
    let mem = memory(caller)?;
    let start = ptr as u32 as usize;
    match mem
        .data_mut(&mut *caller)
        .get_mut(start..start.saturating_add(bytes.len()))
    {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            Ok(())
        }
        None => wasmtime::bail!(
            "host: guest out-pointer {start:#x}+{} is out of bounds",
            bytes.len()
        ),
    }
}

pub(crate) fn write_u32(caller: &mut Ctx<'_>, ptr: i32, value: u32) -> WResult<()> {
    write(caller, ptr, &value.to_le_bytes())
}

pub(crate) fn write_u64(caller: &mut Ctx<'_>, ptr: i32, value: u64) -> WResult<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Allocates `bytes.len()` in the guest with its allocator export and copies `bytes` there.
pub(crate) fn guest_alloc(caller: &mut Ctx<'_>, bytes: &[u8]) -> WResult<u32> {
    let name = match caller.data().malloc {
        Some(name) => name,
        None => {
            wasmtime::bail!("host: the module exports neither malloc nor proxy_on_memory_allocate")
        }
    };
    let func = match caller.get_export(name) {
        Some(Extern::Func(f)) => f,
        _ => wasmtime::bail!("host: export {name} vanished"),
    };
    let typed = func.typed::<i32, i32>(&*caller)?;
    let ptr = typed.call(&mut *caller, bytes.len() as i32)?;
    if ptr == 0 {
        wasmtime::bail!("host: guest {name}({}) returned NULL", bytes.len());
    }
    write(caller, ptr, bytes)?;
    Ok(ptr as u32)
}

/// Returns bytes to the guest through (pointer, size) out-parameters, as proxy-wasm-cpp-host's
/// `copyToPointerSize` does: an empty value is a NULL pointer and size 0.
pub(crate) fn give(caller: &mut Ctx<'_>, bytes: &[u8], ptr_out: i32, size_out: i32) -> WResult<()> {
    let ptr = if bytes.is_empty() {
        0
    } else {
        guest_alloc(caller, bytes)?
    };
    write_u32(caller, ptr_out, ptr)?;
    write_u32(caller, size_out, bytes.len() as u32)
}
