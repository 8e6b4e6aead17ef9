//! `make bindings`: rewrite plugin/src/ffi/bindings.rs from the vendored header.

fn main() {
    let source = match fanout_abi_bindgen::generate() {
        Ok(source) => source,
        Err(message) => {
            eprintln!("{message}\n(bindgen needs libclang: apt-get install libclang-dev)");
            std::process::exit(1);
        }
    };
    let path = fanout_abi_bindgen::bindings_path();
    if let Err(e) = std::fs::write(&path, source) {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    println!("wrote {}", path.display());
}
