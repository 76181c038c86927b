#!/usr/bin/python3
"""gRPC Subscribe against SSE on the same bridge in one run: N streams of one transport, then N of
the other, each receiving every reading published at R readings/s; per phase the end-to-end
latency (MQTT publish -> Mosquitto -> bridge commit -> stream -> this client) p50/p99/max and the
bridge's CPU seconds per 1,000 deliveries. Clients: Debian's python3-grpcio (grpc.aio) and raw
asyncio sockets for SSE, in this one process; the publisher is mosquitto_pub -l, fed at the rate,
with `seq` = the publish time in microseconds (the bridge passes it through).

The client is Python: above some 10,000-20,000 deliveries/s it, not the bridge, is the limit
(compare `client_cpu_s` with the window). Usage:
  bench/grpc_vs_sse.py [--build DIR] [--streams N] [--rate R] [--duration S] [--sensors K]
"""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from bridge_system import System  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--build", default=os.path.join(REPO, "build"))
ap.add_argument("--streams", type=int, default=1000)
ap.add_argument("--rate", type=float, default=10, help="readings per second in total")
ap.add_argument("--duration", type=float, default=20)
ap.add_argument("--warmup", type=float, default=3)
ap.add_argument("--sensors", type=int, default=10)
ap.add_argument("--order", default="grpc,sse")
args = ap.parse_args()

sys.path.insert(0, os.path.join(args.build, "proto", "python"))
import grpc  # noqa: E402
from telemetry.v1 import telemetry_pb2 as pb  # noqa: E402
from telemetry.v1 import telemetry_pb2_grpc as pb_grpc  # noqa: E402

STREAMS_PER_CHANNEL = 100  # HTTP/2 connections: one per 100 gRPC streams


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def now_us():
    return time.time_ns() // 1000


class Collector:
    def __init__(self):
        self.lat = []
        self.count = 0
        self.measuring = False

    def got(self, seq):
        self.count += 1
        if self.measuring:
            self.lat.append(now_us() - seq)


async def grpc_streams(port, n, col, ready):
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.enable_http_proxy", 0)])
                for _ in range((n + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)]

    async def one(i):
        call = pb_grpc.TelemetryStub(channels[i // STREAMS_PER_CHANNEL]).Subscribe(pb.SubscribeRequest(topics=["#"]))
        await call.initial_metadata()
        ready.append(1)
        async for ev in call:
            if ev.WhichOneof("kind") == "reading":
                col.got(ev.reading.seq)

    return [asyncio.ensure_future(one(i)) for i in range(n)], channels


async def sse_streams(port, n, col, ready):
    async def one():
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /api/v1/stream?topic=%23 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += await r.read(65536)
        buf = buf.split(b"\r\n\r\n", 1)[1]
        ready.append(1)
        while True:
            chunk = await r.read(262144)
            if not chunk:
                return
            buf += chunk
            *events, buf = buf.split(b"\n\n")
            for e in events:
                if e.startswith(b"id: "):  # only readings carry an id
                    col.got(json.loads(e.split(b"\ndata: ", 1)[1])["seq"])

    return [asyncio.ensure_future(one()) for _ in range(n)], []


def publisher(sys_, rate, seconds, stop):
    """mosquitto_pub -l per sensor topic would need K processes; one topic per process keeps it
    simple: K processes, each at rate/K."""
    per = rate / args.sensors
    procs = [subprocess.Popen(["mosquitto_pub", "-p", str(sys_.mqtt_port), "-q", "1", "-t",
                               f"sensors/bench{k}/temperature", "-l"], stdin=subprocess.PIPE, text=True)
             for k in range(args.sensors)]
    start = time.time()
    sent = 0
    while not stop.is_set() and time.time() - start < seconds:
        due = int((time.time() - start) * per)
        while sent < due:
            for p in procs:
                p.stdin.write(json.dumps({"value": 21.5, "seq": now_us()}) + "\n")
                p.stdin.flush()
            sent += 1
        time.sleep(0.001)
    for p in procs:
        p.stdin.close()
        p.wait()
    return sent * args.sensors


async def phase(sys_, kind, grpc_port):
    col, ready = Collector(), []
    opener = grpc_streams if kind == "grpc" else sse_streams
    tasks, channels = await opener(grpc_port if kind == "grpc" else sys_.port, args.streams, col, ready)
    t0 = time.time()
    while len(ready) < args.streams and time.time() - t0 < 120:
        await asyncio.sleep(0.1)
    connect_s = time.time() - t0
    stop = threading.Event()
    total_s = args.warmup + args.duration
    result = {}

    def run_pub():
        result["published"] = publisher(sys_, args.rate, total_s, stop)

    th = threading.Thread(target=run_pub)
    th.start()
    await asyncio.sleep(args.warmup)
    col.measuring = True
    c0, b0, n0 = time.process_time(), cpu_s(sys_.bridge.pid), col.count
    await asyncio.sleep(args.duration)
    c1, b1, n1 = time.process_time(), cpu_s(sys_.bridge.pid), col.count
    col.measuring = False
    while th.is_alive():
        await asyncio.sleep(0.1)
    await asyncio.sleep(2)
    for t in tasks:
        t.cancel()
    for c in channels:
        await c.close()
    lat = sorted(col.lat)
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000 if lat else float("nan")  # noqa: E731
    expected = result["published"] * args.streams
    delivered = n1 - n0
    print(f"RESULT transport={kind} streams={len(ready)} connect_s={connect_s:.1f} rate={args.rate:.0f} "
          f"window_s={args.duration:.0f} deliveries={delivered} per_s={delivered / args.duration:.0f} "
          f"received_total={col.count} expected_total={expected} "
          f"p50_ms={q(0.5):.1f} p99_ms={q(0.99):.1f} max_ms={q(1.0):.1f} "
          f"bridge_cpu_s={b1 - b0:.2f} bridge_cpu_ms_per_1000={1e6 * (b1 - b0) / max(1, delivered):.1f} "
          f"client_cpu_s={c1 - c0:.2f}", flush=True)


async def main():
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(var, None)
    conf = '[grpc]\nlisten = "127.0.0.1:0"\n[http]\nmax_connections_per_address = 100000\n'
    sys_ = System(args.build, conf)
    try:
        sys_.out.seek(0)
        grpc_port = int(sys_.out.read().split("serving grpc 127.0.0.1:")[1].split()[0])
        for kind in args.order.split(","):
            await phase(sys_, kind, grpc_port)
        slow = [l for l in open(os.path.join(sys_.dir, "bridge.err")) if "behind" in l]
        print(f"slow-client disconnects logged: {len(slow)}")
    finally:
        sys_.stop()


asyncio.run(main())
