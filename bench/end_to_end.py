#!/usr/bin/env python3
"""End to end through a real Fluent Bit (FLUENT_BIT=/path/to/fluent-bit; skipped otherwise):
the same records to Datadog and Firehose with the `fanout` plugin versus the core `datadog` +
`kinesis_firehose` outputs, both to the same local stand-ins.

Every run tails the same file of FireLens-shaped JSON records (BENCH_E2E_RECORDS, default
1 000 000, ~200 B log lines) with `Mem_Buf_Limit`, so memory reflects the outputs rather than a
backlog. Runs:

  input only   the same input into the `null` output: what every run pays before any output
  core         `datadog` (gzip) + `kinesis_firehose`, one stream, their default workers
  fanout       `fanout` with `destinations datadog,firehose`, the same stream and settings,
               `workers 1` (the core Firehose output's default), default compression (zstd level 1)
  fanout gzip  the same with `compress gzip`, as the core output compresses
  fanout zstd3 the same with `compress_level 3`
  fanout+agg   `fanout` as deployed: one stream per service, `simple_aggregation on`
  fanout+ledger `fanout` with `ledger_file` (the ledger kept on disk across restarts): what it
               costs while every flush succeeds (nothing is written then)

Then a remote-latency pair (BENCH_E2E_REMOTE_RECORDS, default 200 000): both stand-ins answer
every request after 150 ms, as a remote intake does (Tokyo -> US1), and `core` and `fanout`
(`workers 1` each, the default `max_concurrent_requests`) are compared by records per second,
plus `fanout` with the shipped `workers 2`.
The core Datadog output sends a whole chunk per request, ignoring the intake's 1000-entry
limit; `fanout` respects it and overlaps its requests instead.

BENCH_E2E_PLUGIN=/path/to/fanout.so runs another build of the plugin (e.g. the previous
release) for a before/after comparison; BENCH_E2E_ONLY=label,... picks runs.

A run ends when both stand-ins have counted every record (or, for the input-only run, when
the `null` output has, read from Fluent Bit's metrics endpoint); Fluent Bit is then stopped with SIGTERM and its own rusage (CPU seconds, peak
RSS) read with wait4. The stand-ins are separate processes: their CPU is not counted. Firehose
is served over TLS (the core output cannot do without it) with a CA made for the run, given to
the core output as `tls.ca_file` and to the plugin as SSL_CERT_FILE.

Peak RSS depends on the allocator: release builds of Fluent Bit link jemalloc and export its
`malloc`, so the plugin's allocations go there too, and freed pages are kept for jemalloc's
decay time (10 s). Run with MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0 to see live memory
instead.
"""
import base64
import gzip
import http.server
import json
import multiprocessing
import os
import random
import signal
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLUENT_BIT = os.environ.get("FLUENT_BIT")
RECORDS = int(os.environ.get("BENCH_E2E_RECORDS", "1000000"))
# Another build of the plugin (e.g. the previous release) for before/after comparisons.
PLUGIN = os.environ.get("BENCH_E2E_PLUGIN", os.path.join(ROOT, "dist", "fanout.so"))
SERVICES = ["checkout", "payments", "search"]
REMOTE_RECORDS = int(os.environ.get("BENCH_E2E_REMOTE_RECORDS", "200000"))
REMOTE_LATENCY = 0.150
# max_concurrent_requests for the fanout runs (the plugin's default when unset).
CONCURRENCY = os.environ.get("BENCH_E2E_CONCURRENCY", "")
TIMEOUT = float(os.environ.get("BENCH_E2E_TIMEOUT", "900"))
# A subset of the runs, comma-separated (e.g. "core,fanout"), when iterating on one of them.
ONLY = [r for r in os.environ.get("BENCH_E2E_ONLY", "").split(",") if r]


# --- input -----------------------------------------------------------------------------------

def log_line(rng):
    line = (f'10.0.{rng.randrange(256)}.{rng.randrange(256)} - - [22/Nov/2026:09:{rng.randrange(60):02}:'
            f'{rng.randrange(60):02} +0000] "GET /api/v1/orders/{rng.randrange(1000000)} HTTP/1.1" '
            f'{rng.choice([200, 200, 200, 201, 404, 500])} {rng.randrange(50000)} trace={rng.getrandbits(64):016x}')
    while len(line) < 200:
        line += f" k{rng.randrange(50)}={rng.getrandbits(32):x}"
    return line[:200]


def write_records(path, count):
    """FireLens-shaped records: what the FireLens log router puts around each container line."""
    rng = random.Random(9)
    task = "arn:aws:ecs:us-east-1:123456789012:task/prod/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    with open(path, "w") as f:
        for n in range(count):
            service = SERVICES[n % len(SERVICES)]
            f.write(json.dumps({
                "container_id": "0f1e2d3c4b5a-" + service,
                "container_name": service,
                "source": "stdout",
                "log": log_line(rng),
                "ecs_cluster": "prod",
                "ecs_task_arn": task,
                "ecs_task_definition": f"{service}:42",
            }, separators=(",", ":")) + "\n")


