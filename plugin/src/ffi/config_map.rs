//! Giving Fluent Bit 5.1.1 the property table, so it refuses a misspelt key at startup.
//!
//! 5.1.1 appended `config_map` to the registration struct: with it, Fluent Bit checks every
//! key of a `fanout` section against the table before Init (also in `--dry-run`) and `-h`
//! lists the table. Nothing else may get it: hosts up to 4.2.2 allocate a 32-byte struct,
//! 4.2.3–5.1.0 a 40-byte one (a write at offset 40 lands in someone else's memory), and the
//! element layout changed within 5.0.x, so a newer host may read the table differently.
//!
//! No host struct carries a version and no symbol is new in 5.1.1, so the plugin asks the
//! program itself, once per process: when the main executable defines both `flb_main` and
//! `flb_plugin_proxy_register` (the process is Fluent Bit's own `fluent-bit`, not a program
//! embedding the library, whose `--version` could mean anything), it runs
//! `/proc/self/exe --version` (a few ms; its output is `Fluent Bit v<version>`; waited for at
//! most 2 s). Only an answer of exactly `5.1.1` gets the table. Anything else — another version,
//! an embedder, a spawn that fails — registers the five common fields as before, and Init says
//! property names go unchecked.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fanout_core::properties::{INHERITED, Kind, PROPERTIES};

use super::bindings::{
    FLB_CONFIG_MAP_BOOL, FLB_CONFIG_MAP_CLIST, FLB_CONFIG_MAP_INT, FLB_CONFIG_MAP_MULT,
    FLB_CONFIG_MAP_SIZE, FLB_CONFIG_MAP_STR, flb_config_map_5_1_1, flb_plugin_proxy_def,
    flb_plugin_proxy_def_5_1_1,
};

/// The one host version whose layout the plugin writes.
const TABLE_HOST: &str = "5.1.1";

/// What the plugin knows of the host program's version.
#[derive(Clone, Debug)]
pub enum HostVersion {
    /// As the host's `--version` printed it.
    Said(String),
    /// Why the version is not known.
    Unknown(&'static str),
}

impl HostVersion {
    /// Whether Fluent Bit checks property names against the plugin's table.
    pub fn checks_property_names(&self) -> bool {
        matches!(self, HostVersion::Said(v) if v == TABLE_HOST)
    }

    /// For the Init line of a host that does not check names.
    pub fn describe(&self) -> String {
        match self {
            HostVersion::Said(v) => format!("Fluent Bit {v}"),
            HostVersion::Unknown(why) => format!("this host ({why})"),
        }
    }
}

pub fn host_version() -> &'static HostVersion {
    static VERSION: OnceLock<HostVersion> = OnceLock::new();
    VERSION.get_or_init(probe)
}

fn probe() -> HostVersion {
    if !defined_by_main_executable(c"flb_main")
        || !defined_by_main_executable(c"flb_plugin_proxy_register")
    {
        return HostVersion::Unknown("not Fluent Bit's own fluent-bit program");
    }
    let Ok(mut child) = Command::new("/proc/self/exe")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return HostVersion::Unknown("its --version could not be run");
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    let exited = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return HostVersion::Unknown("its --version did not answer");
            }
        }
    };
    let mut out = String::new();
    // A few dozen bytes, already in the pipe: the child has exited.
    let read = child
        .stdout
        .take()
        .map(|mut pipe| pipe.by_ref().take(4096).read_to_string(&mut out));
    if !exited || !matches!(read, Some(Ok(_))) {
        return HostVersion::Unknown("its --version failed");
    }
    match parse_version(&out) {
        Some(version) => HostVersion::Said(version.to_owned()),
        None => HostVersion::Unknown("its --version did not say Fluent Bit v<version>"),
    }
}

/// The version in `fluent-bit --version`'s first line: `Fluent Bit v5.1.1`.
fn parse_version(out: &str) -> Option<&str> {
    let version = out.lines().next()?.trim().strip_prefix("Fluent Bit v")?;
    (!version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')))
    .then_some(version)
}

/// Whether `symbol` resolves, and to the process's main executable.
fn defined_by_main_executable(symbol: &CStr) -> bool {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks the symbol up.
    let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, symbol.as_ptr()) };
    if address.is_null() {
        return false;
    }
    // SAFETY: getauxval only reads the auxiliary vector; AT_PHDR is the address of the main
    // executable's program headers, inside its mapping.
    let main_headers = unsafe { libc::getauxval(libc::AT_PHDR) } as *const c_void;
    match (object_base(address), object_base(main_headers)) {
        (Some(symbol_base), Some(main_base)) => symbol_base == main_base,
        _ => false,
    }
}

/// The load address of the object holding `address`.
fn object_base(address: *const c_void) -> Option<usize> {
    if address.is_null() {
        return None;
    }
    // SAFETY: Dl_info is plain data; dladdr fills it and only reads the loader's own tables.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `info` is a valid place to write.
    let found = unsafe { libc::dladdr(address, &mut info) };
    (found != 0 && !info.dli_fbase.is_null()).then_some(info.dli_fbase as usize)
}

/// The property table in 5.1.1's layout, with the strings it points into. Built once and never
/// changed or freed: the host keeps the pointers for as long as the plugin is loaded.
struct Table {
    entries: Vec<flb_config_map_5_1_1>,
    _strings: Vec<CString>,
}

