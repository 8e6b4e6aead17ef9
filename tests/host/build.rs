use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc");
    cc::Build::new()
        .file("csrc/host_log.c")
        .compile("fanout_testhost_log");

    // A shared library with the symbols a Fluent Bit >= 2.0 binary exports, so a test process
    // can choose to look like a modern host (load it) or like 1.9 (do not).
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    let library = out.join("libfakeflb.so");
    let status = cc::Build::new()
        .get_compiler()
        .to_command()
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg("csrc/fake_flb_symbols.c")
        .status()
        .expect("the C compiler runs");
    assert!(status.success(), "building libfakeflb.so failed");
    println!(
        "cargo:rustc-env=FANOUT_TESTHOST_FAKE_FLB={}",
        library.display()
    );
}