# --- stand-ins -------------------------------------------------------------------------------

class QuietHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real intakes
    # Headers and body leave in one segment: otherwise Nagle's algorithm and the client's
    # delayed ACK add ~40 ms to every request and the run measures that instead.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def body(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.wire_bytes.get_lock():
            self.server.wire_bytes.value += len(data)
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            data = gzip.decompress(data)
        elif encoding == "zstd":
            # zstandard (PyPI), installed by `make bench`; only fanout's default sends zstd.
            import zstandard
            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        return data

    def reply(self, status, payload, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class DatadogHandler(QuietHandler):
    def do_POST(self):
        time.sleep(self.server.latency)
        entries = json.loads(self.body())
        with self.server.counter.get_lock():
            self.server.counter.value += len(entries)
        self.reply(202, b"{}", "application/json")


class FirehoseHandler(QuietHandler):
    def do_POST(self):
        time.sleep(self.server.latency)
        request = json.loads(self.body())
        records = request.get("Records", [])
        lines = 0
        for record in records:
            data = base64.b64decode(record["Data"])
            lines += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        with self.server.counter.get_lock():
            self.server.counter.value += lines
        # Compact separators: the core output looks for the literal `"FailedPutCount":0`.
        response = json.dumps({
            "FailedPutCount": 0, "Encrypted": False,
            "RequestResponses": [{"RecordId": f"r{i}"} for i in range(len(records))],
        }, separators=(",", ":")).encode()
        self.reply(200, response, "application/x-amz-json-1.1")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def serve(handler, counter, wire_bytes, port_out, tls, latency):
    server = Server(("127.0.0.1", 0), handler)
    server.counter = counter
    server.wire_bytes = wire_bytes
    server.latency = latency
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    port_out.value = server.server_address[1]
    server.serve_forever()


class StandIn:
    """A stand-in in its own process, counting the records it received."""

    def __init__(self, handler, tls=None, latency=0.0):
        self.counter = multiprocessing.Value("q", 0)
        self.wire_bytes = multiprocessing.Value("q", 0)
        port = multiprocessing.Value("i", 0)
        self.process = multiprocessing.Process(
            target=serve, args=(handler, self.counter, self.wire_bytes, port, tls, latency), daemon=True)
        self.process.start()
        deadline = time.time() + 10
        while port.value == 0:
            if time.time() > deadline:
                sys.exit("stand-in did not start")
            time.sleep(0.01)
        self.port = port.value

    def reset(self):
        with self.counter.get_lock():
            self.counter.value = 0
        with self.wire_bytes.get_lock():
            self.wire_bytes.value = 0

    @property
    def count(self):
        return self.counter.value

    def stop(self):
        self.process.terminate()


def free_port():
    with socketserver.TCPServer(("127.0.0.1", 0), None) as probe:
        return probe.server_address[1]


def make_ca_and_certificate(tmp):
    """A CA and a 127.0.0.1 server certificate it signs (a self-signed leaf is not a valid CA
    for rustls/webpki)."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ca_key, ca, key, csr, cert = (os.path.join(tmp, n) for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = os.path.join(tmp, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
            "-subj", "/CN=flb-fanout bench CA", "-keyout", ca_key, "-out", ca)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
            "-extfile", ext, "-out", cert)
    return ca, cert, key


# --- Fluent Bit configurations ---------------------------------------------------------------

SERVICE = """
[SERVICE]
    Flush        1
    Grace        5
    Log_Level    warn
    HTTP_Server  On
    HTTP_Listen  127.0.0.1
    HTTP_Port    {http_port}
    Parsers_File {parsers}
    {plugins}
[INPUT]
    Name          tail
    Path          {records}
    Tag           firelens
    Read_from_Head On
    Parser        json
    Buffer_Max_Size 1M
    Mem_Buf_Limit 32M
"""

NULL = """
[OUTPUT]
    Name  null
    Match *
"""

CORE = """
[OUTPUT]
    Name           datadog
    Match          *
    Host           127.0.0.1
    Port           {dd_port}
    TLS            off
    apikey         bench-api-key
    compress       gzip
    provider       ecs
    dd_service     bench
    dd_source      bench
    dd_tags        env:bench
    dd_message_key log
[OUTPUT]
    Name            kinesis_firehose
    Match           *
    region          us-east-1
    delivery_stream bench
    endpoint        127.0.0.1
    Port            {fh_port}
    tls.ca_file     {ca}
"""

FANOUT = """
[OUTPUT]
    Name            fanout
    Match           *
    destinations    datadog,firehose
    workers         1
    apikey          bench-api-key
    dd_url          http://127.0.0.1:{dd_port}
    provider        ecs
    dd_service      bench
    dd_source       bench
    dd_tags         env:bench
    region          us-east-1
    endpoint        https://127.0.0.1:{fh_port}
{concurrency}{firehose}
"""

FANOUT = FANOUT.replace("{concurrency}", f"    max_concurrent_requests {CONCURRENCY}\n" if CONCURRENCY else "")
FANOUT_SAME = "    delivery_stream bench\n"
FANOUT_DEPLOYED = "    delivery_stream logs-$container_name\n    simple_aggregation on\n"


def run(config, env, done, label):
    """Starts Fluent Bit, waits for `done()`, stops it; returns (cpu seconds, peak RSS MiB, wall)."""
    start = time.perf_counter()
    process = subprocess.Popen([FLUENT_BIT, "-c", config], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    try:
        while not done():
            if process.poll() is not None:
                sys.exit(f"{label}: Fluent Bit exited early:\n" + "".join(output[-30:]))
            if time.perf_counter() - start > TIMEOUT:
                sys.exit(f"{label}: not every record arrived within {TIMEOUT:.0f} s:\n" + "".join(output[-30:]))
            time.sleep(0.25)
        wall = time.perf_counter() - start
        process.send_signal(signal.SIGTERM)
    except BaseException:
        process.kill()
        raise
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join(timeout=5)
    # Input pauses (Mem_Buf_Limit) and the shutdown notice are the expected warnings.
    expected = ("will shutdown", "paused (mem buf overlimit", "resume (mem buf overlimit")
    problems = [line for line in output
                if ("[error]" in line or "[ warn]" in line) and not any(e in line for e in expected)]
    if problems:
        print(f"  ({label}: {len(problems)} warning/error lines, first: {problems[0].strip()})")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, wall


def main():
    if not FLUENT_BIT:
        print("end-to-end benchmark: FLUENT_BIT is not set (a Fluent Bit binary); skipped")
        return
    if not os.path.exists(PLUGIN):
        sys.exit(f"{PLUGIN} does not exist: run `make dist` first")
    with tempfile.TemporaryDirectory() as tmp:
        records = os.path.join(tmp, "records.json")
        write_records(records, RECORDS)
        size_mb = os.path.getsize(records) / 1e6
        ca, cert, key = make_ca_and_certificate(tmp)
        http_port = free_port()
        parsers = os.path.join(tmp, "parsers.conf")
        with open(parsers, "w") as f:
            f.write("[PARSER]\n    Name json\n    Format json\n")
        datadog = StandIn(DatadogHandler)
        firehose = StandIn(FirehoseHandler, tls=(cert, key))
        env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDBENCH", AWS_SECRET_ACCESS_KEY="bench-secret",
                   AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", SSL_CERT_FILE=ca)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
            env.pop(name, None)

        def delivered():
            return datadog.count >= RECORDS and firehose.count >= RECORDS

        def counted():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/v1/metrics", timeout=2) as r:
                    metrics = json.load(r)
            except OSError:
                return False
            return metrics["output"]["null.0"]["proc_records"] >= RECORDS

        plugins_conf = os.path.join(tmp, "plugins.conf")
        with open(plugins_conf, "w") as f:
            f.write(f"[PLUGINS]\n    Path {PLUGIN}\n")
        # A subset of the runs: only "remote" skips these.
        skip_local = bool(ONLY) and all(r == "remote" for r in ONLY)
        runs = [
            ("input only", NULL, False, counted),
            ("core", CORE, False, delivered),
            ("fanout", FANOUT.replace("{firehose}", FANOUT_SAME), True, delivered),
            ("fanout gzip", FANOUT.replace("{firehose}", FANOUT_SAME + "    compress gzip\n"), True, delivered),
            ("fanout zstd3", FANOUT.replace("{firehose}", FANOUT_SAME + "    compress_level 3\n"), True, delivered),
            ("fanout+agg", FANOUT.replace("{firehose}", FANOUT_DEPLOYED), True, delivered),
            ("fanout+ledger", FANOUT.replace("{firehose}", FANOUT_SAME + "    ledger_file {ledger}\n"),
             True, delivered),
        ]
        results = {}
        try:
            for label, outputs, uses_plugin, done in runs:
                if skip_local or (ONLY and label not in ONLY):
                    continue
                config = os.path.join(tmp, label.replace(" ", "_").replace("+", "_") + ".conf")
                plugins_line = f"plugins_file {plugins_conf}" if uses_plugin else ""
                with open(config, "w") as f:
                    f.write(SERVICE.format(parsers=parsers, plugins=plugins_line, records=records, http_port=http_port))
                    f.write(outputs.format(dd_port=datadog.port, fh_port=firehose.port, ca=ca,
                                           ledger=os.path.join(tmp, "fanout.ledger")))
                datadog.reset()
                firehose.reset()
                results[label] = run(config, env, done, label) + (datadog.count, firehose.count,
                                                                  datadog.wire_bytes.value)
        finally:
            datadog.stop()
            firehose.stop()

        remote = None
        if not ONLY or "remote" in ONLY:
            remote = remote_latency(tmp, parsers, plugins_conf, env, ca, cert, key, http_port)

    if results:
        print_local(results, size_mb)
    if remote:
        print_remote(remote)


def print_local(results, size_mb):
    print(f"End to end: {RECORDS} FireLens records ({size_mb:.0f} MB of JSON) through {FLUENT_BIT}, "
          "tail -> outputs -> local stand-ins (their CPU excluded):")
    print(f"  {'run':<13} {'CPU s':>7} {'peak RSS MiB':>13} {'wall s':>7} {'Datadog':>9} {'Firehose':>9}"
          f" {'Datadog MB sent':>16}")
    for label, (cpu, rss, wall, dd, fh, dd_bytes) in results.items():
        print(f"  {label:<13} {cpu:7.2f} {rss:13.1f} {wall:7.1f} {dd:9} {fh:9} {dd_bytes / 1e6:16.1f}")
    if "input only" not in results or "core" not in results:
        return
    base_cpu = results["input only"][0]
    core_cpu, core_rss = results["core"][0], results["core"][1]
    for label in ("fanout", "fanout gzip", "fanout zstd3", "fanout+agg", "fanout+ledger"):
        if label not in results:
            continue
        cpu, rss = results[label][0], results[label][1]
        print(f"  {label} vs core: CPU {cpu / core_cpu:.2f}x, peak RSS {rss / core_rss:.2f}x; "
              f"output CPU beyond the input {max(cpu - base_cpu, 0.01) / max(core_cpu - base_cpu, 0.01):.2f}x")
    for label in ("core", "fanout", "fanout gzip", "fanout zstd3", "fanout+agg"):
        if label not in results:
            continue
        dd, fh = results[label][3], results[label][4]
        if dd != RECORDS or fh != RECORDS:
            print(f"  note: {label} delivered {dd} to Datadog and {fh} to Firehose for {RECORDS} records "
                  "(more means resends)")


def remote_latency(tmp, parsers, plugins_conf, env, ca, cert, key, http_port):
    """core vs fanout against stand-ins 150 ms away: records per second."""
    records = os.path.join(tmp, "remote.json")
    write_records(records, REMOTE_RECORDS)
    datadog = StandIn(DatadogHandler, latency=REMOTE_LATENCY)
    firehose = StandIn(FirehoseHandler, tls=(cert, key), latency=REMOTE_LATENCY)

    def delivered():
        return datadog.count >= REMOTE_RECORDS and firehose.count >= REMOTE_RECORDS

    results = {}
    try:
        fanout = FANOUT.replace("{firehose}", FANOUT_SAME)
        for label, outputs, uses_plugin in [
            ("core", CORE, False),
            ("fanout", fanout, True),
            # As the shipped configs run it.
            ("fanout w2", fanout.replace("workers         1", "workers         2"), True),
        ]:
            config = os.path.join(tmp, f"remote_{label}.conf")
            plugins_line = f"plugins_file {plugins_conf}" if uses_plugin else ""
            with open(config, "w") as f:
                f.write(SERVICE.format(parsers=parsers, plugins=plugins_line, records=records, http_port=http_port))
                f.write(outputs.format(dd_port=datadog.port, fh_port=firehose.port, ca=ca))
            datadog.reset()
            firehose.reset()
            cpu, rss, wall = run(config, env, delivered, f"remote {label}")
            results[label] = (REMOTE_RECORDS / wall, wall, datadog.count, firehose.count)
    finally:
        datadog.stop()
        firehose.stop()
    return results


def print_remote(results):
    print(f"Remote latency: {REMOTE_RECORDS} records, both stand-ins answer after "
          f"{REMOTE_LATENCY * 1000:.0f} ms, one worker per output:")
    print(f"  {'run':<10} {'records/s':>10} {'wall s':>7} {'Datadog':>9} {'Firehose':>9}")
    for label, (rate, wall, dd, fh) in results.items():
        print(f"  {label:<10} {rate:10.0f} {wall:7.1f} {dd:9} {fh:9}")
    for label in ("fanout", "fanout w2"):
        if "core" in results and label in results:
            print(f"  {label} vs core throughput: {results[label][0] / results['core'][0]:.2f}x "
                  "(fanout sends at most 1000 entries per Datadog request; the core output whole chunks)")


if __name__ == "__main__":
    main()