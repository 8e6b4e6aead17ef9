//! Threads and reloads. One test in its own process, so thread counts are this test's alone.

mod common;

use fanout_testhost::ffi::thread_names;
use fanout_testhost::host::FLB_OK;
use fanout_testhost::{Chunk, HostVersion, Plugin, plugin_path};
use serde_json::json;

use common::{file_props, records};

fn runtime_threads() -> usize {
    thread_names()
        .iter()
        .filter(|n| n.starts_with("fanout-rt"))
        .count()
}

#[test]
fn threads_start_at_init_and_are_joined_by_the_last_exit_even_across_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out_s = out.display().to_string();

    let first_generation = Plugin::load(&plugin_path(), HostVersion::V5_1).unwrap();
    assert_eq!(
        runtime_threads(),
        0,
        "Register starts nothing (daemon mode forks after it)"
    );

    let a = first_generation
        .init(&file_props("gen1-a", &out_s))
        .unwrap();
    let b = first_generation
        .init(&file_props("gen1-b", &out_s))
        .unwrap();
    assert_eq!(
        a.flush(Chunk::new().event(1, &json!({"gen": 1})).bytes(), "t"),
        FLB_OK
    );
    assert_eq!(
        b.flush(Chunk::new().event(2, &json!({"gen": 1})).bytes(), "t"),
        FLB_OK
    );

    // Threads name themselves once running; after a flush they certainly have.
    assert!(runtime_threads() >= 1, "Init started the shared runtime");

    // Hot reload: the same path is loaded and registered again while generation 1 still runs,
    // then generation 1 exits, then generation 2 initialises.
    let second_generation = Plugin::load(&plugin_path(), HostVersion::V5_1).unwrap();
    assert_eq!(a.exit(), FLB_OK);
    assert!(
        runtime_threads() >= 1,
        "one instance still holds the runtime"
    );
    assert_eq!(b.exit(), FLB_OK);
    assert_eq!(
        runtime_threads(),
        0,
        "the last exit joins every runtime thread"
    );
    drop(first_generation);

    let c = second_generation.init(&file_props("gen2", &out_s)).unwrap();
    assert_eq!(
        c.flush(Chunk::new().event(3, &json!({"gen": 2})).bytes(), "t"),
        FLB_OK
    );
    assert_eq!(c.exit(), FLB_OK);
    assert_eq!(runtime_threads(), 0);
    drop(second_generation);

    assert_eq!(
        records(&out),
        vec![json!({"gen": 1}), json!({"gen": 1}), json!({"gen": 2})]
    );
}
