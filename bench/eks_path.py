#!/usr/bin/env python3
"""The whole EKS path with the shipped config (FLUENT_BIT=/path/to/fluent-bit; skipped
otherwise): `job-wrapper` runs a command printing JSON log lines and writes the CRI file, Fluent
Bit tails it (`cri` parser), `k8s-metadata.wasm` adds the pod and merges the lines, `fanout`
sends every record to Datadog and Firehose stand-ins (those of `bench/end_to_end.py`; their CPU
is not counted).

BENCH_EKS_LINES (default 200 000) JSON lines of ~150 bytes (the `json-small` shape of
`bench/wasm_filter.py`). CPU is split by running the same files through the shipped config cut
short, all in this run:
  wrapper      job-wrapper's own CPU (rusage) writing the file, against `cat` of the same lines
               to /dev/null as the baseline any capture pays;
  input        Fluent Bit with the shipped `[INPUT]` into `null`;
  + filter     the shipped `[INPUT]` and `[FILTER]` into `null`;
  + fanout     the shipped config whole, to the stand-ins.
The filter's share is (+ filter) - (input), the plugin's (+ fanout) - (+ filter). Everything is
printed per 100 000 lines.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import end_to_end as e2e  # noqa: E402  (the stand-ins, the CA, the Fluent Bit runner)
import wasm_filter  # noqa: E402  (the JSON line shape)

ROOT = e2e.ROOT
FLUENT_BIT = os.environ.get("FLUENT_BIT")
LINES = int(os.environ.get("BENCH_EKS_LINES", "200000"))
WRAPPER = os.path.join(ROOT, "dist", "job-wrapper")
SHIPPED = os.path.join(ROOT, "fluent-bit-conf", "eks", "fluent-bit.conf")


def rooted(text, root):
    """The shipped file's container paths moved under `root`, as the real-host tests do."""
    for path in ("/fluent-bit/", "/var/log/app", "/etc/podinfo", "/var/run/"):
        text = text.replace(path, root + path)
    return text


def sections(text):
    """The config cut into its `[SECTION]` blocks (comments and blank lines kept inside)."""
    blocks = re.split(r"(?m)^(?=\[)", text)
    return [b for b in blocks if b.strip()]


def config_variants(root, http_port, dd_url, fh_url):
    """(input only, input + filter, whole) from the shipped config."""
    text = rooted(open(SHIPPED).read(), root).replace("2020", str(http_port))
    text = text.replace("Log_Level       info", "Log_Level       warn")
    blocks = sections(text)
    service = [b for b in blocks if b.startswith("[SERVICE]")]
    inputs = [b for b in blocks if b.startswith("[INPUT]")]
    filters = [b for b in blocks if b.startswith("[FILTER]")]
    outputs = [b for b in blocks if b.startswith("[OUTPUT]")]
    assert service and inputs and filters and outputs, "the shipped config changed shape"
    null = "[OUTPUT]\n    Name null\n    Match *\n"
    fanout = outputs[0].replace("    Name            fanout\n",
                                f"    Name            fanout\n    dd_url {dd_url}\n    endpoint {fh_url}\n")
    # The wrapper ran to its end before Fluent Bit started, so its end-of-job record may be read
    # before earlier generations (what --tail-db prevents in a real Job): the stand-ins' counts
    # end the run instead.
    fanout = "".join(line for line in fanout.splitlines(keepends=True)
                     if not line.strip().startswith(("exit_on_job_end", "job_end_token_file")))
    return ("".join(service + inputs) + null,
            "".join(service + inputs + filters) + null,
            "".join(service + inputs + filters) + fanout)