// SAFETY: the table is written once, in `table()`, before any pointer to it is handed out, and
// only read afterwards (by the host, which never writes through it: set_property is 0).
unsafe impl Send for Table {}
// SAFETY: as above.
unsafe impl Sync for Table {}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut strings = Vec::new();
        let mut keep = |text: &str| -> *mut c_char {
            let text = CString::new(text).unwrap_or_default();
            // A CString's buffer does not move when the CString itself is moved.
            let pointer = text.as_ptr().cast_mut();
            strings.push(text);
            pointer
        };
        let mut entries = Vec::with_capacity(PROPERTIES.len() + INHERITED.len() + 1);
        for property in PROPERTIES {
            let kind = match property.kind {
                Kind::Bool => FLB_CONFIG_MAP_BOOL,
                Kind::Integer => FLB_CONFIG_MAP_INT,
                Kind::Size => FLB_CONFIG_MAP_SIZE,
                Kind::List => FLB_CONFIG_MAP_CLIST,
                // Durations take `ms`, which the host's `time` type does not: shown as text.
                Kind::Text | Kind::Duration => FLB_CONFIG_MAP_STR,
            };
            let desc = format!("[{}] {}", property.scope.name(), property.summary);
            entries.push(entry(
                kind,
                keep(property.name),
                property.default.map_or(std::ptr::null_mut(), &mut keep),
                0,
                keep(&desc),
            ));
        }
        for inherited in INHERITED {
            let desc = format!(
                "[ignored] accepted from the core {} output: {}",
                inherited.output, inherited.instead
            );
            let flags = if inherited.repeatable {
                FLB_CONFIG_MAP_MULT
            } else {
                0
            };
            entries.push(entry(
                FLB_CONFIG_MAP_STR,
                keep(inherited.name),
                std::ptr::null_mut(),
                flags,
                keep(&desc),
            ));
        }
        // The end: an entry whose name is NULL.
        entries.push(entry(
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        ));
        Table {
            entries,
            _strings: strings,
        }
    })
}

fn entry(
    kind: u32,
    name: *mut c_char,
    def_value: *mut c_char,
    flags: u32,
    desc: *mut c_char,
) -> flb_config_map_5_1_1 {
    // SAFETY: the struct is plain data (integers and pointers) for which all-zero is valid:
    // NULL raw/mult/list links, what the host's own static tables hold there.
    let mut entry: flb_config_map_5_1_1 = unsafe { std::mem::zeroed() };
    entry.type_ = kind as c_int;
    entry.name = name;
    entry.def_value = def_value;
    entry.flags = flags as c_int;
    entry.set_property = 0;
    entry.desc = desc;
    entry
}

/// Points the registration's `config_map` at the table when the host is 5.1.1; returns
/// whether it did.
///
/// # Safety
/// `def` must be the registration struct the host passed to `FLBPluginRegister`.
pub unsafe fn register(def: *mut flb_plugin_proxy_def) -> bool {
    if !host_version().checks_property_names() {
        return false;
    }
    let table = table().entries.as_ptr().cast_mut();
    // SAFETY: the host said it is 5.1.1, which allocates the 48-byte, zeroed
    // flb_plugin_proxy_def_5_1_1 (the common struct is its prefix); config_map is at offset 40.
    unsafe {
        let def = def.cast::<flb_plugin_proxy_def_5_1_1>();
        std::ptr::addr_of_mut!((*def).config_map).write(table);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_comes_from_the_first_line_only() {
        assert_eq!(
            parse_version("Fluent Bit v5.1.1\nGit commit: 6315162a8d4b\n"),
            Some("5.1.1")
        );
        assert_eq!(parse_version("Fluent Bit v4.2.2-1\n"), Some("4.2.2-1"));
        assert_eq!(parse_version("Fluent Bit v\n"), None);
        assert_eq!(parse_version("Fluent Bit v5.1.1 (evil)\n"), None);
        assert_eq!(parse_version("usage: fluent-bit\n"), None);
        assert_eq!(parse_version(""), None);
    }

    /// A test binary is not Fluent Bit: the probe must say so without running anything.
    #[test]
    fn a_process_that_is_not_fluent_bit_gets_no_table() {
        let version = probe();
        assert!(matches!(version, HostVersion::Unknown(why) if why.contains("not Fluent Bit")));
        assert!(!version.checks_property_names());
    }

    #[test]
    fn only_5_1_1_checks_names() {
        assert!(HostVersion::Said("5.1.1".into()).checks_property_names());
        for other in ["5.1.0", "5.1.2", "5.2.0", "4.2.2", "1.9.10"] {
            assert!(
                !HostVersion::Said(other.into()).checks_property_names(),
                "{other}"
            );
        }
    }

    #[test]
    fn the_table_ends_with_a_null_name_and_keeps_every_property() {
        let entries = &table().entries;
        assert_eq!(entries.len(), PROPERTIES.len() + INHERITED.len() + 1);
        assert!(entries.last().unwrap().name.is_null());
        for (entry, property) in entries.iter().zip(PROPERTIES) {
            // SAFETY: every name but the last points to a CString the table keeps.
            let name = unsafe { CStr::from_ptr(entry.name) }.to_str().unwrap();
            assert_eq!(name, property.name);
            assert_eq!(entry.set_property, 0);
            assert!(!entry.desc.is_null());
        }
        let header = &entries[PROPERTIES.len() + 2];
        assert_eq!(
            header.flags, FLB_CONFIG_MAP_MULT as c_int,
            "header is repeatable"
        );
    }
}
