//! Loading the plugin and driving its instances as Fluent Bit's proxy does.

use std::ffi::{CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::ffi::{self, FakeOutputInstance, Guarded};

/// Stack of the thread a flush runs on: Fluent Bit's coroutine stacks are 24 KiB on x86_64 up
/// to 5.0 (64 KiB from 5.1). Rust adds a guard page, so an overflow kills the test loudly.
pub const COROUTINE_STACK: usize = 24 * 1024;

/// Return codes (flb_macros.h).
pub const FLB_ERROR: i32 = 0;
pub const FLB_OK: i32 = 1;
pub const FLB_RETRY: i32 = 2;

/// Which host layout to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostVersion {
    /// 1.9.x: `flb_api` is 8 bytes (no logging), registration struct 32 bytes, uninitialised.
    V1_9,
    /// 2.0.7 – 4.0.2: `flb_api` 56 bytes, registration struct 32 bytes, uninitialised.
    V2_0,
    /// 5.1.1: `flb_api` 72 bytes, registration struct 48 bytes, zeroed.
    V5_1,
}

impl HostVersion {
    fn api_size(self) -> usize {
        match self {
            HostVersion::V1_9 => 8,
            HostVersion::V2_0 => 56,
            HostVersion::V5_1 => 72,
        }
    }

    fn def_size(self) -> usize {
        match self {
            HostVersion::V1_9 | HostVersion::V2_0 => 32,
            HostVersion::V5_1 => 48,
        }
    }

    /// flb_malloc leaves garbage before 4.2.3; flb_calloc zeroes after.
    fn def_fill(self) -> u8 {
        match self {
            HostVersion::V1_9 | HostVersion::V2_0 => 0xAB,
            HostVersion::V5_1 => 0,
        }
    }
}

/// Root of the workspace (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The plugin under test: `$FANOUT_SO`, else `dist/fanout.so` as `make dist` builds it.
pub fn plugin_path() -> PathBuf {
    dist_file("FANOUT_SO", "fanout.so")
}

/// `$variable`, else `dist/<name>`; the file must exist.
fn dist_file(variable: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("dist").join(name));
    assert!(
        path.exists(),
        "{} does not exist: run `make dist` first (or set {variable})",
        path.display()
    );
    path
}

/// A command running `program`, a binary built for the architecture under test: through
/// `$FANOUT_TEST_RUNNER` (`qemu-aarch64-static`) when the tests themselves run under emulation
/// (`make test-aarch64`), since an emulated process cannot start another emulated binary by
/// itself without binfmt_misc.
pub fn target_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let runner = std::env::var("FANOUT_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(emulator) => {
            let mut command = std::process::Command::new(emulator);
            command.args(words).arg(program);
            command
        }
        None => std::process::Command::new(program),
    }
}

/// The job wrapper `make dist` builds: `$JOB_WRAPPER_BIN`, else `dist/job-wrapper`.
pub fn job_wrapper_path() -> PathBuf {
    dist_file("JOB_WRAPPER_BIN", "job-wrapper")
}

/// One line the plugin logged through the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: i32,
    /// The format string the plugin passed to the variadic `log_print`.
    pub format: String,
    pub text: String,
}

/// Every line logged through `log_print` so far in this process.
pub fn logs() -> Vec<LogLine> {
    ffi::LOG_LINES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(level, format, text)| LogLine {
            level: *level,
            format: format.clone(),
            text: text.clone(),
        })
        .collect()
}

/// Lines of one instance, found by its `[output:fanout:<label>]` prefix.
pub fn logs_of(label: &str) -> Vec<LogLine> {
    let prefix = format!("[output:fanout:{label}]");
    logs()
        .into_iter()
        .filter(|l| l.text.starts_with(&prefix))
        .collect()
}

