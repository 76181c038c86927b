#!/usr/bin/python3
"""The clients of the soak (bench/soak.sh): streaming clients (SSE and WebSocket, each following
one sensor), pollers (conditional GETs of a sensor's latest reading, and long polls), and churn
(streaming clients that leave, some without a goodbye, and come back resuming after the last id
they saw). Every SAMPLE_S seconds it writes one CSV row about the bridge: resident memory, open
descriptors, WAL size, and the latency (receipt time minus the reading's `ts`, set by sensor-sim
when it publishes) of the readings delivered in that interval. At the end it prints, for each
figure, the slope of a least-squares line over the samples after the warm-up, and whether that
line stays flat (rises less than FIGURES allows); exit 1 when one grows.

Usage: soak_driver.py --port P --pid PID --db DB_PATH --seconds S [options]; see --help.
"""
import argparse
import asyncio
import csv
import json
import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "integration"))
from bridge_system import rss_kib  # noqa: E402

import websockets


def now_ms():
    return time.time() * 1000.0


class Stats:
    def __init__(self):
        self.latencies = []    # ms, this interval
        self.delivered = 0     # readings, this interval
        self.errors = 0        # failed requests or streams, this interval
        self.requests = 0      # answered polls, this interval
        self.not_modified = 0  # of them, 304s
        self.streams = 0       # open streaming clients
        self.reconnects = 0    # churned streaming clients, in all

    def reading(self, r, since_ms):
        """A delivered reading; its latency counts when it was published after `since_ms` (the
        connection or request began): a back-filled one is not late."""
        self.delivered += 1
        if r.get("ts", 0) >= since_ms:
            self.latencies.append(now_ms() - r["ts"])


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))]


