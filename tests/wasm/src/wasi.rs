//! The WASI imports, and stubs that trap on any other import.

use std::collections::HashSet;

use wasmtime::{ExternType, Linker, Module, Store};

use crate::codes::errno;
use crate::headers::show;
use crate::memory::{read, write, write_u32, write_u64, Ctx, WResult};
use crate::records::LogLine;
use crate::state::State;

pub(crate) fn define_wasi(linker: &mut Linker<State>) -> WResult<()> {
    const W: &str = "wasi_snapshot_preview1";

    linker.func_wrap(
        W,
        "fd_write",
        |mut c: Ctx<'_>, fd: i32, iovs: i32, n: i32, written_out: i32| -> WResult<i32> {
            let mut data = Vec::new();
            for i in 0..n {
                let iov = read(&mut c, iovs.wrapping_add(i * 8), 8)?;
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                data.extend(read(&mut c, ptr, len)?);
            }
            let s = c.data_mut();
            s.record("fd_write", format!("{fd}, {}", show(&data, 60)));
            match fd {
                1 => s.stdout.extend_from_slice(&data),
                2 => s.stderr.extend_from_slice(&data),
                _ => return Ok(errno::BADF),
            }
            s.logs.push(LogLine {
                level: None,
                message: String::from_utf8_lossy(&data).into_owned(),
                raw: data.clone(),
            });
            write_u32(&mut c, written_out, data.len() as u32)?;
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        W,
        "environ_sizes_get",
        |mut c: Ctx<'_>, count_out: i32, size_out: i32| -> WResult<i32> {
            c.data_mut().record("environ_sizes_get", String::new());
            let env = c.data().env.clone();
            let size: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
            write_u32(&mut c, count_out, env.len() as u32)?;
            write_u32(&mut c, size_out, size as u32)?;
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        W,
        "environ_get",
        |mut c: Ctx<'_>, environ: i32, buf: i32| -> WResult<i32> {
            c.data_mut().record("environ_get", String::new());
            let env = c.data().env.clone();
            let mut at = buf;
            for (i, (k, v)) in env.iter().enumerate() {
                write_u32(&mut c, environ.wrapping_add(i as i32 * 4), at as u32)?;
                let entry = format!("{k}={v}\0");
                write(&mut c, at, entry.as_bytes())?;
                at = at.wrapping_add(entry.len() as i32);
            }
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        W,
        "args_sizes_get",
        |mut c: Ctx<'_>, count_out: i32, size_out: i32| -> WResult<i32> {
            c.data_mut().record("args_sizes_get", String::new());
            write_u32(&mut c, count_out, 0)?;
            write_u32(&mut c, size_out, 0)?;
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        W,
        "args_get",
        |mut c: Ctx<'_>, _argv: i32, _buf: i32| -> WResult<i32> {
            c.data_mut().record("args_get", String::new());
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        W,
        "clock_time_get",
        |mut c: Ctx<'_>, id: i32, _precision: i64, out: i32| -> WResult<i32> {
            let s = c.data_mut();
            s.record("clock_time_get", format!("{id}"));
            let t = match id {
                0 => s.now_nanos,
                1..=3 => {
                    // Monotonic and CPU clocks: advance deterministically.
                    s.monotonic_nanos += 1_000;
                    s.monotonic_nanos
                }
                _ => return Ok(errno::INVAL),
            };
            write_u64(&mut c, out, t)?;
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        W,
        "clock_res_get",
        |mut c: Ctx<'_>, id: i32, out: i32| -> WResult<i32> {
            c.data_mut().record("clock_res_get", format!("{id}"));
            write_u64(&mut c, out, 1)?;
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(
        W,
        "random_get",
        |mut c: Ctx<'_>, buf: i32, len: i32| -> WResult<i32> {
            let s = c.data_mut();
            s.record("random_get", format!("{len}"));
            let mut bytes = Vec::with_capacity(len as u32 as usize);
            while bytes.len() < len as u32 as usize {
                bytes.extend_from_slice(&s.next_random().to_le_bytes());
            }
            bytes.truncate(len as u32 as usize);
            write(&mut c, buf, &bytes)?;
            Ok(errno::SUCCESS)
        },
    )?;

    linker.func_wrap(W, "sched_yield", |mut c: Ctx<'_>| -> WResult<i32> {
        c.data_mut().record("sched_yield", String::new());
        Ok(errno::SUCCESS)
    })?;

    // No preopened directories and no files, as in Envoy.
    linker.func_wrap(
        W,
        "fd_prestat_get",
        |mut c: Ctx<'_>, fd: i32, _out: i32| -> WResult<i32> {
            c.data_mut().record("fd_prestat_get", format!("{fd}"));
            Ok(errno::BADF)
        },
    )?;

    linker.func_wrap(
        W,
        "fd_prestat_dir_name",
        |mut c: Ctx<'_>, fd: i32, _p: i32, _l: i32| -> WResult<i32> {
            c.data_mut().record("fd_prestat_dir_name", format!("{fd}"));
            Ok(errno::BADF)
        },
    )?;

    linker.func_wrap(W, "fd_close", |mut c: Ctx<'_>, fd: i32| -> WResult<i32> {
        c.data_mut().record("fd_close", format!("{fd}"));
        Ok(errno::BADF)
    })?;

    linker.func_wrap(W, "proc_exit", |mut c: Ctx<'_>, code: i32| -> WResult<()> {
        c.data_mut().record("proc_exit", format!("{code}"));
        wasmtime::bail!("guest called proc_exit({code})")
    })?;

    Ok(())
}

/// Links a stub for every import the host does not implement: calling it records a violation and
/// traps with "unexpected host call MODULE::NAME".
pub(crate) fn define_stubs(
    linker: &mut Linker<State>,
    module: &Module,
    store: &mut Store<State>,
) -> WResult<()> {
    let mut stubbed = HashSet::new();
    for import in module.imports() {
        if linker.get_by_import(&mut *store, &import).is_some() {
            continue;
        }
        let (m, n) = (import.module().to_string(), import.name().to_string());
        match import.ty() {
            ExternType::Func(ty) => {
                let label = format!("{m}::{n}");
                if !stubbed.insert(label.clone()) {
                    continue;
                }
                linker.func_new(&m, &n, ty, move |mut c: Ctx<'_>, _params, _results| {
                    let message = format!("unexpected host call {label}");
                    c.data_mut().violation(message.clone());
                    Err(wasmtime::Error::msg(message))
                })?;
            }
            other => wasmtime::bail!("the module imports a non-function {m}::{n}: {other:?}"),
        }
    }
    Ok(())
}
