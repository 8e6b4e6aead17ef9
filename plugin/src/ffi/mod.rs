//! The plugin's only `unsafe` code: the symbols Fluent Bit's proxy loader looks up, and safe
//! wrappers over the host's function table. Everything below this module is safe Rust.
//!
//! Rules this module keeps (see `shared/reference/abi.md`):
//! - every export catches panics: an unwind across `extern "C"` aborts Fluent Bit;
//! - Register writes only the five fields every host version has, and starts nothing; the
//!   property table goes to `config_map` on Fluent Bit 5.1.1 only, once the host program has
//!   said it is that version (`config_map.rs`);
//! - per-instance state lives behind `remote_context`, never in the shared plugin struct;
//! - host structs are read field by field through raw pointers, never as whole Rust values,
//!   because older hosts allocate shorter tables than the newest layout;
//! - borrowed host memory (chunk, tag, property strings) is copied before the call returns.

#[rustfmt::skip]
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    dead_code,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]
mod bindings;
mod cmt;
mod config_map;

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::{addr_of, addr_of_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bindings::{
    FLB_ERROR, FLB_OK, FLB_PROXY_GOLANG, FLB_PROXY_OUTPUT_PLUGIN, FLB_RETRY, flb_api,
    flb_plugin_proxy_def, flbgo_output_plugin,
};

use crate::instance::{FlushStatus, Instance};
use crate::job_end::HostShutdown;
use crate::log::{HostThread, Level, LogSink, StderrSink};
use crate::metrics::MetricsOffer;
use crate::runtime::RuntimeLease;
use fanout_core::config::Properties;

const PLUGIN_NAME: &CStr = c"fanout";
const PLUGIN_DESCRIPTION: &CStr =
    c"Fan out records to Datadog and Amazon Data Firehose (flb-fanout)";

// The exported functions must have exactly the signatures the header declares.
const _: bindings::flb_plugin_register_fn = Some(FLBPluginRegister);
const _: bindings::flb_plugin_init_fn = Some(FLBPluginInit);
const _: bindings::flb_plugin_flush_ctx_fn = Some(FLBPluginFlushCtx);
const _: bindings::flb_plugin_flush_fn = Some(FLBPluginFlush);
const _: bindings::flb_plugin_exit_ctx_fn = Some(FLBPluginExitCtx);
const _: bindings::flb_plugin_exit_fn = Some(FLBPluginExit);

const OK: c_int = FLB_OK as c_int;
const RETRY: c_int = FLB_RETRY as c_int;
const ERROR: c_int = FLB_ERROR as c_int;

/// What `remote_context` points at: one per `[OUTPUT]` instance.
struct Context {
    instance: Instance,
    /// Dropped after the instance, on the host thread, so the last exit joins the runtime.
    _runtime: RuntimeLease,
}

/// Addresses of contexts handed to the host and not yet exited. Fluent Bit ≤ 2.0.6 calls
/// ExitCtx with the *same* context for every instance; this keeps that from freeing twice.
static LIVE_CONTEXTS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Numbers instances in Init order for their default label (`fanout.0`, `fanout.1`, …) on a
/// host that does not say the instance's name.
static NEXT_ORDINAL: AtomicUsize = AtomicUsize::new(0);

fn live_contexts() -> std::sync::MutexGuard<'static, Vec<usize>> {
    LIVE_CONTEXTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs an export's body on a thread marked as a host thread, turning a panic into `fallback`.
fn guarded<R>(fallback: R, body: impl FnOnce() -> R) -> R {
    let _host = HostThread::enter();
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

fn status_code(status: FlushStatus) -> c_int {
    match status {
        FlushStatus::Ok => OK,
        FlushStatus::Retry => RETRY,
        FlushStatus::Error => ERROR,
    }
}

/// Whether the host's `flb_api` has the logging members (Fluent Bit ≥ 2.0.0). The table
/// carries no version; the exported host function `flb_output_log_check` appeared with them.
fn host_has_log_api() -> bool {
    static PROBE: OnceLock<bool> = OnceLock::new();
    *PROBE.get_or_init(|| {
        // SAFETY: the type is flb_output_log_check's signature; it is only looked up here.
        unsafe { host_function::<LogCheck>(c"flb_output_log_check") }.is_some()
    })
}

type GetProperty = unsafe extern "C" fn(*const c_char, *mut c_void) -> *const c_char;
type LogPrint = unsafe extern "C" fn(c_int, *const c_char, c_int, *const c_char, ...);
type LogCheck = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
type GetCmt = unsafe extern "C" fn(*mut c_void) -> *mut c_void;

/// Looks a function of the host executable up by name.
///
/// # Safety
/// `F` must be a function pointer type matching the symbol's C signature.
unsafe fn host_function<F: Copy>(name: &CStr) -> Option<F> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks the symbol up.
    let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if address.is_null() {
        return None;
    }
    debug_assert_eq!(size_of::<F>(), size_of::<*mut c_void>());
    // SAFETY: F is a function pointer type (pointer-sized) whose signature the caller vouches
    // for; the address is a function the host exports under that name.
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&address) })
}

