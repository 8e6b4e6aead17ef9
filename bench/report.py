#!/usr/bin/env python3
"""Ratios from the pipeline benchmark just run: reads criterion's estimates (target/criterion)
and prints, per record shape, MB/s of gzip alone (the floor), decode, and the full pipeline
with the default Datadog compression (zstd level 1), zstd level 3 and gzip, each as a share
of the floor's speed (BENCH_CRITERION_DIR reads another run's results)."""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRITERION = os.environ.get("BENCH_CRITERION_DIR", os.path.join(ROOT, "target", "criterion"))
SHAPES = ["firelens_200B", "firelens_4KB", "kubernetes_200B", "kubernetes_4KB"]
PIPELINES = [("pipeline", "zstd 1 (default)"), ("pipeline_zstd3", "zstd 3"), ("pipeline_gzip", "gzip")]


def estimate(group, function):
    base = os.path.join(CRITERION, group, function, "new")
    with open(os.path.join(base, "estimates.json")) as f:
        seconds = json.load(f)["mean"]["point_estimate"] / 1e9
    with open(os.path.join(base, "benchmark.json")) as f:
        size = json.load(f)["throughput"]["Bytes"]
    return size / seconds / 1e6


def main():
    print("Pipeline per 1 MB chunk (MB/s of msgpack input; criterion means, this run;")
    print("x = share of gzip-alone's speed on the same bytes):")
    header = "".join(f" {label:>22}" for _, label in PIPELINES)
    print(f"  {'shape':<16} {'gzip floor':>11} {'decode':>9}{header}")
    for shape in SHAPES:
        try:
            floor = estimate(shape, "gzip_floor")
            decode = estimate(shape, "decode")
        except (OSError, KeyError):
            print(f"  {shape:<16} (no results: run `cargo bench -p fanout --bench pipeline`)")
            continue
        cells = ""
        for function, _ in PIPELINES:
            try:
                speed = estimate(shape, function)
                cells += f" {speed:13.0f} ({speed / floor:4.2f}x)"
            except (OSError, KeyError):
                cells += f" {'-':>22}"
        print(f"  {shape:<16} {floor:11.0f} {decode:9.0f}{cells}")


if __name__ == "__main__":
    main()
