#!/usr/bin/env python3
"""Ratios from the pipeline benchmark just run: reads criterion's estimates (target/criterion)
and prints, per record shape, MB/s of gzip alone (the floor), decode, and the full pipeline,
and the pipeline's cost as a multiple of the floor."""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRITERION = os.path.join(ROOT, "target", "criterion")
SHAPES = ["firelens_200B", "firelens_4KB", "kubernetes_200B", "kubernetes_4KB"]


def estimate(group, function):
    base = os.path.join(CRITERION, group, function, "new")
    with open(os.path.join(base, "estimates.json")) as f:
        seconds = json.load(f)["mean"]["point_estimate"] / 1e9
    with open(os.path.join(base, "benchmark.json")) as f:
        size = json.load(f)["throughput"]["Bytes"]
    return size / seconds / 1e6


def main():
    print("Pipeline per 1 MB chunk (MB/s of msgpack input; criterion means, this run):")
    print(f"  {'shape':<16} {'gzip floor':>11} {'decode':>9} {'pipeline':>9} {'pipeline cost':>15}")
    for shape in SHAPES:
        try:
            floor, decode, pipeline = (estimate(shape, f) for f in ("gzip_floor", "decode", "pipeline"))
        except (OSError, KeyError):
            print(f"  {shape:<16} (no results: run `cargo bench -p fanout --bench pipeline`)")
            continue
        print(f"  {shape:<16} {floor:11.0f} {decode:9.0f} {pipeline:9.0f} {floor / pipeline:12.2f}x gzip")


if __name__ == "__main__":
    main()
