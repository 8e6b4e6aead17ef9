#!/usr/bin/env python3
"""filter_wasm with k8s-metadata.wasm versus record_modifier adding the same kind of keys,
through a real Fluent Bit (FLUENT_BIT=/path/to/fluent-bit; skipped otherwise).

Each run tails a file of BENCH_WASM_RECORDS lines (default 50 000) with the cri parser, runs
the filter into the `null` output, and is stopped once Fluent Bit's CPU time has stopped
growing (the file is processed); Fluent Bit's CPU seconds (its own process, read from /proc)
are compared, measured in this run.
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLUENT_BIT = os.environ.get("FLUENT_BIT")
RECORDS = int(os.environ.get("BENCH_WASM_RECORDS", "50000"))
MODULE = os.path.join(ROOT, "dist", "k8s-metadata.wasm")

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
    Function_Name k8s_metadata
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
        log = os.path.join(tmp, "app.log")
        with open(log, "w") as f:
            for n in range(RECORDS):
                f.write(f"2026-11-22T02:00:00.{n % 1000000:06d}000Z stdout F line {n} GET /api/v1/orders 200 12ms\n")
        results = {}
        for name, filt in [("record_modifier", MODIFIER), ("k8s-metadata.wasm", WASM)]:
            config = os.path.join(tmp, f"{name}.conf")
            with open(config, "w") as f:
                f.write(COMMON.format(log=log, filter=filt.format(module=MODULE, podinfo=podinfo)))
            results[name] = min(run(config) for _ in range(2))
        print(f"filter_wasm vs record_modifier, {RECORDS} tail records through {FLUENT_BIT} (best of 2):")
        for name, (wall, cpu) in results.items():
            print(f"  {name:<18} {RECORDS / cpu:10.0f} records per CPU second  (cpu {cpu:5.2f} s, wall {wall:5.2f} s)")
        base, wasm = results["record_modifier"][1], results["k8s-metadata.wasm"][1]
        print(f"  k8s-metadata.wasm costs {wasm / base:.2f}x the CPU of record_modifier "
              "(and adds pod metadata, labels, service tags, CRI/JSON handling)")


if __name__ == "__main__":
    main()
