//! The callbacks Envoy has twice, once for a stream's filter and once for a filter configuration:
//! HTTP callout, counter increment, gauge set, and scheduler new/commit/delete. The two members
//! of each pair take the same arguments and differ only in which Envoy object the first pointer
//! is (read from the 1.40 binary for the configuration-level counter: see its declaration). So
//! [`Kind`] names the one difference, the callbacks of each object, and [`Live`] implements every
//! call once for both; [`Host`](super::Host) and [`ConfigHost`](super::ConfigHost) (and the two
//! schedulers) only choose their kind.

use std::ffi::c_void;
use std::marker::PhantomData;

use super::imports::{
    envoy_dynamic_module_callback_http_filter_config_http_callout,
    envoy_dynamic_module_callback_http_filter_config_increment_counter,
    envoy_dynamic_module_callback_http_filter_config_scheduler_commit,
    envoy_dynamic_module_callback_http_filter_config_scheduler_delete,
    envoy_dynamic_module_callback_http_filter_config_scheduler_new,
    envoy_dynamic_module_callback_http_filter_config_set_gauge,
    envoy_dynamic_module_callback_http_filter_http_callout,
    envoy_dynamic_module_callback_http_filter_increment_counter,
    envoy_dynamic_module_callback_http_filter_scheduler_commit,
    envoy_dynamic_module_callback_http_filter_scheduler_delete,
    envoy_dynamic_module_callback_http_filter_scheduler_new,
    envoy_dynamic_module_callback_http_filter_set_gauge,
};
use super::types::{ModuleBuffer, ModuleHeaders, ModuleHttpHeader, CALLOUT_INIT_SUCCESS};

/// A metrics callback: `(object, id, label_values, label_values_length, value) -> result`.
pub(super) type MetricFn =
    unsafe extern "C" fn(*mut c_void, usize, *const ModuleBuffer, usize, u64) -> u32;

/// An HTTP callout: `(object, callout_id_out, cluster_name, headers, headers_size, body,
/// timeout_milliseconds) -> init result`.
pub(super) type CalloutFn = unsafe extern "C" fn(
    *mut c_void,
    *mut u64,
    ModuleBuffer,
    *const ModuleHttpHeader,
    usize,
    ModuleBuffer,
    u64,
) -> u32;

/// Which Envoy object a hook's pointer is, and that object's member of each twin callback. The
/// constants are the declared callbacks themselves, so the compiler checks that both members of
/// a pair take the same arguments; each keeps its own contract (see `imports.rs`).
pub(super) trait Kind {
    /// `*_increment_counter`.
    const INCREMENT_COUNTER: MetricFn;
    /// `*_set_gauge`.
    const SET_GAUGE: MetricFn;
    /// `*_http_callout`.
    const HTTP_CALLOUT: CalloutFn;
    /// `*_scheduler_new`.
    const SCHEDULER_NEW: unsafe extern "C" fn(*mut c_void) -> *mut c_void;
    /// `*_scheduler_commit`.
    const SCHEDULER_COMMIT: unsafe extern "C" fn(*mut c_void, u64);
    /// `*_scheduler_delete`.
    const SCHEDULER_DELETE: unsafe extern "C" fn(*mut c_void);
}

/// A stream's filter (`envoy_dynamic_module_type_http_filter_envoy_ptr`).
pub(super) enum OfStream {}

/// A filter configuration (`envoy_dynamic_module_type_http_filter_config_envoy_ptr`).
pub(super) enum OfConfig {}

impl Kind for OfStream {
    const INCREMENT_COUNTER: MetricFn = envoy_dynamic_module_callback_http_filter_increment_counter;
    const SET_GAUGE: MetricFn = envoy_dynamic_module_callback_http_filter_set_gauge;
    const HTTP_CALLOUT: CalloutFn = envoy_dynamic_module_callback_http_filter_http_callout;
    const SCHEDULER_NEW: unsafe extern "C" fn(*mut c_void) -> *mut c_void =
        envoy_dynamic_module_callback_http_filter_scheduler_new;
    const SCHEDULER_COMMIT: unsafe extern "C" fn(*mut c_void, u64) =
        envoy_dynamic_module_callback_http_filter_scheduler_commit;
    const SCHEDULER_DELETE: unsafe extern "C" fn(*mut c_void) =
        envoy_dynamic_module_callback_http_filter_scheduler_delete;
}

