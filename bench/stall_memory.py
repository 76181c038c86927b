#!/usr/bin/python3
"""Memory of stalled streams: STREAMS SSE clients with small receive buffers that never read, while
READINGS readings arrive, with the default send budget (256 MiB over all streams) and per-stream
queues of 4 MiB. Prints the bridge's peak resident memory, the peak bytes queued over all streams
(telemetry_stream_queued_bytes: what the clients are owed on the wire), and how many streams were
cut. Run it against two builds to compare (e.g. before and after a change to the stream queues).
Usage: bench/stall_memory.py [BUILD_DIR ...]   (default: this repository's build/)
Environment: STREAMS=1000 READINGS=30000 ROUNDS=1 (builds alternate round by round)."""
import json
import os
import socket
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from bridge_system import System, metric, rss_kib  # noqa: E402

BUILDS = sys.argv[1:] or [os.path.join(REPO, "build")]
STREAMS = int(os.environ.get("STREAMS", 1000))
READINGS = int(os.environ.get("READINGS", 30000))
ROUNDS = int(os.environ.get("ROUNDS", 1))
CONF = f"""
[http]
max_connections = {STREAMS + 100}
max_connections_per_address = {STREAMS + 100}
[stream]
max_queue_bytes = {4 << 20}
max_queue_events = 1000000
write_timeout_s = 600
"""


def stalled_sse(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /api/v1/stream?topic=sensors/%23 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return s


def one_round(build):
    sys_ = System(build, CONF)
    try:
        streams = [stalled_sse(sys_.port) for _ in range(STREAMS)]
        time.sleep(2)
        base = rss_kib(sys_.bridge.pid)
        lines = [(f"sensors/s{i % 100}/temperature", json.dumps({"value": i, "unit": "Cel", "seq": i // 100}))
                 for i in range(READINGS)]
        peak = {"rss": base, "queued": 0}
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak["rss"] = max(peak["rss"], rss_kib(sys_.bridge.pid))
                peak["queued"] = max(peak["queued"], metric(sys_, "telemetry_stream_queued_bytes") or 0)
                time.sleep(0.1)

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        t0 = time.time()
        sys_.pub_many(lines)
        deadline = time.time() + 120
        while time.time() < deadline and (metric(sys_, "telemetry_readings_stored_total") or 0) < READINGS:
            time.sleep(0.2)
        time.sleep(3)  # fan-out of the last commits
        done.set()
        w.join()
        cut = metric(sys_, "telemetry_stream_slow_disconnects_total")
        print(f"{build}: {STREAMS} stalled SSE streams, {READINGS} readings in {time.time() - t0:.1f} s: "
              f"RSS {base / 1024:.1f} MB -> peak {peak['rss'] / 1024:.1f} MB; "
              f"queued bytes peak {peak['queued'] / 1e6:.1f} MB; {cut} streams cut", flush=True)
        for s in streams:
            s.close()
        return peak["rss"] - base
    finally:
        sys_.stop()


if __name__ == "__main__":
    growth = {b: [] for b in BUILDS}
    for _ in range(ROUNDS):
        for b in BUILDS:
            growth[b].append(one_round(b))
    for b, g in growth.items():
        g.sort()
        print(f"{b}: RSS growth per round {[round(x / 1024, 1) for x in g]} MB, median {g[len(g) // 2] / 1024:.1f} MB")