type OutputName = unsafe extern "C" fn(*mut c_void) -> *const c_char;

/// The instance's name in Fluent Bit (its `alias`, else `fanout.<n>`), as Fluent Bit's own log
/// lines and `fluentbit_output_*` metrics show it; `None` if the host does not export
/// `const char *flb_output_name(struct flb_output_instance *)` (same from 1.9.10 to 5.1.1).
fn output_name(o_ins: *mut c_void) -> Option<String> {
    static GETTER: OnceLock<Option<OutputName>> = OnceLock::new();
    // SAFETY: OutputName is flb_output_name's signature, unchanged from 1.9.10 to 5.1.1.
    let getter = (*GETTER.get_or_init(|| unsafe { host_function(c"flb_output_name") }))?;
    // SAFETY: o_ins is this instance's flb_output_instance (valid during Init, where this is
    // called); the getter returns its alias or name, NUL-terminated and owned by the host,
    // copied before returning.
    unsafe {
        let name = getter(o_ins);
        (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned())
    }
}

/// The host's view of one output instance: property getter and logging.
struct HostOutput {
    o_ins: *mut c_void,
    get_property: GetProperty,
    log: Option<(LogPrint, LogCheck)>,
    /// `output_get_cmt_instance` (≥ 2.0.0, set when Fluent Bit is built with metrics).
    get_cmt: Option<GetCmt>,
}

// SAFETY: `o_ins` and the host functions stay valid from Init until ExitCtx returns, and the
// plugin drops every HostOutput before ExitCtx returns. The getter walks a list that is only
// written during configuration, `output_log_check` reads one integer, and `log_print` is what
// Fluent Bit's own worker threads call concurrently; none of them needs a particular thread.
unsafe impl Send for HostOutput {}
// SAFETY: as above; no method mutates through `&self`.
unsafe impl Sync for HostOutput {}

impl HostOutput {
    /// Reads what the instance needs from the Init argument.
    ///
    /// # Safety
    /// `api` must point to the host's `flb_api` (8 bytes on 1.9, longer on later hosts).
    unsafe fn new(api: *const flb_api, o_ins: *mut c_void) -> Option<HostOutput> {
        // SAFETY: output_get_property is the first member on every host version; reading it
        // alone never touches bytes past the 1.9 table.
        let get_property = unsafe { addr_of!((*api).output_get_property).read() }?;
        let (log, get_cmt) = if host_has_log_api() {
            // SAFETY: hosts exporting flb_output_log_check (≥ 2.0.0) allocate the 56-byte table
            // with output_get_cmt_instance at offset 16, log_print at 32 and
            // output_log_check at 48.
            let (print, check, get_cmt) = unsafe {
                (
                    addr_of!((*api).log_print).read(),
                    addr_of!((*api).output_log_check).read(),
                    addr_of!((*api).output_get_cmt_instance).read(),
                )
            };
            (print.zip(check), get_cmt)
        } else {
            (None, None)
        };
        Some(HostOutput {
            o_ins,
            get_property,
            log,
            get_cmt,
        })
    }
}

impl Properties for HostOutput {
    fn get(&self, key: &str) -> Option<String> {
        let key = CString::new(key).ok()?;
        // SAFETY: the getter takes a NUL-terminated key and this instance's o_ins, and returns
        // NULL or a NUL-terminated string owned by the host for the instance's lifetime, which
        // is copied before returning.
        unsafe {
            let value = (self.get_property)(key.as_ptr(), self.o_ins);
            (!value.is_null()).then(|| CStr::from_ptr(value).to_string_lossy().into_owned())
        }
    }
}

impl LogSink for HostOutput {
    fn enabled(&self, level: Level) -> bool {
        match self.log {
            // SAFETY: output_log_check reads the instance's level; o_ins is valid (see Send).
            Some((_, check)) => unsafe { check(self.o_ins, level as c_int) != 0 },
            None => StderrSink.enabled(level),
        }
    }