impl Kind for OfConfig {
    const INCREMENT_COUNTER: MetricFn =
        envoy_dynamic_module_callback_http_filter_config_increment_counter;
    const SET_GAUGE: MetricFn = envoy_dynamic_module_callback_http_filter_config_set_gauge;
    const HTTP_CALLOUT: CalloutFn = envoy_dynamic_module_callback_http_filter_config_http_callout;
    const SCHEDULER_NEW: unsafe extern "C" fn(*mut c_void) -> *mut c_void =
        envoy_dynamic_module_callback_http_filter_config_scheduler_new;
    const SCHEDULER_COMMIT: unsafe extern "C" fn(*mut c_void, u64) =
        envoy_dynamic_module_callback_http_filter_config_scheduler_commit;
    const SCHEDULER_DELETE: unsafe extern "C" fn(*mut c_void) =
        envoy_dynamic_module_callback_http_filter_config_scheduler_delete;
}

/// The pointer Envoy passed to the running hook for an object of kind `K`: live until the hook
/// returns. Made only by the exported hooks ([`Live::new`]), and held by a handle that does not
/// outlive the hook.
pub(super) struct Live<K> {
    ptr: *mut c_void,
    kind: PhantomData<K>,
}

impl<K: Kind> Live<K> {
    /// # Safety
    /// `ptr` is the pointer of kind `K` Envoy passed to the running hook, and the value is
    /// dropped before the hook returns.
    pub(super) unsafe fn new(ptr: *mut c_void) -> Live<K> {
        Live {
            ptr,
            kind: PhantomData,
        }
    }

    /// The raw pointer, for the callbacks that exist for one kind only.
    pub(super) fn ptr(&self) -> *mut c_void {
        self.ptr
    }

    /// Adds one to counter `id` (from `define_counter` on this object's configuration). Failing
    /// to count never changes a decision.
    pub(super) fn increment(&self, id: usize) {
        // SAFETY: the live pointer of this hook (`Live::new`); `id` came from `define_counter`
        // on the configuration (this one, or the one that created this filter); no labels
        // (NULL, 0).
        let _ = unsafe { (K::INCREMENT_COUNTER)(self.ptr, id, std::ptr::null(), 0, 1) };
    }

    /// Sets gauge `id` (from `define_gauge`, as [`Live::increment`]) to `value`.
    pub(super) fn set_gauge(&self, id: usize, value: u64) {
        // SAFETY: as `increment`, for a gauge id from `define_gauge`.
        let _ = unsafe { (K::SET_GAUGE)(self.ptr, id, std::ptr::null(), 0, value) };
    }

    /// Starts an HTTP call to `cluster`; `Err(init result)` when Envoy refused to start it (no
    /// answer will come).
    pub(super) fn http_callout<'h>(
        &self,
        cluster: &str,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let hs = ModuleHeaders::<8>::of(headers);
        let hs = hs.as_slice();
        let mut id = 0u64;
        // SAFETY: the live pointer of this hook; `id` is a valid out-pointer; the cluster name,
        // `hs` and every buffer it points to, and `body` outlive the call (Envoy copies them).
        let rc = unsafe {
            (K::HTTP_CALLOUT)(
                self.ptr,
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                hs.as_ptr(),
                hs.len(),
                ModuleBuffer::of(body),
                timeout_ms,
            )
        };
        if rc == CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(rc)
        }
    }

    /// A new scheduler for this object (NULL: Envoy made none). The caller owns it: see
    /// `schedulers.rs` for who deletes it, and when a commit is allowed.
    pub(super) fn scheduler_new(&self) -> *mut c_void {
        // SAFETY: the live pointer of this hook, on the thread the kind's declaration names (a
        // stream's worker inside a stream hook; the main thread in `config_new`).
        unsafe { (K::SCHEDULER_NEW)(self.ptr) }
    }
}