/// A loaded and registered plugin library.
pub struct Plugin {
    version: HostVersion,
    def: Guarded,
    _api: Guarded,
    /// The one `flbgo_output_plugin` all instances share (72 bytes in every version).
    shared_plugin: Guarded,
    _plugin_name: CString,
    init: ffi::InitFn,
    flush_ctx: Option<ffi::FlushCtxFn>,
    flush: Option<ffi::FlushFn>,
    exit_ctx: Option<ffi::ExitCtxFn>,
    exit: Option<ffi::ExitFn>,
    /// Fluent Bit initialises instances one after another on its engine thread.
    init_serial: Mutex<()>,
    // Last, so it is dropped (dlclose) after everything that points into it.
    library: libloading::Library,
}

impl Plugin {
    /// `dlopen` + `FLBPluginRegister` and the symbol look-ups that follow it.
    pub fn load(path: &Path, version: HostVersion) -> Result<Plugin, String> {
        ffi::install_log_sink();
        if version >= HostVersion::V2_0 {
            ffi::export_modern_host_symbols();
        } else if ffi::host_symbol_visible(c"flb_output_log_check") {
            return Err(
                "a 1.9 host must run in a process that never loaded the ≥2.0 host symbols".into(),
            );
        }
        let library = ffi::open_library(path)?;
        let register: ffi::RegisterFn = ffi::symbol(&library, "FLBPluginRegister")
            .ok_or("FLBPluginRegister is not exported")?;
        let def = Guarded::new(version.def_size(), version.def_fill());
        let rc = ffi::call_register(register, &def);
        if rc == -1 {
            return Err("FLBPluginRegister returned -1".into());
        }
        let (kind, proxy) = (def.read::<c_int>(0), def.read::<c_int>(4));
        if (kind, proxy) != (2, 11) {
            return Err(format!(
                "registered as type {kind} proxy {proxy}, not an output (2) of the Go proxy (11)"
            ));
        }
        let init = ffi::symbol(&library, "FLBPluginInit").ok_or("FLBPluginInit is not exported")?;
        let flush_ctx = ffi::symbol(&library, "FLBPluginFlushCtx");
        let flush = ffi::symbol(&library, "FLBPluginFlush");
        if flush_ctx.is_none() && flush.is_none() {
            return Err("neither FLBPluginFlushCtx nor FLBPluginFlush is exported".into());
        }

        let api = Guarded::new(version.api_size(), 0xAB);
        let getter: extern "C" fn(*const c_char, *mut c_void) -> *const c_char =
            ffi::output_get_property;
        api.write(0, getter);
        if version >= HostVersion::V2_0 {
            for offset in [8usize, 16, 24, 40] {
                api.write(offset, std::ptr::null::<c_void>());
            }
            api.write(32, ffi::log_print_fn());
            let check: extern "C" fn(*mut c_void, c_int) -> c_int = ffi::output_log_check;
            api.write(48, check);
        }
        let plugin_name = CString::new(
            ffi::c_string_at(def.read::<*const c_char>(16))
                .ok_or("the plugin registered no name")?,
        )
        .expect("C strings have no NUL");
        let shared_plugin = Guarded::new(72, 0);
        shared_plugin.write(0, plugin_name.as_ptr());
        shared_plugin.write(8, api.ptr);
        // The host's own callback pointers: junk the plugin must never touch.
        for offset in (32..72).step_by(8) {
            shared_plugin.write(offset, 0x1usize);
        }
        Ok(Plugin {
            version,
            def,
            _api: api,
            shared_plugin,
            _plugin_name: plugin_name,
            init,
            flush_ctx,
            flush,
            exit_ctx: ffi::symbol(&library, "FLBPluginExitCtx"),
            exit: ffi::symbol(&library, "FLBPluginExit"),
            init_serial: Mutex::new(()),
            library,
        })
    }

    pub fn version(&self) -> HostVersion {
        self.version
    }

    /// What Register wrote: (name, description, flags).
    pub fn registration(&self) -> (String, Option<String>, i32) {
        (
            ffi::c_string_at(self.def.read::<*const c_char>(16)).unwrap_or_default(),
            ffi::c_string_at(self.def.read::<*const c_char>(24)),
            self.def.read::<c_int>(8),
        )
    }

