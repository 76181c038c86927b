#!/usr/bin/python3
"""Client failover between replicas (docs/api.md section 14) with third-party clients: two bridges
on one PostgreSQL database and one MQTT shared subscription; a long-poll client that alternates
between them and a WebSocket client (python3-websockets) that resumes on the other replica with
`after` both see every reading once, in id order, and live readings keep coming.
Usage: replicas_failover.py BUILD_DIR
"""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import websockets

from bridge_system import System, check, free_port, wait_port

BUILD = sys.argv[1]
PG_BIN = "/usr/lib/postgresql/15/bin"
ROOT = os.geteuid() == 0


class Cluster:
    """A throwaway PostgreSQL 15 cluster on a free loopback port (as the postgres user when run as
    root: the server refuses root), killed with the test."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="telemetry-pg-")
        self.proc = None
        as_pg = ["runuser", "-u", "postgres", "--"] if ROOT else []
        if ROOT:
            shutil.chown(self.dir, "postgres")
        subprocess.run(as_pg + [f"{PG_BIN}/initdb", "-D", f"{self.dir}/data", "-U", "postgres", "--auth=trust",
                                "--no-sync", "--no-locale", "-E", "UTF8"], check=True, capture_output=True)
        self.port = free_port()
        run_as = (["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--pdeathsig=KILL", "--"]
                  if ROOT else [])
        self.proc = subprocess.Popen(run_as + [f"{PG_BIN}/postgres", "-D", f"{self.dir}/data", "-p", str(self.port),
                                               "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                                               "-c", "fsync=off"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        check(wait_port(self.port, 30), "PostgreSQL listens")
        deadline = time.time() + 30
        while subprocess.run([f"{PG_BIN}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode:
            check(time.time() < deadline, "PostgreSQL is ready")
            time.sleep(0.1)
        subprocess.run([f"{PG_BIN}/psql", "-X", "-q", "-d", self.url("postgres"), "-c", "CREATE DATABASE failover"],
                       check=True)

    def url(self, db="failover"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def replica_conf(name, url):
    return (f'[mqtt]\nclient_id = "{name}"\nshared_group = "failover"\n'
            f'[storage]\nengine = "postgresql"\nurl = "{url}"\nretention_days = 0\n')


def updates(sys_, after, limit):
    status, _, body = sys_.request(f"/api/v1/updates?timeout=0&after={after}&limit={limit}")
    check(status == 200, f"updates {status} {body[:200]!r}")
    return json.loads(body)


def everything(sys_):
    got, after = [], 0
    while True:
        doc = updates(sys_, after, 10000)
        got += doc["readings"]
        if not doc["readings"]:
            return got
        after = doc["cursor"]


def wait_all(replicas, n):
    deadline = time.time() + 60
    while time.time() < deadline:
        if all(len(everything(r)) >= n for r in replicas):
            return
        time.sleep(0.1)
    raise AssertionError(f"not every replica serves {n} readings: {[len(everything(r)) for r in replicas]}")


def lines(first, last):
    return [(f"sensors/s{i % 4}/t", json.dumps({"value": i, "seq": i})) for i in range(first, last)]


async def ws_readings(ws, n, timeout=30):
    got = []
    end = time.time() + timeout
    while len(got) < n:
        m = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, end - time.time())))
        if m["op"] == "reading":
            got.append(m)
    return got


async def failover(a, b):
    a.pub_many(lines(0, 400))
    wait_all([a, b], 400)
    want = [r["id"] for r in everything(a)]
    check(want == sorted(want) and len(set(want)) == 400, "replica A serves 400 readings in id order")
    check([r["id"] for r in everything(b)] == want, "replica B serves the same ids")

    # Long polling, alternating replicas with the cursor each answer gives.
    seen, after, turn = [], 0, 0
    while len(seen) < len(want):
        doc = updates((a, b)[turn % 2], after, 37)
        seen += [r["id"] for r in doc["readings"]]
        after = doc["cursor"]
        turn += 1
        check(turn < 100, "long polling makes progress")
    check(seen == want, f"alternating long polls: no gap, no duplicate ({len(seen)} of {len(want)})")

    # WebSocket: part of the replay on A, the rest (and live readings) on B, resumed with `after`.
    async with websockets.connect(f"ws://127.0.0.1:{a.port}/api/v1/ws") as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": "sensors/#", "after": 0}))
        first = await ws_readings(ws, 150)
    last = first[-1]["id"]
    async with websockets.connect(f"ws://127.0.0.1:{b.port}/api/v1/ws") as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": "sensors/#", "after": last}))
        rest = await ws_readings(ws, len(want) - 150)
        a.pub_many(lines(400, 450))  # live, through either replica's ingest
        live = await ws_readings(ws, 50)
    ids = [m["id"] for m in first + rest]
    check(ids == want, f"WebSocket resumed on the other replica: no gap, no duplicate ({len(ids)})")
    live_ids = [m["id"] for m in live]
    check(live_ids == sorted(live_ids) and live_ids[0] > want[-1] and {m["value"] for m in live} == set(range(400, 450)),
          "live readings on the resumed WebSocket, once each, in id order")


def main():
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(var, None)
    pg = Cluster()
    a = b = None
    try:
        a = System(BUILD, replica_conf("replica-a", pg.url()))
        # Replica B: the same broker and database, its own client id, journal and port.
        b = System(BUILD, replica_conf("replica-b", pg.url()), mqtt_port=a.mqtt_port)
        asyncio.run(failover(a, b))
        print("replicas failover: 1 passed, 0 failed")
    except Exception as e:
        print(f"replicas failover: FAILED: {e!r}")
        for s in (a, b):
            if s is not None:
                print(open(os.path.join(s.dir, "bridge.err")).read()[-2000:])
        sys.exit(1)
    finally:
        for s in (b, a):
            if s is not None:
                s.stop()
        pg.stop()


if __name__ == "__main__":
    main()
