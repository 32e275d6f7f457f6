"""Ingest throughput of the local Segment emulator over loopback.

Client processes post pre-built batches (about 800 Braze-shaped track calls, just under
Segment's 500 KB per request) with keep-alive connections to a real emulator subprocess, plain
and gzip. The baseline, run in the same session, is a stdlib ``ThreadingHTTPServer`` sink that
reads each body and answers 200 without parsing it: the ratio says how the emulator compares
to the simplest Python HTTP server doing no work at all. The store flush (Parquet writing) is
timed separately. Sustained: a fresh emulator with its own flush policy (a forked flush every
200k buffered events or 5 s) takes the posts, clocked until the last flush has written them.

    uv run --frozen --no-sync python bench/bench_emulator.py [--events 100000] [--runs 3]

Writes ``bench/results/emulator.json``.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from benchlib import machine
from currents_segment.emulator import running_emulator

WRITE_KEY = "bench-write-key-000"
CONFIG = {
    "flush_interval_seconds": 3600,  # the accept runs flush explicitly, timed on their own
    "flush_every_events": 10_000_000,
    "workspaces": [
        {
            "name": "bench",
            "region": "us",
            "sources": [{"slug": "braze_bench", "write_key": WRITE_KEY}],
        }
    ],
}
EVENTS = ("Email Sent", "Email Delivered", "Email Opened", "Email Link Clicked", "SMS Sent")
RESULTS = Path(__file__).parent / "results" / "emulator.json"


def build_batches(run_tag: str, n_events: int, per_batch: int, gzipped: bool) -> list[bytes]:
    """Braze-shaped track calls (about 540 bytes each) in batches of ``per_batch``."""
    bodies = []
    for start in range(0, n_events, per_batch):
        batch = []
        for i in range(start, min(start + per_batch, n_events)):
            batch.append(
                {
                    "messageId": f"{run_tag}-{i:09d}-f47ac10b-58cc-4372-a567-0e02b2c3d479",
                    "type": "track",
                    "event": EVENTS[i % len(EVENTS)],
                    "userId": f"ext-{i % 5000}",
                    "anonymousId": f"5f9b2c3d4e5f6a7b8c9d{i % 5000:04d}",
                    "timestamp": "2034-06-14T09:48:24Z",
                    "context": {
                        "traits": {"email": f"user{i % 5000}@example.com"},
                        "library": {"name": "currents-segment", "version": "0.1.0"},
                    },
                    "properties": {
                        "app_group_id": "8ed9a3ee-4c5a-4b0e-8b2e-2b7f3d2f1c11",
                        "campaign_id": "7f5c1f0a-2e7e-4c4b-9b8d-0b9a1c2d3e4f",
                        "campaign_name": "Spring launch",
                        "message_variation_id": "0c2a3b4d-5e6f-4a1b-8c9d-0e1f2a3b4c5d",
                        "dispatch_id": f"dispatch-{i % 97}",
                        "send_id": None,
                        "ip_pool": "pool-a",
                    },
                }
            )
        body = orjson.dumps({"batch": batch, "sentAt": "2034-06-14T09:50:00Z"})
        bodies.append(gzip.compress(body, 1) if gzipped else body)
    return bodies


def _client(url: str, bodies: list[bytes], gzipped: bool, start: mp.Event, out: mp.Queue) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    headers = {
        "Content-Type": "application/json",
        "Authorization": "Basic "
        + __import__("base64").b64encode(f"{WRITE_KEY}:".encode()).decode(),
    }
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    start.wait()
    bad = 0
    for body in bodies:
        conn.request("POST", parts.path + "/v1/batch", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        bad += response.status != 200
    conn.close()
    out.put(bad)


def post_all(url: str, bodies: list[bytes], clients: int, gzipped: bool) -> float:
    """Seconds to post every body from ``clients`` processes (keep-alive each)."""
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_client, args=(url, bodies[i::clients], gzipped, start, out))
        for i in range(clients)
    ]
    for p in procs:
        p.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    start.set()
    bad = sum(out.get() for _ in procs)
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    if bad:
        raise SystemExit(f"{bad} requests were not answered 200")
    return elapsed


SINK = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    class Sink(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b'{"success":true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process and its finished children (forked store flushes) have
    used (Linux /proc), contention-independent."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--per-batch", type=int, default=800)
    parser.add_argument("--name", default="emulator", help="bench/results/<name>.json")
    args = parser.parse_args()
    results_path = RESULTS.with_name(f"{args.name}.json")

    load_before = os.getloadavg()[0]
    results: dict[str, object] = {
        "command": "uv run --frozen --no-sync python bench/bench_emulator.py "
        + " ".join(sys.argv[1:]),
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "events_per_run": args.events,
        "events_per_batch": args.per_batch,
        "clients": args.clients,
        "runs": args.runs,
    }
    sample = build_batches("size", args.per_batch, args.per_batch, False)[0]
    results["batch_bytes"] = len(sample)
    results["event_bytes_avg"] = round(len(sample) / args.per_batch)

    # Baseline: a stdlib HTTP server that parses nothing.
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    try:
        port = int(sink.stdout.readline())
        bodies = build_batches("sink", args.events, args.per_batch, False)
        sink_times = [
            post_all(f"http://127.0.0.1:{port}", bodies, args.clients, False)
            for _ in range(args.runs)
        ]
    finally:
        sink.terminate()
        sink.wait(10)
    sink_rate = args.events / statistics.median(sink_times)
    results["baseline_stdlib_sink_events_per_s"] = round(sink_rate)

    with tempfile.TemporaryDirectory() as tmp, running_emulator(CONFIG, Path(tmp) / "store") as emu:
        for gzipped in (False, True):
            label = "gzip" if gzipped else "plain"
            times, flush_times, ingest_cpu, flush_cpu = [], [], [], []
            for run in range(args.runs):
                bodies = build_batches(f"{label}{run}", args.events, args.per_batch, gzipped)
                c0 = cpu_seconds(emu.pid)
                times.append(post_all(emu.url, bodies, args.clients, gzipped))
                c1 = cpu_seconds(emu.pid)
                t0 = time.perf_counter()
                written = emu.flush()
                flush_times.append(time.perf_counter() - t0)
                ingest_cpu.append(c1 - c0)
                flush_cpu.append(cpu_seconds(emu.pid) - c1)
                if written.get("braze_bench.tracks") != args.events:
                    raise SystemExit(f"expected {args.events} kept, flush wrote {written}")
            rate = args.events / statistics.median(times)
            results[f"{label}_events_per_s"] = round(rate)
            results[f"{label}_seconds"] = [round(t, 3) for t in times]
            results[f"{label}_ratio_vs_baseline"] = round(rate / sink_rate, 2)
            results[f"{label}_flush_rows_per_s"] = round(
                2 * args.events / statistics.median(flush_times)  # tracks + per-event rows
            )
            # The emulator's own CPU per event: what one core can take, whatever the load of
            # the machine (wall-clock rates here depend on the other processes sharing it).
            results[f"{label}_events_per_server_cpu_s"] = round(
                args.events / statistics.median(ingest_cpu)
            )
            results[f"{label}_flushed_events_per_server_cpu_s"] = round(
                args.events / statistics.median(flush_cpu)
            )
        stats = emu.stats()
        assert stats["events_kept"] == 2 * args.runs * args.events, stats
    # Sustained: the emulator's own flush policy (every 200k buffered events, or 5 s) while
    # the clients post, clocked until the last rows are in the store.
    sustained_events = max(2 * args.events, 400_000)
    results["sustained_events"] = sustained_events
    sustained_config = {k: v for k, v in CONFIG.items() if not k.startswith("flush_")}
    for gzipped in (False, True):
        label = "gzip" if gzipped else "plain"
        times, cpu = [], []
        for run in range(args.runs):
            bodies = build_batches(f"s{label}{run}", sustained_events, args.per_batch, gzipped)
            with (
                tempfile.TemporaryDirectory() as tmp,
                running_emulator(sustained_config, Path(tmp) / "store") as emu,
            ):
                c0 = cpu_seconds(emu.pid)
                t0 = time.perf_counter()
                post_all(emu.url, bodies, args.clients, gzipped)
                emu.flush()
                times.append(time.perf_counter() - t0)
                cpu.append(cpu_seconds(emu.pid) - c0)
                kept = emu.stats()["rows_written"]
            if kept != 2 * sustained_events:  # tracks + per-event rows
                raise SystemExit(
                    f"sustained run stored {kept} rows, expected {2 * sustained_events}"
                )
        results[f"{label}_sustained_events_per_s"] = round(
            sustained_events / statistics.median(times)
        )
        results[f"{label}_sustained_events_per_server_cpu_s"] = round(
            sustained_events / statistics.median(cpu)
        )
    results["load_average_1min_before_after"] = [
        round(load_before, 2),
        round(os.getloadavg()[0], 2),
    ]
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
