//! How many wasm instructions a `filter_wasm` module's function runs per record: wasmtime's fuel
//! (about one unit an instruction), counted on the second call for each record (the first one
//! warms caches and buffers). WAMR's interpreter, which Fluent Bit runs modules in, pays about the
//! same for each, so this is a deterministic stand-in for interpreted CPU time
//! (`bench/wasm_filter.py` prints it beside the measured times).
//!
//! Usage: `instructions MODULE FUNCTION RECORDS [PODINFO_DIR]` — RECORDS holds one JSON record a
//! line, as the host passes it; PODINFO_DIR is preopened as `/etc/podinfo`. Prints the mean
//! instructions per record.

use wasmtime::{Config, Engine, Linker, Module, Store, TypedFunc};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

const TAG: &[u8] = b"kube.var.log.containers.report-28190012-x7k2p_batch_report-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.log";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, module, function, records, rest @ ..] = args.as_slice() else {
        return Err("usage: instructions MODULE FUNCTION RECORDS [PODINFO_DIR]".into());
    };
    let mut config = Config::new();
    config.consume_fuel(true);
    let engine = Engine::new(&config)?;
    let module = Module::from_file(&engine, module)?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    p1::add_to_linker_sync(&mut linker, |ctx| ctx)?;
    let mut wasi = WasiCtxBuilder::new();
    if let Some(dir) = rest.first() {
        wasi.preopened_dir(dir, "/etc/podinfo", FsPerms::ReadOnly)?;
    }
    let mut store = Store::new(&engine, wasi.build_p1());
    store.set_fuel(u64::MAX / 2)?;
    let instance = linker.instantiate(&mut store, &module)?;
    let memory = instance
        .get_memory(&mut store, "memory")
        .ok_or("no memory export")?;
    let malloc: TypedFunc<i32, i32> = instance.get_typed_func(&mut store, "malloc")?;
    let free: TypedFunc<i32, ()> = instance.get_typed_func(&mut store, "free")?;
    let function: TypedFunc<(i32, i32, i32, i32, i32, i32), i32> =
        instance.get_typed_func(&mut store, function.as_str())?;
    let copy_in =
        |store: &mut Store<WasiP1Ctx>, bytes: &[u8]| -> Result<i32, Box<dyn std::error::Error>> {
            let with_nul = [bytes, b"\0"].concat();
            let ptr = malloc.call(&mut *store, with_nul.len() as i32)?;
            memory.write(&mut *store, ptr as usize, &with_nul)?;
            Ok(ptr)
        };
    let tag = copy_in(&mut store, TAG)?;
    let (mut total, mut count) = (0u64, 0u64);
    for line in std::fs::read_to_string(records)?.lines() {
        let record = copy_in(&mut store, line.as_bytes())?;
        for round in 0..2 {
            let before = store.get_fuel()?;
            let args = (tag, TAG.len() as i32, 0, 0, record, line.len() as i32);
            function.call(&mut store, args)?;
            if round == 1 {
                total += before - store.get_fuel()?;
                count += 1;
            }
        }
        free.call(&mut store, record)?;
    }
    println!("{}", total / count.max(1));
    Ok(())
}