    fn write(&self, level: Level, line: &str) {
        match self.log {
            Some((print, _)) => {
                let line = CString::new(line.replace('\0', "\\0")).unwrap_or_default();
                // SAFETY: the format is a constant "%s" consuming exactly one C string
                // argument, so user text is never interpreted as a format.
                unsafe {
                    print(
                        level as c_int,
                        std::ptr::null(),
                        0,
                        c"%s".as_ptr(),
                        line.as_ptr(),
                    )
                }
            }
            None => StderrSink.write(level, line),
        }
    }
}

impl HostShutdown for HostOutput {
    fn request_shutdown(&self) {
        // SAFETY: kill(2) on our own pid with SIGTERM only queues the signal; Fluent Bit's
        // handler starts its graceful shutdown (inputs paused, pending chunks flushed for
        // `Grace` seconds), exactly as if the container runtime had sent it.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGTERM);
        }
    }
}

/// The instance's metrics context on the host, if it offers one it can use.
fn metrics_offer(host: &HostOutput, name: Option<String>) -> MetricsOffer {
    // SAFETY: get_cmt is the host's output_get_cmt_instance and o_ins this instance, during
    // Init.
    match unsafe { cmt::CmtHost::new(host.get_cmt, host.o_ins) } {
        Ok(registry) => MetricsOffer::Host(Box::new(registry), name),
        Err(cmt::Unavailable::NoContext) => MetricsOffer::Unavailable(
            "this Fluent Bit gives external plugins no metrics context (it is older than 2.0 or built without metrics)",
        ),
        Err(cmt::Unavailable::NoFunctions) => MetricsOffer::Unavailable(
            "this Fluent Bit does not export the cmetrics functions (cmt_counter_create, cmt_counter_set, cmt_gauge_create, cmt_gauge_set)",
        ),
    }
}

/// Fills the registration struct. Starts nothing: daemon mode forks after this and
/// `--dry-run` never calls Init.
#[unsafe(no_mangle)]
pub extern "C" fn FLBPluginRegister(def: *mut flb_plugin_proxy_def) -> c_int {
    guarded(0, || {
        if def.is_null() {
            // Returning -1 would make the host drop the plugin silently; 0 with nothing
            // written makes it fail visibly instead.
            return 0;
        }
        // SAFETY: def points to at least the 32-byte common prefix on every host version;
        // only the five fields in it are written here (event_type/config_map do not exist on
        // older hosts; config_map::register writes the latter only on a host that said it is
        // 5.1.1). The strings are 'static and NUL-terminated; the host never frees them.
        unsafe {
            addr_of_mut!((*def).type_).write(FLB_PROXY_OUTPUT_PLUGIN as c_int);
            addr_of_mut!((*def).proxy).write(FLB_PROXY_GOLANG as c_int);
            addr_of_mut!((*def).flags).write(0);
            addr_of_mut!((*def).name).write(PLUGIN_NAME.as_ptr().cast_mut());
            addr_of_mut!((*def).description).write(PLUGIN_DESCRIPTION.as_ptr().cast_mut());
            config_map::register(def);
        }
        0
    })
}

/// Creates one instance. Returns FLB_OK (1) on success; 0 makes Fluent Bit refuse to start.
#[unsafe(no_mangle)]
pub extern "C" fn FLBPluginInit(plugin: *mut flbgo_output_plugin) -> c_int {
    guarded(0, || {
        if plugin.is_null() {
            StderrSink.write(
                Level::Error,
                "[output:fanout] Init called without a plugin struct",
            );
            return 0;
        }
        // SAFETY: plugin points to the host's flbgo_output_plugin, whose 32-byte prefix has
        // this layout on every version; the host set o_ins and context for this instance
        // just before the call.
        let (api, o_ins, context) = unsafe {
            (
                addr_of!((*plugin).api).read(),
                addr_of!((*plugin).o_ins).read(),
                addr_of!((*plugin).context).read(),
            )
        };
        if api.is_null() || context.is_null() {
            StderrSink.write(
                Level::Error,
                "[output:fanout] Init called without host API or context",
            );
            return 0;
        }
        // SAFETY: api is the host's function table (checked non-null above).
        let Some(host) = (unsafe { HostOutput::new(api, o_ins) }) else {
            StderrSink.write(
                Level::Error,
                "[output:fanout] the host has no property getter",
            );
            return 0;
        };
        let host = Arc::new(host);
        let ordinal = NEXT_ORDINAL.fetch_add(1, Ordering::Relaxed);
        let host_name = output_name(o_ins);
        let label = host_name
            .clone()
            .unwrap_or_else(|| format!("fanout.{ordinal}"));
        let runtime = match RuntimeLease::acquire() {
            Ok(runtime) => runtime,
            Err(e) => {
                host.write(
                    Level::Error,
                    &format!("[output:fanout:{label}] cannot start the delivery runtime: {e}"),
                );
                return 0;
            }
        };
        let Some(instance) = Instance::start(
            host.as_ref(),
            host.clone(),
            host.clone(),
            label,
            runtime.handle().clone(),
        ) else {
            return 0;
        };
        instance.export_metrics(metrics_offer(&host, host_name));
        let version = config_map::host_version();
        if !version.checks_property_names() {
            instance.note_unchecked_property_names(&version.describe());
        }
        let context_ptr = Box::into_raw(Box::new(Context {
            instance,
            _runtime: runtime,
        }));
        live_contexts().push(context_ptr as usize);
        // SAFETY: context is this instance's flb_plugin_proxy_context (non-null, checked);
        // remote_context is the plugin's to set and comes back in FlushCtx/ExitCtx.
        unsafe { addr_of_mut!((*context).remote_context).write(context_ptr.cast()) };
        OK
    })
}

