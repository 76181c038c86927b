#!/usr/bin/python3
"""Stalled clients against the total send budget (docs/api.md section 7, stream.max_total_queue_bytes):
many SSE and WebSocket clients with tiny receive buffers that never read, and two healthy
readers, while readings arrive fast. The stalled ones are cut (furthest behind first), the
bytes queued over all streams stay within the budget, and the healthy readers receive every
reading, in order, without being cut. Usage: stall_test.py BUILD_DIR CASE
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

from bridge_system import System, check, cursor_id, metric, run_case

BUILD = sys.argv[1]
CASE = sys.argv[2]

BUDGET = 8 << 20        # 8 MiB over all streams (a fair share of ~130 KiB each)
PER_STREAM = 1 << 20    # 1 MiB each: 60 stalled streams alone could hold 60 MiB
CONF = f"""
[stream]
max_queue_bytes = {PER_STREAM}
max_queue_events = 100000
max_total_queue_bytes = {BUDGET}
write_timeout_s = 120
"""




def stalled_sse(sys_):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connect: a tiny window
    s.connect(("127.0.0.1", sys_.port))
    s.sendall(b"GET /api/v1/stream?topic=sensors/%23 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    read_until(s, b"retry:")  # the stream is live: what is published from now on is its to hold
    return s


def read_until(s, marker):
    got = b""
    while marker not in got:
        more = s.recv(1)
        check(more, f"the stream closed before {marker!r}: {got[:200]!r}")
        got += more
    return got


def stalled_ws(sys_):
    """A WebSocket client that subscribes to everything and never reads again."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.connect(("127.0.0.1", sys_.port))
    s.sendall(b"GET /api/v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = read_until(s, b"\r\n\r\n")
    check(b" 101 " in head.split(b"\r\n")[0], f"stalled WebSocket upgraded: {head[:60]}")
    payload = json.dumps({"op": "subscribe", "topic": "sensors/#"}).encode()
    mask = b"\x01\x02\x03\x04"
    frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(frame)
    read_until(s, b'"subscribed"')  # registered: from now on it is sent everything
    return s


class Reader:
    """A healthy SSE reader: curl, writing the stream to a file as fast as it arrives."""

    def __init__(self, sys_, n):
        self.path = os.path.join(sys_.dir, f"reader-{n}.sse")
        # after=0: every reading, however late the stream opens on a loaded machine.
        self.p = subprocess.Popen(["curl", "-sSN", "--no-buffer", "-o", self.path,
                                   f"http://127.0.0.1:{sys_.port}/api/v1/stream?topic=sensors/%23&after=0"])

    def opened(self):
        try:
            with open(self.path) as f:
                return f.read().startswith("retry:")
        except FileNotFoundError:
            return False

    def ids(self):
        with open(self.path, errors="replace") as f:
            return [cursor_id(line[4:]) for line in f.read().split("\n") if line.startswith("id: ")]

    def connected(self):
        return self.p.poll() is None

    def stop(self):
        self.p.terminate()
        self.p.wait(10)


async def case_budget(sys_):
    readers = [Reader(sys_, 0), Reader(sys_, 1)]
    stalled = [stalled_sse(sys_) for _ in range(40)] + [stalled_ws(sys_) for _ in range(20)]
    deadline = time.time() + 30
    while time.time() < deadline and not all(r.opened() for r in readers):
        time.sleep(0.05)
    check(all(r.opened() for r in readers), "the healthy readers' streams opened")
    # About 9 MB of events for every stream: far beyond what the stalled ones can absorb.
    unit = "x" * 20
    lines = [(f"sensors/s{i % 10}/m", json.dumps({"value": i, "unit": unit, "seq": i // 10}))
             for i in range(30000)]
    peak = 0
    done = threading.Event()

    def watch():
        nonlocal peak
        while not done.is_set():
            v = metric(sys_, "telemetry_stream_queued_bytes")
            peak = max(peak, v or 0)
            time.sleep(0.05)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    sys_.pub_many(lines)
    deadline = time.time() + 120  # sanitized builds on a busy machine are slow
    while time.time() < deadline and min(len(r.ids()) for r in readers) < len(lines):
        time.sleep(0.2)
    done.set()
    w.join()
    cut = metric(sys_, "telemetry_stream_budget_disconnects_total")
    for i, r in enumerate(readers):
        ids = r.ids()
        check(ids == list(range(1, len(lines) + 1)),
              f"healthy reader {i}: every reading once, in order ({len(ids)} of {len(lines)})")
        check(r.connected(), f"healthy reader {i} was never cut")
        r.stop()
    check(cut and cut > 0, f"stalled streams were cut by the total budget: {cut}")
    # Streams still making progress may pass the budget up to twice it, streams within their
    # fair share (together the budget) beyond that (send_budget.hpp), plus what each stream
    # queued since it last reported (16 KiB). Without the budget the stalled streams alone
    # would hold 60 MiB.
    bound = 2 * BUDGET + BUDGET + 62 * 16384
    check(0 < peak <= bound, f"queued bytes over all streams peaked at {peak} (bound {bound}, budget {BUDGET})")
    print(f"peak queued {peak} bytes, {cut} streams cut by the budget, "
          f"{metric(sys_, 'telemetry_stream_slow_disconnects_total')} slow disconnects in all")
    for s in stalled:
        s.close()


CASES = {"budget": (case_budget, CONF)}

if __name__ == "__main__":
    run_case("stall", CASES, BUILD, CASE)
