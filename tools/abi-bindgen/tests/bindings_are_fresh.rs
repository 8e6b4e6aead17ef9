//! The committed bindings must be exactly what bindgen makes of the committed header.

#[test]
fn committed_bindings_match_the_header() {
    let generated = fanout_abi_bindgen::generate().unwrap_or_else(|e| {
        panic!("{e}; install libclang (apt-get install libclang-dev) to run this test")
    });
    let path = fanout_abi_bindgen::bindings_path();
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        committed == generated,
        "{} is stale: run `make bindings` and commit the result",
        path.display()
    );
}
