#!/usr/bin/python3
"""Epochs (docs/api.md 2.1): cursors carry the database they belong to; `broker-bridge backup`
copies a live database, `restore` (refused while a bridge runs on it) gives it a new epoch, and a
cursor from before the restore gets an epoch reset on long polling, SSE and WebSocket, then every
stored reading once. A second bridge on the same database is refused.
Usage: epoch_test.py BUILD_DIR CASE
"""
import asyncio
import json
import os
import re
import subprocess
import sys
import time

import websockets

from bridge_system import SSE, System, check, cursor_id, run_case

BUILD = sys.argv[1]
CASE = sys.argv[2]
BRIDGE = os.path.join(BUILD, "broker-bridge", "broker-bridge")
CURSOR = re.compile(r"^(\d+)@([0-9a-f]{8})$")


def poll(sys_, after, limit=1000):
    s, _, body = sys_.request(f"/api/v1/updates?after={after}&timeout=0&limit={limit}")
    check(s == 200, f"updates after {after}: {s} {body!r}")
    return json.loads(body)


def committed(sys_, n):
    deadline = time.time() + 30
    while time.time() < deadline:
        if cursor_id(poll(sys_, "0")["cursor"]) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{n} readings not committed")


def storage_command(sys_, *args):
    db = os.path.join(sys_.dir, "bridge.db")
    return subprocess.run([BRIDGE, *args, "--db", db], capture_output=True, text=True, timeout=60)


def first_events(sse, n):
    out = []
    while len(out) < n:
        ev = sse.next(10)
        check(ev is not None, f"event {len(out) + 1} of {n} arrives (got {out})")
        out.append(ev)
    return out


async def ws_replay(sys_, subscribe, n):
    async with websockets.connect(sys_.url(), open_timeout=10) as ws:
        await ws.send(json.dumps(subscribe))
        got = []
        while len(got) < n:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        return got