/// Borrows the chunk and tag for the duration of a flush call.
///
/// # Safety
/// `data` must be NULL or point to `size` readable bytes, and `tag` NULL or a C string, both
/// valid until the flush returns.
unsafe fn flush_args<'a>(
    data: *const c_void,
    size: usize,
    tag: *const c_char,
) -> (&'a [u8], &'a [u8]) {
    let data = if data.is_null() || size == 0 {
        &[][..]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) }
    };
    let tag = if tag.is_null() {
        &[][..]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { CStr::from_ptr(tag) }.to_bytes()
    };
    (data, tag)
}

/// Delivers one chunk. Runs on a Fluent Bit coroutine (small stack): it only copies the
/// chunk and waits; the work happens on the runtime's threads.
#[unsafe(no_mangle)]
pub extern "C" fn FLBPluginFlushCtx(
    remote_context: *mut c_void,
    data: *const c_void,
    size: usize,
    tag: *mut c_char,
) -> c_int {
    guarded(ERROR, || {
        if remote_context.is_null() {
            StderrSink.write(
                Level::Error,
                "[output:fanout] flush without a context (did Init fail?)",
            );
            return ERROR;
        }
        // SAFETY: remote_context is the Box<Context> pointer Init stored; ExitCtx, the only
        // place that frees it, never runs concurrently with a flush of the same instance.
        let context = unsafe { &*remote_context.cast::<Context>() };
        // SAFETY: the host passes the chunk and a NUL-terminated tag copy, valid for the call.
        let (data, tag) = unsafe { flush_args(data, size, tag) };
        status_code(context.instance.flush(data, tag))
    })
}

/// Context-less flush: only called by hosts that cannot find FlushCtx (none that exist).
/// Works when exactly one instance is running.
#[unsafe(no_mangle)]
pub extern "C" fn FLBPluginFlush(data: *const c_void, size: usize, tag: *const c_char) -> c_int {
    guarded(ERROR, || {
        let live = live_contexts();
        let [only] = live.as_slice() else {
            StderrSink.write(
                Level::Error,
                "[output:fanout] context-less flush needs exactly one running instance",
            );
            return ERROR;
        };
        // SAFETY: addresses in LIVE_CONTEXTS are Box<Context> pointers not yet freed; the
        // lock is held, so ExitCtx cannot free it meanwhile.
        let context = unsafe { &*(*only as *const Context) };
        // SAFETY: as in FLBPluginFlushCtx.
        let (data, tag) = unsafe { flush_args(data, size, tag) };
        status_code(context.instance.flush(data, tag))
    })
}

/// Ends one instance: waits (bounded) for deliveries in flight, then frees its state.
#[unsafe(no_mangle)]
pub extern "C" fn FLBPluginExitCtx(remote_context: *mut c_void) -> c_int {
    guarded(ERROR, || {
        let known = {
            let mut live = live_contexts();
            let position = live.iter().position(|&p| p == remote_context as usize);
            position.map(|i| live.swap_remove(i)).is_some()
        };
        if !known {
            return OK;
        }
        // SAFETY: the address was in LIVE_CONTEXTS, so it is a Box<Context> from Init that has
        // not been freed; removing it above makes this the only owner.
        let context = unsafe { Box::from_raw(remote_context.cast::<Context>()) };
        context.instance.shutdown();
        drop(context);
        OK
    })
}

/// Context-less exit: hosts call it only when ExitCtx is missing, which it never is here.
#[unsafe(no_mangle)]
pub extern "C" fn FLBPluginExit() -> c_int {
    OK
}
