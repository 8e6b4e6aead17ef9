//! The host side's unsafe code: version-sized host structs, the callbacks the plugin calls
//! back into, and calls into the plugin.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::Mutex;

/// Log lines the plugin printed through the host's `log_print`: (level, format, text).
pub(crate) static LOG_LINES: Mutex<Vec<(i32, String, String)>> = Mutex::new(Vec::new());

unsafe extern "C" {
    fn fanout_testhost_set_log_sink(sink: extern "C" fn(c_int, *const c_char, *const c_char));
    fn fanout_testhost_log_print(
        level: c_int,
        file: *const c_char,
        line: c_int,
        fmt: *const c_char,
        ...
    );
}

extern "C" fn log_sink(level: c_int, fmt: *const c_char, line: *const c_char) {
    // SAFETY: the C shim passes the plugin's format and its own NUL-terminated buffer.
    let (fmt, line) = unsafe {
        (
            CStr::from_ptr(fmt).to_string_lossy().into_owned(),
            CStr::from_ptr(line).to_string_lossy().into_owned(),
        )
    };
    LOG_LINES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((level, fmt, line));
}

pub(crate) fn install_log_sink() {
    // SAFETY: stores a function pointer in the C shim.
    unsafe { fanout_testhost_set_log_sink(log_sink) };
}

pub(crate) type LogPrintFn = unsafe extern "C" fn(c_int, *const c_char, c_int, *const c_char, ...);
pub(crate) fn log_print_fn() -> LogPrintFn {
    fanout_testhost_log_print
}

/// Memory for a host struct of `size` bytes that ends exactly where an inaccessible page
/// begins, the way an exact-size allocation ends for an out-of-bounds access.
pub struct Guarded {
    base: *mut u8,
    len: usize,
    pub(crate) ptr: *mut u8,
}

// SAFETY: plain memory owned by this value.
unsafe impl Send for Guarded {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for Guarded {}

impl Guarded {
    pub(crate) fn new(size: usize, fill: u8) -> Guarded {
        // SAFETY: sysconf is always safe to call.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let data_pages = size.div_ceil(page).max(1);
        let len = (data_pages + 1) * page;
        // SAFETY: anonymous private mapping; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(base != libc::MAP_FAILED, "mmap failed");
        let base = base.cast::<u8>();
        // SAFETY: the last page lies inside the mapping just created.
        let rc =
            unsafe { libc::mprotect(base.add(data_pages * page).cast(), page, libc::PROT_NONE) };
        assert_eq!(rc, 0, "mprotect failed");
        // SAFETY: size <= data_pages * page, so ptr..ptr+size is inside the readable pages.
        let ptr = unsafe { base.add(data_pages * page - size) };
        // SAFETY: as above.
        unsafe { std::ptr::write_bytes(ptr, fill, size) };
        Guarded { base, len, ptr }
    }

    pub(crate) fn write<T>(&self, offset: usize, value: T) {
        // SAFETY: callers pass offsets inside the struct they asked for.
        unsafe { self.ptr.add(offset).cast::<T>().write_unaligned(value) }
    }