async def http_get(reader, writer, target, headers=None):
    """One request on a keep-alive connection: (status, headers, body bytes)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k:
            hdrs[k.strip().lower()] = v.strip()
    if hdrs.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.readexactly(int(hdrs.get("content-length", "0")))
    return status, hdrs, body


def cut(writer):
    """Closes with a reset: a client that vanished (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def sse_client(port, topic, after, stats, lifetime):
    """Follows `topic` (after id `after`, or from now when None) until `lifetime` s pass; returns
    the last id seen (where to resume)."""
    since = now_ms()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    last = after
    try:
        resume = "" if after is None else f"&after={after}"
        writer.write(f"GET /api/v1/stream?topic={topic}{resume} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if b" 200 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(head[:80])
        end = time.monotonic() + lifetime
        buf = b""
        while time.monotonic() < end:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), max(0.1, end - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if not chunk:
                raise RuntimeError("closed by the bridge")
            buf += chunk
            while b"\n\n" in buf:
                block, _, buf = buf.partition(b"\n\n")
                for line in block.split(b"\n"):
                    if line.startswith(b"data: "):
                        r = json.loads(line[6:])
                        if "id" in r:
                            stats.reading(r, since)
                            last = r["id"]
    finally:
        cut(writer) if random.random() < 0.5 else writer.close()
    return last


async def ws_client(port, topic, after, stats, lifetime):
    since = now_ms()
    # max_queue=None: a client that says goodbye reads on until the bridge's close frame, however
    # many readings come first (with a bounded queue its close would wait out close_timeout).
    conn = await websockets.connect(f"ws://127.0.0.1:{port}/api/v1/ws", open_timeout=30, compression=None,
                                    max_queue=None)
    last = after
    try:
        sub = {"op": "subscribe", "topic": topic}
        if after is not None:
            sub["after"] = after
        await conn.send(json.dumps(sub))
        end = time.monotonic() + lifetime
        while time.monotonic() < end:
            try:
                msg = json.loads(await asyncio.wait_for(conn.recv(), max(0.1, end - time.monotonic())))
            except asyncio.TimeoutError:
                break
            if msg.get("op") == "reading":
                stats.reading(msg, since)
                last = msg["id"]
    finally:
        if random.random() < 0.5:
            conn.transport.abort()
            await asyncio.wait_for(conn.wait_closed(), 10)
        else:
            await asyncio.wait_for(conn.close(), 10)
    return last


async def streamer(n, args, stats, churn_lifetime):
    """One streaming client slot: SSE for even n, WebSocket for odd; reconnects after its
    lifetime (churn) or an error, resuming after the last id it saw."""
    topic = f"sensors/sim-{n % args.sensors:04d}/%23"
    ws_topic = f"sensors/sim-{n % args.sensors:04d}/#"
    after = None
    first = True
    while True:
        lifetime = churn_lifetime() if not first else churn_lifetime() * random.random()
        first = False
        stats.streams += 1
        try:
            if n % 2 == 0:
                after = await sse_client(args.port, topic, after, stats, lifetime)
            else:
                after = await ws_client(args.port, ws_topic, after, stats, lifetime)
        except (OSError, RuntimeError, asyncio.IncompleteReadError, websockets.WebSocketException,
                asyncio.TimeoutError) as e:
            stats.errors += 1
            if args.verbose:
                print(f"stream {n}: {e!r}", file=sys.stderr)
            await asyncio.sleep(1)
        finally:
            stats.streams -= 1
        stats.reconnects += 1


async def poller(n, args, stats):
    """Even n: a conditional GET of a sensor's latest reading every 0.3-0.7 s (If-None-Match);
    odd n: long polls on one sensor, each resuming at the cursor of the last."""
    sensor = f"sim-{(n * 7) % args.sensors:04d}"
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
            etag, cursor = None, None
            try:
                while True:
                    if n % 2 == 0:
                        h = {"If-None-Match": etag} if etag else {}
                        status, hdrs, _ = await asyncio.wait_for(
                            http_get(reader, writer, f"/api/v1/sensors/{sensor}/temperature/latest", h), 30)
                        if status not in (200, 304):
                            raise RuntimeError(f"latest: {status}")
                        etag = hdrs.get("etag", etag)
                        stats.requests += 1
                        stats.not_modified += status == 304
                        await asyncio.sleep(0.4 * random.random() + 0.3)  # often within a second: 304s
                    else:
                        after = "" if cursor is None else f"&after={cursor}"
                        since = now_ms()
                        status, _, body = await asyncio.wait_for(
                            http_get(reader, writer, f"/api/v1/updates?topic=sensors/{sensor}/%23&timeout=20{after}"),
                            60)
                        if status != 200:
                            raise RuntimeError(f"long poll: {status}")
                        page = json.loads(body)
                        if cursor is not None:
                            for r in page.get("readings", []):
                                stats.reading(r, since)
                        cursor = page["cursor"]
                        stats.requests += 1
            finally:
                writer.close()
        except (OSError, RuntimeError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
            stats.errors += 1
            if args.verbose:
                print(f"poller {n}: {e!r}", file=sys.stderr)
            await asyncio.sleep(1)


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


FIGURES = [  # column, unit, what counts as flat: the fitted rise over the run stays under
    ("rss_kib", "KiB", lambda mean: max(0.10 * mean, 4096)),
    ("fds", "descriptors", lambda mean: max(0.10 * mean, 10)),
    ("wal_bytes", "bytes", lambda mean: max(0.25 * mean, 8 << 20)),
    ("p99_ms", "ms", lambda mean: max(0.50 * mean, 20)),
]


def slope(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx) if sxx else 0.0, my


def summarise(rows, warmup_s):
    """Prints one line per figure; returns True when every one stays flat."""
    kept = [r for r in rows if r["t_s"] >= warmup_s]
    if len(kept) < 3:
        print("soak: too few samples after the warm-up for a slope (run longer)")
        return False
    span = kept[-1]["t_s"] - kept[0]["t_s"]
    ok = True
    print(f"soak: {len(kept)} samples over {span:.0f} s after a {warmup_s:.0f} s warm-up")
    for col, unit, bound in FIGURES:
        pts = [(r["t_s"], r[col]) for r in kept if r[col] == r[col]]  # NaN: an interval without readings
        if len(pts) < 3:
            continue
        s, mean = slope([p[0] for p in pts], [p[1] for p in pts])
        change = s * span
        flat = change <= bound(mean)  # what falls (latency after a loaded start) is not a trend to fear
        ok = ok and flat
        print(f"  {col:10s} first {pts[0][1]:>12.1f}  last {pts[-1][1]:>12.1f}  mean {mean:>12.1f} {unit}; "
              f"slope {s * 3600:+.1f} {unit}/h, {change:+.1f} over the run: {'flat' if flat else 'GROWING'}")
    return ok


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="the bridge's process id")
    ap.add_argument("--db", required=True, help="the bridge's SQLite file (its -wal beside it is sampled)")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--sample-s", type=float, default=10)
    ap.add_argument("--sensors", type=int, default=200)
    ap.add_argument("--streams", type=int, default=500)
    ap.add_argument("--pollers", type=int, default=100)
    ap.add_argument("--churn-per-s", type=float, default=5, help="streaming clients leaving (and coming back) per second")
    ap.add_argument("--warmup-s", type=float, default=None, help="default: a sixth of the run, at most 300 s")
    ap.add_argument("--csv", required=True)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    warmup = args.warmup_s if args.warmup_s is not None else min(300.0, args.seconds / 6)

    stats = Stats()
    # Mean lifetime so that streams/lifetime = churn per second.
    mean_life = args.streams / args.churn_per_s if args.churn_per_s > 0 else 1e9
    churn_lifetime = lambda: random.expovariate(1.0 / mean_life) + 1.0
    tasks = []
    for n in range(args.streams):
        tasks.append(asyncio.ensure_future(streamer(n, args, stats, churn_lifetime)))
        if n % 50 == 49:
            await asyncio.sleep(0.2)
    for n in range(args.pollers):
        tasks.append(asyncio.ensure_future(poller(n, args, stats)))

    rows = []
    start = time.monotonic()
    with open(args.csv, "w", newline="") as f:
        cols = ["t_s", "rss_kib", "fds", "wal_bytes", "p50_ms", "p99_ms", "delivered", "polls", "not_modified",
                "streams_open", "reconnects", "errors"]
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        next_at = start + args.sample_s
        while time.monotonic() - start < args.seconds:
            await asyncio.sleep(max(0, next_at - time.monotonic()))
            next_at += args.sample_s
            lat, stats.latencies = stats.latencies, []
            row = {"t_s": round(time.monotonic() - start, 1), "rss_kib": rss_kib(args.pid),
                   "fds": len(os.listdir(f"/proc/{args.pid}/fd")), "wal_bytes": file_size(args.db + "-wal"),
                   "p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1),
                   "delivered": stats.delivered, "polls": stats.requests, "not_modified": stats.not_modified,
                   "streams_open": stats.streams, "reconnects": stats.reconnects, "errors": stats.errors}
            stats.delivered = stats.requests = stats.not_modified = stats.errors = 0
            rows.append(row)
            w.writerow(row)
            f.flush()
            print("soak: " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    flat = summarise(rows, warmup)
    # The clients go without a goodbye: the run is over, and a close handshake may wait seconds.
    for t in tasks:
        t.cancel()
    await asyncio.wait(tasks, timeout=5)
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
