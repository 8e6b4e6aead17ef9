#!/usr/bin/env python3
"""filter_wasm with k8s-metadata.wasm against its floor and record_modifier, through a real
Fluent Bit (FLUENT_BIT=/path/to/fluent-bit; skipped otherwise).

Four runs, each tailing the same file of BENCH_WASM_RECORDS lines (default 50 000) with the cri
parser into the `null` output:
  input only         no filter: what tail, the parser and the engine cost;
  record_modifier    six flat keys added by a core filter;
  floor              filter_wasm with bench/wasm-floor, which hands every record back unchanged:
                     what filter_wasm itself costs (JSON out, into the interpreter, JSON back);
  floor + keys       the same module appending, without looking, the keys k8s-metadata adds to
                     these records: the least any module adding them can cost;
  floor + merged     (JSON shapes) the same, also appending the members of the object in `log`,
                     unescaped once, eight bytes a step, without checking: what the host pays to
                     read back a merged record plus the one pass over the line no merging module
                     can skip, the least any module merging JSON lines can cost;
  k8s-metadata       the shipped module (BENCH_WASM_MODULE: another build of it).
With WAMRC=/path/to/wamrc (WAMR's ahead-of-time compiler, of the WAMR version the Fluent Bit
bundles; see README "Ahead-of-time compiled filter"), the floor and the module also run compiled
ahead of time (`.aot`), the floor against the floor.
Each run is stopped once Fluent Bit's CPU time has stopped growing (the file is processed);
Fluent Bit's CPU seconds (its own process, read from /proc, best of BENCH_WASM_RUNS, default 2)
are compared beyond the input-only run, all measured in this run. The goals (issue 26):
k8s-metadata.wasm within 3x the floor interpreted, 1.5x ahead of time.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLUENT_BIT = os.environ.get("FLUENT_BIT")
RECORDS = int(os.environ.get("BENCH_WASM_RECORDS", "50000"))
RUNS = int(os.environ.get("BENCH_WASM_RUNS", "2"))
MODULE = os.environ.get("BENCH_WASM_MODULE", os.path.join(ROOT, "dist", "k8s-metadata.wasm"))
FLOOR = os.path.join(ROOT, "target", "wasm32-wasip1", "release", "wasm_floor.wasm")
WAMRC = os.environ.get("WAMRC")


def aot(wamrc, module, out):
    """Compiles a module ahead of time the way `make aot` does."""
    subprocess.run([wamrc, "--target=x86_64", "--cpu=x86-64", "--disable-simd", "-o", out, module],
                   check=True, stdout=subprocess.DEVNULL)
    return out

COMMON = """
[SERVICE]
    Flush 1
    Log_Level warn
[INPUT]
    Name tail
    Path {log}
    Tag kube.var.log.containers.report-28190012-x7k2p_batch_report-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.log
    Read_from_Head On
    multiline.parser cri
    Buffer_Max_Size 1M
{filter}
[OUTPUT]
    Name null
    Match *
"""

WASM = """
[FILTER]
    Name wasm
    Match *
    WASM_Path {module}
    Function_Name {function}
    accessible_paths {podinfo}
"""

MODIFIER = """
[FILTER]
    Name record_modifier
    Match *
    Record kubernetes_pod_name report-28190012-x7k2p
    Record kubernetes_namespace_name batch
    Record kubernetes_container_name report
    Record kubernetes_labels_app report
    Record service report
    Record env prod