    pub(crate) fn read<T: Copy>(&self, offset: usize) -> T {
        // SAFETY: as in write.
        unsafe { self.ptr.add(offset).cast::<T>().read_unaligned() }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in new().
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// What the host keeps for one output instance; `o_ins` points at it.
pub struct FakeOutputInstance {
    pub(crate) properties: Vec<(String, CString)>,
    pub(crate) log_level: c_int,
}

/// Keys Fluent Bit's core consumes; the plugin never sees them.
const CORE_KEYS: [&str; 8] = [
    "match",
    "alias",
    "log_level",
    "host",
    "port",
    "workers",
    "retry_limit",
    "tls",
];

pub(crate) extern "C" fn output_get_property(
    key: *const c_char,
    o_ins: *mut c_void,
) -> *const c_char {
    // SAFETY: the plugin passes a NUL-terminated key and the o_ins given at Init, which
    // points at a live FakeOutputInstance.
    let (key, instance) = unsafe {
        (
            CStr::from_ptr(key).to_string_lossy(),
            &*(o_ins as *const FakeOutputInstance),
        )
    };
    if CORE_KEYS.iter().any(|k| k.eq_ignore_ascii_case(&key))
        || key.to_ascii_lowercase().starts_with("net.")
    {
        return std::ptr::null();
    }
    instance
        .properties
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&key))
        .filter(|(_, v)| !v.as_bytes().is_empty())
        .map_or(std::ptr::null(), |(_, v)| v.as_ptr())
}

pub(crate) extern "C" fn output_log_check(o_ins: *mut c_void, level: c_int) -> c_int {
    // SAFETY: as in output_get_property.
    let instance = unsafe { &*(o_ins as *const FakeOutputInstance) };
    c_int::from(level <= instance.log_level)
}

/// Makes this process look like Fluent Bit ≥ 2.0 to `dlsym(RTLD_DEFAULT, …)` probes.
pub(crate) fn export_modern_host_symbols() {
    static LOADED: std::sync::Once = std::sync::Once::new();
    LOADED.call_once(|| {
        let path = CString::new(env!("FANOUT_TESTHOST_FAKE_FLB")).unwrap();
        // SAFETY: loads a library built by build.rs that only defines two functions.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        assert!(
            !handle.is_null(),
            "cannot load {}",
            env!("FANOUT_TESTHOST_FAKE_FLB")
        );
    });
}

pub(crate) fn host_symbol_visible(name: &CStr) -> bool {
    // SAFETY: a lookup by NUL-terminated name.
    !unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }.is_null()
}

pub(crate) type RegisterFn = unsafe extern "C" fn(*mut c_void) -> c_int;
pub(crate) type InitFn = unsafe extern "C" fn(*mut c_void) -> c_int;
pub(crate) type FlushCtxFn =
    unsafe extern "C" fn(*mut c_void, *const c_void, usize, *mut c_char) -> c_int;
pub(crate) type FlushFn = unsafe extern "C" fn(*const c_void, usize, *const c_char) -> c_int;
pub(crate) type ExitCtxFn = unsafe extern "C" fn(*mut c_void) -> c_int;
pub(crate) type ExitFn = unsafe extern "C" fn() -> c_int;

/// Looks a symbol up the way the host does (`dlsym`), as a plain function pointer.
pub(crate) fn symbol<T: Copy>(library: &libloading::Library, name: &str) -> Option<T> {
    // SAFETY: callers name the function type the ABI reference gives for the symbol.
    unsafe { library.get::<T>(name.as_bytes()).ok().map(|s| *s) }
}

/// Calls FlushCtx with a heap copy of the chunk and a malloc'd tag, then poisons and frees
/// both, as Fluent Bit does once the callback returns.
pub(crate) fn call_flush_ctx(
    flush: FlushCtxFn,
    remote_context: *mut c_void,
    chunk: &[u8],
    tag: &str,
) -> c_int {
    let mut data = chunk.to_vec();
    let tag = CString::new(tag).expect("tags have no NUL");
    let tag_len = tag.as_bytes_with_nul().len();
    // SAFETY: malloc'd copy of the tag, like flb_strndup in the proxy.
    let tag_copy = unsafe { libc::malloc(tag_len) }.cast::<c_char>();
    assert!(!tag_copy.is_null());
    // SAFETY: tag_copy has tag_len bytes.
    unsafe { std::ptr::copy_nonoverlapping(tag.as_ptr(), tag_copy, tag_len) };
    // SAFETY: the plugin's FlushCtx with its own context and buffers valid for the call.
    let rc = unsafe { flush(remote_context, data.as_ptr().cast(), data.len(), tag_copy) };
    data.iter_mut().for_each(|b| *b = 0xDD);
    // SAFETY: tag_copy came from malloc above and the plugin must not keep it.
    unsafe {
        std::ptr::write_bytes(tag_copy, 0xDD, tag_len);
        libc::free(tag_copy.cast());
    }
    rc
}