    /// Bytes of the registration struct past the 32-byte common prefix (5.1 layout only).
    pub fn registration_tail(&self) -> Vec<u8> {
        (32..self.version.def_size())
            .map(|i| self.def.read::<u8>(i))
            .collect()
    }

    pub fn exports(&self, symbol: &str) -> bool {
        ffi::symbol::<*const c_void>(&self.library, symbol).is_some()
    }

    /// `FLBPluginInit` for one `[OUTPUT]` section. `log_level` is handled the host's way:
    /// the plugin cannot read it, `output_log_check` applies it. Err carries Init's result.
    pub fn init(&self, properties: &[(&str, &str)]) -> Result<OutputInstance<'_>, i32> {
        let _serial = self.init_serial.lock().unwrap_or_else(|e| e.into_inner());
        let log_level = match properties
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("log_level"))
        {
            Some((_, "off")) => 0,
            Some((_, "error")) => 1,
            Some((_, "warn" | "warning")) => 2,
            Some((_, "debug")) => 4,
            Some((_, "trace")) => 5,
            _ => 3,
        };
        let o_ins = Box::new(FakeOutputInstance {
            properties: properties
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        CString::new(*v).expect("no NUL in properties"),
                    )
                })
                .collect(),
            log_level,
        });
        let context = Guarded::new(16, 0);
        self.shared_plugin
            .write(16, (&*o_ins as *const FakeOutputInstance).cast::<c_void>());
        self.shared_plugin.write(24, context.ptr);
        let rc = ffi::call_init(self.init, self.shared_plugin.ptr);
        if rc <= 0 {
            return Err(rc);
        }
        let remote_context = context.read::<usize>(0);
        Ok(OutputInstance {
            plugin: self,
            _o_ins: o_ins,
            _context: context,
            remote_context,
        })
    }

    /// The context-less `FLBPluginFlush`, on a coroutine-sized stack.
    pub fn flush_without_context(&self, chunk: &[u8], tag: &str) -> i32 {
        let flush = self.flush.expect("FLBPluginFlush is exported");
        on_coroutine_stack(|| ffi::call_flush(flush, chunk, tag))
    }

    pub fn exit_without_context(&self) -> i32 {
        ffi::call_exit(self.exit.expect("FLBPluginExit is exported"))
    }
}

/// Runs `f` on a thread whose stack is as small as a Fluent Bit coroutine's.
fn on_coroutine_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("flb-coroutine".into())
            .stack_size(COROUTINE_STACK)
            .spawn_scoped(scope, f)
            .expect("thread spawns")
            .join()
            .expect("the flush thread did not crash")
    })
}

/// One initialised `[OUTPUT]` instance.
pub struct OutputInstance<'p> {
    plugin: &'p Plugin,
    _o_ins: Box<FakeOutputInstance>,
    _context: Guarded,
    remote_context: usize,
}

impl OutputInstance<'_> {
    /// `FLBPluginFlushCtx` on a coroutine-sized stack; the chunk is poisoned right after.
    pub fn flush(&self, chunk: &[u8], tag: &str) -> i32 {
        let flush = self
            .plugin
            .flush_ctx
            .expect("FLBPluginFlushCtx is exported");
        let context = self.remote_context as *mut c_void;
        let context = context as usize;
        on_coroutine_stack(move || ffi::call_flush_ctx(flush, context as *mut c_void, chunk, tag))
    }

    /// `FLBPluginExitCtx`, once.
    pub fn exit(self) -> i32 {
        let exit = self.plugin.exit_ctx.expect("FLBPluginExitCtx is exported");
        ffi::call_exit_ctx(exit, self.remote_context as *mut c_void)
    }

    /// Calls ExitCtx with this instance's context without giving it up, as Fluent Bit ≤ 2.0.6
    /// did for every instance; returns the result.
    pub fn exit_again_like_old_hosts(&self) -> i32 {
        let exit = self.plugin.exit_ctx.expect("FLBPluginExitCtx is exported");
        ffi::call_exit_ctx(exit, self.remote_context as *mut c_void)
    }
}