"""


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(config):
    start = time.perf_counter()
    process = subprocess.Popen([FLUENT_BIT, "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last, stable_since = -1.0, time.perf_counter()
    try:
        while time.perf_counter() - start < 600:
            time.sleep(0.25)
            cpu = cpu_seconds(process.pid)
            if cpu != last:
                last, stable_since = cpu, time.perf_counter()
            elif time.perf_counter() - stable_since > 2.0 and cpu > 0:
                break
        busy = stable_since - start
    finally:
        process.terminate()
        process.wait(timeout=30)
    return busy, last


SHAPES = os.environ.get("BENCH_WASM_SHAPES", "plain,json-small,json-nested,json-escaped,json-4k,mixed").split(",")


def cri(n, stream, partial, message):
    return f"2026-11-22T02:00:00.{n % 1000000:06d}000Z {stream} {partial} {message}\n"


def json_message(shape, n):
    """The JSON object an application prints as one line, for each JSON shape."""
    if shape == "json-small":
        return json.dumps({"level": "info", "msg": f"GET /api/v1/orders/{n} 200", "status": 200,
                           "duration_ms": 12.5, "request_id": f"req-{n:08d}", "ok": True},
                          separators=(",", ":"))
    if shape == "json-nested":
        return json.dumps({"level": "info", "msg": "request done",
                           "http": {"method": "GET", "path": f"/api/v1/orders/{n}", "status": 200,
                                    "headers": {"user-agent": "curl/8.5", "accept": "*/*"}},
                           "tags": ["orders", "v1", n, 2.5, True, None],
                           "user": {"id": n, "roles": ["reader", "writer"]}},
                          separators=(",", ":"))
    if shape == "json-escaped":
        return json.dumps({"level": "warn", "msg": f"caf\u00e9 \u201cquoted\u201d \"x\" tab\there line\nnext {n}",
                           "path": "C:\\tmp\\out", "lang": "\u65e5\u672c\u8a9e \u2713 \U0001F600",
                           "ascii": "\u00e9t\u00e9"}, ensure_ascii=(n % 2 == 0), separators=(",", ":"))
    if shape == "json-4k":
        fields = {"level": "info", "msg": f"batch {n} done"}
        for k in range(40):
            fields[f"field_{k:02d}"] = f"value {k} " + "x" * 80
        fields["counts"] = list(range(20))
        return json.dumps(fields, separators=(",", ":"))
    raise ValueError(shape)


def write_shape(path, shape, records):
    """`records` CRI lines of one shape; `mixed` cycles JSON, plain text and a JSON line split
    into a partial (`P`) line and its final (`F`) one, which the cri parser joins."""
    with open(path, "w") as f:
        for n in range(records):
            if shape == "plain":
                f.write(cri(n, "stdout", "F", f"line {n} GET /api/v1/orders 200 12ms"))
            elif shape == "mixed":
                kind = n % 4
                if kind == 0:
                    f.write(cri(n, "stdout", "F", json_message("json-small", n)))
                elif kind == 1:
                    f.write(cri(n, "stderr", "F", f"WARN line {n} retrying /api/v1/orders in 2s"))
                elif kind == 2:
                    f.write(cri(n, "stdout", "F", json_message("json-nested", n)))
                else:
                    message = json_message("json-small", n)
                    f.write(cri(n, "stdout", "P", message[:30]))
                    f.write(cri(n, "stdout", "F", message[30:]))
            else:
                f.write(cri(n, "stdout", "F", json_message(shape, n)))


INSTRUCTIONS = os.path.join(ROOT, "target", "release", "examples", "instructions")


def host_records(log, path, limit=200):
    """The first `limit` records of a CRI file as filter_wasm hands them to a module (tail's cri
    parser: time, stream, _p, log; partial lines joined; non-ASCII escaped as the host does)."""
    records, pending = [], ""
    with open(log) as f:
        for line in f:
            time_, stream, partial, message = line.rstrip("\n").split(" ", 3)
            pending += message
            if partial == "P":
                continue
            records.append(json.dumps({"time": time_, "stream": stream, "_p": "F", "log": pending},
                                      separators=(",", ":")))
            pending = ""
            if len(records) == limit:
                break
    with open(path, "w") as f:
        f.write("\n".join(records) + "\n")
    return path


def instructions(module, function, records, podinfo):
    """Mean wasm instructions per record (wasmtime fuel; examples/instructions.rs)."""
    out = subprocess.run([INSTRUCTIONS, module, function, records, podinfo], check=True,
                         capture_output=True, text=True).stdout
    return int(out.strip())


def main():
    if not FLUENT_BIT:
        print("wasm filter benchmark: FLUENT_BIT is not set (a Fluent Bit >= 4.0.3 binary); skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        podinfo = os.path.join(tmp, "podinfo")
        os.mkdir(podinfo)
        for name, value in [("pod_name", "report-28190012-x7k2p"), ("namespace", "batch"),
                            ("labels", 'app="report"\ntags.datadoghq.com/env="prod"\n')]:
            with open(os.path.join(podinfo, name), "w") as f:
                f.write(value)
        if not os.path.exists(FLOOR):
            subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "wasm-floor",
                            "--target", "wasm32-wasip1"], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "k8s-metadata",
                        "--example", "instructions"], cwd=ROOT, check=True)
        modes = [("", FLOOR, MODULE)]
        if WAMRC:
            modes.append((" (aot)", aot(WAMRC, FLOOR, os.path.join(tmp, "floor.aot")),
                          aot(WAMRC, MODULE, os.path.join(tmp, "k8s.aot"))))
        print(f"filter_wasm through {FLUENT_BIT} (best of {RUNS}), CPU beyond an input-only run "
              f"on the same file:")
        for shape in SHAPES:
            records = RECORDS // 5 if shape == "json-4k" else RECORDS
            log = os.path.join(tmp, f"{shape}.log")
            write_shape(log, shape, records)
            filters = [("input only", "")]
            if shape == "plain":
                filters.append(("record_modifier", MODIFIER))
            for mode, floor, module in modes:
                filters.append(("floor" + mode, WASM.format(module=floor, function="passthrough",
                                                            podinfo=podinfo)))
                if shape == "plain":
                    filters.append(("floor + keys" + mode, WASM.format(
                        module=floor, function="passthrough_with_keys", podinfo=podinfo)))
                else:
                    filters.append(("floor + merged" + mode, WASM.format(
                        module=floor, function="passthrough_with_merged", podinfo=podinfo)))
                filters.append(("k8s-metadata" + mode, WASM.format(
                    module=module, function="k8s_metadata", podinfo=podinfo)))
            results = {}
            for name, filt in filters:
                config = os.path.join(tmp, "".join(c if c.isalnum() else "_" for c in name) + ".conf")
                with open(config, "w") as f:
                    f.write(COMMON.format(log=log, filter=filt))
                results[name] = min(run(config) for _ in range(RUNS))
            print(f"{shape}: {records} records, {os.path.getsize(log) // records} bytes a line")
            base = results["input only"][1]
            for name, (wall, cpu) in results.items():
                beyond = "" if name == "input only" else \
                    f"  beyond input {cpu - base:5.2f} s, {records / max(cpu - base, 1e-9):8.0f} records/s"
                print(f"  {name:<25} cpu {cpu:5.2f} s (wall {wall:5.2f} s){beyond}")
            beyond = {name: max(cpu - base, 1e-9) for name, (_, cpu) in results.items()}
            if "record_modifier" in beyond:
                print(f"  floor (filter_wasm's own JSON round trip) is "
                      f"{beyond['floor'] / beyond['record_modifier']:.1f}x record_modifier")
            for mode, _, _ in modes:
                module, floor = beyond["k8s-metadata" + mode], beyond["floor" + mode]
                keys = f" (floor + keys {beyond['floor + keys' + mode] / floor:.2f}x)" \
                    if "floor + keys" + mode in beyond else ""
                if "floor + merged" + mode in beyond:
                    merged = beyond["floor + merged" + mode]
                    keys = (f" (floor + merged members {merged / floor:.2f}x the floor: the least a "
                            f"module merging the line costs; k8s-metadata{mode} {module / merged:.2f}x that)")
                goal = "3" if mode == "" else "1.5"
                print(f"  {shape}: k8s-metadata{mode} {module / floor:.2f}x the floor{mode} "
                      f"(goal <= {goal}x){keys}")
            records_file = host_records(log, os.path.join(tmp, f"{shape}.records"))
            floor_count = instructions(FLOOR, "passthrough", records_file, podinfo)
            module_count = instructions(MODULE, "k8s_metadata", records_file, podinfo)
            print(f"  {shape}: wasm instructions a record: floor {floor_count}, k8s-metadata "
                  f"{module_count} ({module_count / floor_count:.1f}x; the host's own work is "
                  f"not counted)")


if __name__ == "__main__":
    main()