pub(crate) fn call_flush(flush: FlushFn, chunk: &[u8], tag: &str) -> c_int {
    let tag = CString::new(tag).expect("tags have no NUL");
    // SAFETY: context-less flush with buffers valid for the call.
    unsafe { flush(chunk.as_ptr().cast(), chunk.len(), tag.as_ptr()) }
}

pub(crate) fn call_register(register: RegisterFn, def: &Guarded) -> c_int {
    // SAFETY: def is a registration struct of the host version's size.
    unsafe { register(def.ptr.cast()) }
}

pub(crate) fn call_init(init: InitFn, plugin: *mut u8) -> c_int {
    // SAFETY: plugin is the host's flbgo_output_plugin, set up for this instance.
    unsafe { init(plugin.cast()) }
}

pub(crate) fn call_exit_ctx(exit: ExitCtxFn, remote_context: *mut c_void) -> c_int {
    // SAFETY: the context Init stored, passed once.
    unsafe { exit(remote_context) }
}

pub(crate) fn call_exit(exit: ExitFn) -> c_int {
    // SAFETY: takes no arguments.
    unsafe { exit() }
}

pub(crate) fn c_string_at(ptr: *const c_char) -> Option<String> {
    (!ptr.is_null()).then(|| {
        // SAFETY: callers pass NULL or a pointer the plugin wrote as a NUL-terminated string.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    })
}

pub(crate) fn open_library(path: &std::path::Path) -> Result<libloading::Library, String> {
    // SAFETY: loads the plugin under test (dlopen RTLD_LAZY | RTLD_LOCAL, as Fluent Bit does);
    // it has no library constructors that need more than that.
    unsafe { libloading::Library::new(path) }.map_err(|e| format!("dlopen {}: {e}", path.display()))
}

/// Runs `f` with file descriptor 2 redirected to a temporary file and returns what was
/// written to it (for hosts whose plugins log to stderr, like Fluent Bit 1.9).
pub fn capture_stderr<R>(f: impl FnOnce() -> R) -> (R, String) {
    use std::io::{Read, Seek, Write};
    let mut file = tempfile_in_tmp();
    let _ = std::io::stderr().flush();
    // SAFETY: dup/dup2 on valid descriptors; fd 2 is restored before returning.
    let saved = unsafe { libc::dup(2) };
    assert!(saved >= 0);
    // SAFETY: as above.
    unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), 2) };
    let result = f();
    let _ = std::io::stderr().flush();
    // SAFETY: as above.
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
    }
    let mut text = String::new();
    file.rewind().unwrap();
    file.read_to_string(&mut text).unwrap();
    (result, text)
}

fn tempfile_in_tmp() -> std::fs::File {
    let path = std::env::temp_dir().join(format!(
        "fanout-stderr-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let _ = std::fs::remove_file(&path);
    file
}

/// Names of this process's threads.
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A FIFO at `path` with a non-blocking reader that does not read yet: a writer blocks once
/// the pipe buffer (64 KiB) is full, until the test reads from the returned end.
pub fn stalled_fifo(path: &std::path::Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    let c_path = CString::new(path.display().to_string()).expect("no NUL in temp paths");
    // SAFETY: a NUL-terminated path.
    let made = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    assert_eq!(made, 0, "mkfifo {}", path.display());
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .expect("the FIFO opens for reading")
}

/// Bytes written into a pipe or FIFO and not read yet (`FIONREAD` on its read end).
pub fn readable_bytes(reader: &std::fs::File) -> usize {
    use std::os::fd::AsRawFd;
    let mut bytes: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer; the descriptor is the open reader.
    let status = unsafe { libc::ioctl(reader.as_raw_fd(), libc::FIONREAD, &mut bytes) };
    assert_eq!(status, 0, "FIONREAD");
    usize::try_from(bytes).unwrap_or(0)
}

/// Caps this process's address space at `bytes` (RLIMIT_AS): an allocation sized from a
/// chunk's claims, which would abort Fluent Bit, fails the test instead of passing unnoticed on
/// a machine with lots of memory and overcommit.
pub fn limit_address_space(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    assert_eq!(set, 0, "setrlimit(RLIMIT_AS)");
}