def null_count(http_port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/v1/metrics", timeout=2) as r:
            return json.load(r)["output"]["null.0"]["proc_records"]
    except (OSError, KeyError, ValueError):
        return 0


def cpu_of(command, **kwargs):
    """Runs `command`; its CPU seconds (user + system, children included)."""
    process = subprocess.Popen(command, **kwargs)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{command[0]} failed")
    return usage.ru_utime + usage.ru_stime


def main():
    if not FLUENT_BIT:
        print("EKS path benchmark: FLUENT_BIT is not set (a Fluent Bit >= 4.0.3 binary); skipped")
        return
    for artifact in ("fanout.so", "k8s-metadata.wasm", "job-wrapper"):
        if not os.path.exists(os.path.join(ROOT, "dist", artifact)):
            sys.exit(f"dist/{artifact} does not exist: run `make dist` first")
    with tempfile.TemporaryDirectory() as root:
        for d in ("/fluent-bit/etc", "/fluent-bit/plugins", "/var/log/app", "/etc/podinfo"):
            os.makedirs(root + d)
        for artifact in ("fanout.so", "k8s-metadata.wasm"):
            os.symlink(os.path.join(ROOT, "dist", artifact), f"{root}/fluent-bit/plugins/{artifact}")
        with open(f"{root}/fluent-bit/etc/plugins.conf", "w") as f:
            f.write(rooted(open(os.path.join(ROOT, "fluent-bit-conf", "eks", "plugins.conf")).read(), root))
        for name, value in [("pod_name", "report-28190012-x7k2p"), ("namespace", "batch"),
                            ("labels", 'tags.datadoghq.com/service="report"\ntags.datadoghq.com/env="prod"\n')]:
            with open(f"{root}/etc/podinfo/{name}", "w") as f:
                f.write(value)

        lines = os.path.join(root, "lines.jsonl")
        with open(lines, "w") as f:
            for n in range(LINES):
                f.write(wasm_filter.json_message("json-small", n) + "\n")
        size_mb = os.path.getsize(lines) / 1e6
        cat_cpu = min(cpu_of(["cat", lines], stdout=subprocess.DEVNULL) for _ in range(3))
        log = f"{root}/var/log/app/app.log"
        wrapper_cpu = cpu_of([WRAPPER, "--log-file", log, "--", "cat", lines], stdout=subprocess.DEVNULL)

        ca, cert, key = e2e.make_ca_and_certificate(root)
        datadog = e2e.StandIn(e2e.DatadogHandler)
        firehose = e2e.StandIn(e2e.FirehoseHandler, tls=(cert, key))
        env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDBENCH", AWS_SECRET_ACCESS_KEY="bench-secret",
                   AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", SSL_CERT_FILE=ca,
                   DD_API_KEY="bench-api-key", DD_SERVICE="report", DD_SOURCE="bench", DD_TAGS="env:bench")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
            env.pop(name, None)
        http_port = e2e.free_port()
        variants = config_variants(root, http_port, f"http://127.0.0.1:{datadog.port}",
                                   f"https://127.0.0.1:{firehose.port}")
        results = {}
        try:
            for label, text, done in [
                ("input", variants[0], lambda: null_count(http_port) >= LINES),
                ("+ filter", variants[1], lambda: null_count(http_port) >= LINES),
                ("+ fanout", variants[2], lambda: datadog.count >= LINES and firehose.count >= LINES),
            ]:
                # Every run starts from the head of the files, with no offsets kept.
                for leftover in ("fluent-bit-tail.db", "fluent-bit-tail.db-wal", "fluent-bit-tail.db-shm"):
                    if os.path.exists(f"{root}/var/log/app/{leftover}"):
                        os.remove(f"{root}/var/log/app/{leftover}")
                config = f"{root}/fluent-bit/etc/{label.strip('+ ')}.conf"
                with open(config, "w") as f:
                    f.write(text)
                datadog.reset()
                firehose.reset()
                cpu, rss, wall = e2e.run(config, env, done, label)
                results[label] = (cpu, rss, wall)
            delivered = (datadog.count, firehose.count)
        finally:
            datadog.stop()
            firehose.stop()

    per = 100000 / LINES
    wrapper = wrapper_cpu
    input_cpu = results["input"][0]
    filter_cpu = results["+ filter"][0] - input_cpu
    plugin_cpu = results["+ fanout"][0] - results["+ filter"][0]
    total = wrapper + results["+ fanout"][0]
    print(f"EKS path: {LINES} JSON lines ({size_mb:.0f} MB) through job-wrapper and {FLUENT_BIT} "
          f"with the shipped fluent-bit-conf/eks config (Datadog {delivered[0]}, Firehose "
          f"{delivered[1]} records delivered); CPU seconds per 100 000 lines:")
    print(f"  {'job-wrapper':<22} {wrapper * per:6.3f}  (cat of the same lines: {cat_cpu * per:.3f})")
    print(f"  {'Fluent Bit input':<22} {input_cpu * per:6.3f}  (tail + cri parser + engine)")
    print(f"  {'k8s-metadata filter':<22} {filter_cpu * per:6.3f}  (filter_wasm, interpreted)")
    print(f"  {'fanout':<22} {plugin_cpu * per:6.3f}  (Datadog + Firehose)")
    print(f"  {'whole path':<22} {total * per:6.3f}  "
          f"(Fluent Bit peak RSS {results['+ fanout'][1]:.0f} MiB)")


if __name__ == "__main__":
    main()
