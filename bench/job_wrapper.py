#!/usr/bin/env python3
"""Capture throughput: job-wrapper (pass-through + CRI file) versus `tee`, on the same output.

The command under test cats a pre-generated file of text lines (BENCH_JOB_BYTES, default 1 GiB)
to stdout; the wrapper's or tee's own stdout goes to /dev/null, the file to a temp dir. Prints
MB/s of each and the ratio, measured in this run; CPU time of the capturing process included.
"""
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRAPPER = os.environ.get("JOB_WRAPPER_BIN", os.path.join(ROOT, "dist", "job-wrapper"))
SIZE = int(os.environ.get("BENCH_JOB_BYTES", str(1 << 30)))


def make_input(path):
    rng = random.Random(7)
    words = ["GET", "POST", "/api/v1/orders", "200", "404", "trace", "user", "ms", "cache", "miss"]
    # ~50-byte lines, as short log lines run: the CRI prefix (~40 bytes) nearly doubles them.
    line = " ".join(rng.choice(words) for _ in range(9)) + "\n"
    block = (line * (1 << 14)).encode()
    with open(path, "wb") as f:
        written = 0
        while written < SIZE:
            f.write(block)
            written += len(block)
    return written


def run(argv):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main():
    if not os.path.exists(WRAPPER):
        sys.exit(f"{WRAPPER} does not exist: run `make dist` first")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "input.txt")
        size = make_input(data)
        results = {}
        for name, argv in [
            ("tee", ["bash", "-c", f"set -o pipefail; cat {data} | tee {tmp}/tee.log"]),
            # Its defaults: rotated into generations by size (app.log, app.1.log, …).
            ("job-wrapper", [WRAPPER, "--log-file", f"{tmp}/app.log", "--", "cat", data]),
        ]:
            runs = []
            for _ in range(2):
                runs.append(run(argv))
                # Each run starts from an empty directory, as a Job does.
                for leftover in os.listdir(tmp):
                    if leftover.endswith(".log") or leftover.endswith(".token"):
                        os.remove(os.path.join(tmp, leftover))
            results[name] = min(runs)
        mb = size / 1e6
        print(f"Capture of {mb:.0f} MB of output (best of 2):")
        for name, (wall, cpu) in results.items():
            print(f"  {name:<12} {mb / wall:8.0f} MB/s  wall {wall:6.2f} s  cpu {cpu:6.2f} s")
        (tw, tc), (jw, jc) = results["tee"], results["job-wrapper"]
        print(f"  job-wrapper / tee: {tw / jw:.2f}x the throughput, {jc / tc:.2f}x the CPU "
              "(it also splits lines, timestamps them and writes CRI)")


if __name__ == "__main__":
    main()
