//! The library's own loading, checked in `envoy_dynamic_module_on_program_init`: it pins itself in
//! memory, and it refuses an Envoy older than the one it is built for.
//!
//! * **Pinned.** Envoy `dlclose`s a module when the last filter configuration that loaded it goes
//!   (unless the operator set `do_not_close`). devgate runs threads of its own (the login pool,
//!   the revocation ticker); a configuration destroyed on an Envoy worker must not wait for them
//!   (every stream of that worker would stall), so they finish on their own, and an unload then
//!   would pull their code from under them. The library therefore re-opens itself with
//!   `RTLD_NODELETE | RTLD_NOLOAD` when it loads: `dlclose` never unmaps it. The cost: a loaded
//!   `libdevgate.so` stays mapped until Envoy exits (a new build needs a new path or a restart,
//!   which a pinned Envoy deployment does anyway).
//! * **Envoy 1.40 or newer.** The ABI version string only makes Envoy warn on a mismatch, and
//!   every callback devgate imports also exists in 1.39 (checked against 1.39.3's binary), so an
//!   older Envoy would load the module and call it with the older semantics, among them a
//!   `send_response` that ends the stream inside the call. devgate does not import a callback it
//!   has no use for just to fail the `dlopen`; instead it looks up, in Envoy's exported symbols,
//!   one callback that Envoy added in 1.40
//!   (`envoy_dynamic_module_callback_http_get_downstream_direct_remote_address`: absent from
//!   1.39.3's 607 exported callbacks, present among 1.40.0's 781), and refuses to load without it.
//!   A newer Envoy passes this check; whether devgate runs correctly there is for a compatibility
//!   run against that Envoy to show (`tests/e2e/test_native_abi.py` pins the one tested).
//!
//! Declares three functions of the C library (glibc: `libc.so.6`), not Envoy callbacks.

use std::ffi::{c_void, CStr};
use std::os::raw::{c_char, c_int};

/// glibc's `Dl_info`, as `dladdr` fills it.
#[repr(C)]
struct DlInfo {
    fname: *const c_char,
    fbase: *mut c_void,
    sname: *const c_char,
    saddr: *mut c_void,
}

extern "C" {
    /// Fills `info` for the object containing `addr`; 0 when none does.
    fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
    /// Opens (with `RTLD_NOLOAD`: only finds, never loads) a shared object; NULL on failure.
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    /// The address of `symbol` in `handle`'s scope (`RTLD_DEFAULT`, NULL: the global one); NULL
    /// when there is none.
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// `<dlfcn.h>` on Linux (glibc and musl alike).
const RTLD_NOW: c_int = 0x2;
const RTLD_NOLOAD: c_int = 0x4;
const RTLD_NODELETE: c_int = 0x1000;

/// A callback Envoy exports from 1.40 on (see the module doc).
const ENVOY_1_40_MARKER: &CStr =
    c"envoy_dynamic_module_callback_http_get_downstream_direct_remote_address";

/// Marks this library `RTLD_NODELETE`, so that no `dlclose` unmaps it. `false`: it could not.
pub(super) fn pin() -> bool {
    let anchor: fn() -> bool = pin;
    let mut info = DlInfo {
        fname: std::ptr::null(),
        fbase: std::ptr::null_mut(),
        sname: std::ptr::null(),
        saddr: std::ptr::null_mut(),
    };
    // SAFETY: `dladdr` only reads the loader's tables for an address of this library's code and
    // writes `info`, a valid out-pointer.
    let found = unsafe { dladdr(anchor as *const c_void, &mut info) } != 0;
    if !found || info.fname.is_null() {
        return false;
    }
    // SAFETY: `fname` is the loader's NUL-terminated path of this library, valid while it is
    // loaded (it is: this code runs from it). `RTLD_NOLOAD` finds the loaded object and adds
    // `RTLD_NODELETE` to it; the handle is kept open on purpose (never closed).
    let handle = unsafe { dlopen(info.fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) };
    !handle.is_null()
}

/// Whether the Envoy this library is loaded into exports the callbacks of 1.40.
pub(super) fn envoy_is_1_40_or_newer() -> bool {
    // SAFETY: a lookup of a NUL-terminated name in the global scope (`RTLD_DEFAULT`, NULL); the
    // address is only compared with NULL, never called.
    !unsafe { dlsym(std::ptr::null_mut(), ENVOY_1_40_MARKER.as_ptr()) }.is_null()
}