def case_backup_restore(sys_):
    for i in range(5):
        sys_.pub(f"sensors/s{i % 2}/temperature", str(20 + i))
    committed(sys_, 5)

    # Every cursor handed out names the epoch: long polling, SSE ids, WebSocket `subscribed`.
    cursor = poll(sys_, "0")["cursor"]
    m = CURSOR.match(cursor)
    check(m and m.group(1) == "5", f"a long poll's cursor is N@E: {cursor!r}")
    old_epoch = m.group(2)
    sse = SSE(sys_, "/api/v1/stream?after=3")
    ids = [ev["id"] for ev in first_events(sse, 2)]
    sse.close()
    check(ids == [f"4@{old_epoch}", f"5@{old_epoch}"], f"SSE ids carry the epoch: {ids}")
    sub = asyncio.run(ws_replay(sys_, {"op": "subscribe", "topic": "#"}, 1))[0]
    check(sub["op"] == "subscribed" and sub["cursor"] == f"5@{old_epoch}" and sub["epoch"] == old_epoch,
          f"WebSocket subscribed: {sub}")

    # A live backup, then more readings that the backup does not hold.
    backup = os.path.join(sys_.dir, "backup.db")
    r = storage_command(sys_, "backup", "--to", backup)
    check(r.returncode == 0, f"backup exits 0: {r.returncode} {r.stderr}")
    check(f"5 readings, newest id 5, epoch {old_epoch}" in r.stdout, f"backup says what it copied: {r.stdout!r}")
    check(not any(f.startswith(".backup.db.tmp") for f in os.listdir(sys_.dir)), "no temporary file left")
    r = storage_command(sys_, "backup", "--to", os.path.join(sys_.dir, "bridge.db"))
    check(r.returncode == 1 and "which is the database" in r.stderr, f"a backup over the live database is refused: {r.stderr}")
    for i in range(5, 8):
        sys_.pub(f"sensors/s{i % 2}/temperature", str(20 + i))
    committed(sys_, 8)
    late = poll(sys_, "5")["cursor"]
    check(cursor_id(late) == 8, f"cursor after the backup: {late}")

    # Restore is refused while the bridge runs on the database, and a second bridge is too.
    r = storage_command(sys_, "restore", "--from", backup)
    check(r.returncode == 1 and "in use by another process" in r.stderr, f"restore refused while running: {r.returncode} {r.stderr}")
    second = subprocess.run([BRIDGE, "--db", os.path.join(sys_.dir, "bridge.db"), "--http", "127.0.0.1:0",
                             "--mqtt", f"tcp://127.0.0.1:{sys_.mqtt_port}"], capture_output=True, text=True, timeout=60)
    check(second.returncode == 1 and "in use by another process" in second.stderr,
          f"a second bridge on the same database stops: {second.returncode} {second.stderr[-500:]}")
    check(cursor_id(poll(sys_, "0")["cursor"]) == 8, "the running bridge is untouched")

    # Stopped: the restore replaces the database and renews the epoch.
    sys_.bridge.terminate()
    sys_.bridge.wait(20)
    bad = os.path.join(sys_.dir, "not-a-backup.db")
    with open(bad, "wb") as f:
        f.write(b"this is not an SQLite database" * 100)
    r = storage_command(sys_, "restore", "--from", bad)
    check(r.returncode == 1 and "restore failed" in r.stderr, f"a damaged backup is refused: {r.returncode} {r.stderr}")
    r = storage_command(sys_, "restore", "--from", backup)
    check(r.returncode == 0, f"restore exits 0: {r.returncode} {r.stderr}")
    m = re.search(r"5 readings, newest id 5, epoch ([0-9a-f]{8})", r.stdout)
    check(m and m.group(1) != old_epoch, f"restore says what it restored, with a new epoch: {r.stdout!r}")
    check("set aside " + os.path.join(sys_.dir, "bridge.db.ingest-journal.pre-restore") in r.stdout,
          f"restore sets the replaced database's journal aside: {r.stdout!r}")
    new_epoch = m.group(1)
    sys_.start_bridge()

    # Long polling: the cursor from before the restore gets an epoch reset, then readings 1-5.
    doc = poll(sys_, late)
    check(doc.get("reset") == {"reason": "epoch", "after": 8, "oldest_id": 1, "epoch": new_epoch},
          f"long poll: epoch reset {doc.get('reset')}")
    check([x["id"] for x in doc["readings"]] == [1, 2, 3, 4, 5], f"long poll: every stored reading {doc['readings']}")
    check(doc["cursor"] == f"5@{new_epoch}", f"long poll: a cursor of the new epoch {doc['cursor']}")
    # A cursor of the current epoch, or a bare id, resumes as always, with no reset.
    doc = poll(sys_, f"2@{new_epoch}")
    check("reset" not in doc and [x["id"] for x in doc["readings"]] == [3, 4, 5], f"same epoch: {doc}")
    doc = poll(sys_, "2")
    check("reset" not in doc and [x["id"] for x in doc["readings"]] == [3, 4, 5], f"bare id: {doc}")
    for bad_cursor in ("2@", "2@xyz", "x2", "2@123456789", "-2"):
        s, _, body = sys_.request(f"/api/v1/updates?after={bad_cursor}&timeout=0")
        check(s == 400 and b"bad_parameter" in body, f"malformed cursor {bad_cursor!r}: {s} {body!r}")

    # SSE resuming with the old Last-Event-ID: the reset, then readings 1-5 with new-epoch ids.
    sse = SSE(sys_, "/api/v1/stream", {"Last-Event-ID": late})
    evs = first_events(sse, 6)
    sse.close()
    check(evs[0]["event"] == "reset" and json.loads(evs[0]["data"]) ==
          {"reason": "epoch", "after": 8, "oldest_id": 1, "epoch": new_epoch}, f"SSE: epoch reset first {evs[0]}")
    check([e["id"] for e in evs[1:]] == [f"{i}@{new_epoch}" for i in range(1, 6)], f"SSE: every stored reading {evs[1:]}")

    # WebSocket with the old cursor, as a string or as an id and its epoch.
    for sub in ({"op": "subscribe", "topic": "#", "after": late},
                {"op": "subscribe", "topic": "#", "after": 8, "epoch": old_epoch}):
        got = asyncio.run(ws_replay(sys_, sub, 7))
        check(got[0]["op"] == "subscribed" and got[0]["epoch"] == new_epoch, f"WebSocket subscribed: {got[0]}")
        check(got[1] == {"op": "reset", "topic": "#", "reason": "epoch", "after": 8, "oldest_id": 1, "epoch": new_epoch},
              f"WebSocket: epoch reset {got[1]}")
        check([x.get("id") for x in got[2:]] == [1, 2, 3, 4, 5], f"WebSocket: every stored reading {got[2:]}")

    # New readings continue the restored database's ids under the new epoch.
    sys_.pub("sensors/s9/temperature", "30")
    committed(sys_, 6)
    doc = poll(sys_, f"5@{new_epoch}")
    check([x["sensor"] for x in doc["readings"]] == ["s9"] and doc["cursor"] == f"6@{new_epoch}", f"after restore: {doc}")


CASES = {"backup_restore": (case_backup_restore, "")}

if __name__ == "__main__":
    run_case("epoch", CASES, BUILD, CASE)
