//! The files `make dist` ships, for the architecture these tests were built for (`make
//! test-aarch64` builds and runs them for aarch64 under qemu): the plugin named so Fluent Bit
//! treats it as a proxy plugin, exporting the proxy symbols, and loadable on Amazon Linux 2
//! (glibc 2.26); the job wrapper static, so it runs in any Job image.

use fanout_testhost::{job_wrapper_path, plugin_path};
use object::elf::{EM_AARCH64, EM_X86_64, PT_INTERP};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSymbol};

/// The ELF machine of this test binary's own architecture: the files must match it, since a
/// host of one architecture cannot load a plugin of another.
fn this_machine() -> u16 {
    match std::env::consts::ARCH {
        "x86_64" => EM_X86_64,
        "aarch64" => EM_AARCH64,
        other => panic!("no release is built for {other}"),
    }
}

fn machine(data: &[u8]) -> u16 {
    let elf = ElfFile64::<Endianness>::parse(data).expect("an ELF64 file");
    elf.elf_header().e_machine.get(elf.endian())
}

#[test]
fn dist_files_are_built_for_this_architecture() {
    for path in [plugin_path(), job_wrapper_path()] {
        let data = std::fs::read(&path).unwrap();
        assert_eq!(
            machine(&data),
            this_machine(),
            "{} is not an {} file (`make dist ARCH={}`)",
            path.display(),
            std::env::consts::ARCH,
            std::env::consts::ARCH
        );
    }
}

#[test]
fn dist_job_wrapper_is_static() {
    let path = job_wrapper_path();
    let data = std::fs::read(&path).unwrap();
    let elf = ElfFile64::<Endianness>::parse(&*data).expect("an ELF64 file");
    let endian = elf.endian();
    let interpreter = elf
        .elf_program_headers()
        .iter()
        .any(|header| header.p_type(endian) == PT_INTERP);
    assert!(
        !interpreter,
        "{} names a dynamic loader: it would not start in a scratch or distroless image",
        path.display()
    );
    let libraries: Vec<_> = elf.imports().expect("readable imports");
    assert!(
        libraries.is_empty(),
        "{} imports {} symbols from shared libraries",
        path.display(),
        libraries.len()
    );
}

/// AWS for Fluent Bit 2.x runs on Amazon Linux 2, whose glibc is 2.26.
const OLDEST_GLIBC: (u32, u32) = (2, 26);

fn glibc_versions_needed(data: &[u8]) -> Vec<(u32, u32)> {
    let elf = ElfFile64::<Endianness>::parse(data).expect("an ELF64 file");
    let endian = elf.endian();
    let sections = elf
        .elf_header()
        .sections(endian, data)
        .expect("section table");
    let mut versions = Vec::new();
    if let Some((mut needs, link)) = sections
        .gnu_verneed(endian, data)
        .expect("readable .gnu.version_r")
    {
        let strings = sections
            .strings(endian, data, link)
            .expect("version strings");
        while let Some((need, mut auxes)) = needs.next().expect("verneed entry") {
            let _ = need;
            while let Some(aux) = auxes.next().expect("vernaux entry") {
                let name =
                    String::from_utf8_lossy(aux.name(endian, strings).expect("version name"))
                        .into_owned();
                if let Some(numbers) = name.strip_prefix("GLIBC_") {
                    let mut parts = numbers.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
                    versions.push((parts.next().unwrap_or(0), parts.next().unwrap_or(0)));
                }
            }
        }
    }
    versions
}

#[test]
fn dist_plugin_needs_no_glibc_newer_than_amazon_linux_2() {
    let path = plugin_path();
    let data = std::fs::read(&path).unwrap();
    let versions = glibc_versions_needed(&data);
    assert!(
        !versions.is_empty(),
        "the plugin links glibc, so it must name versions"
    );
    let newest = versions.iter().max().unwrap();
    assert!(
        *newest <= OLDEST_GLIBC,
        "{} needs GLIBC_{}.{}, newer than {}.{}: build it with `make dist`",
        path.display(),
        newest.0,
        newest.1,
        OLDEST_GLIBC.0,
        OLDEST_GLIBC.1
    );
}

#[test]
fn dist_plugin_exports_the_proxy_symbols_and_is_not_named_like_a_native_plugin() {
    let path = plugin_path();
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(
        !name.starts_with("flb-"),
        "Fluent Bit loads flb-* files as native C plugins"
    );
    let data = std::fs::read(&path).unwrap();
    let elf = object::File::parse(&*data).unwrap();
    let exported: Vec<String> = elf
        .dynamic_symbols()
        .filter(|s| s.is_definition() && s.is_global())
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect();
    for symbol in [
        "FLBPluginRegister",
        "FLBPluginInit",
        "FLBPluginFlushCtx",
        "FLBPluginFlush",
        "FLBPluginExitCtx",
        "FLBPluginExit",
    ] {
        assert!(
            exported.iter().any(|e| e == symbol),
            "{symbol} is not exported"
        );
    }
}
