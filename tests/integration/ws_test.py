#!/usr/bin/python3
"""End-to-end tests of the WebSocket API (/api/v1/ws, docs/api.md section 5; resets section 6,
slow clients and conflation section 7) with a third-party client (python3-websockets).

Each case starts its own Mosquitto and broker-bridge on free loopback ports, publishes with
mosquitto_pub, and checks what a WebSocket user would see. Usage: ws_test.py BUILD_DIR CASE
"""
import asyncio
import json
import os
import signal
import sys
import time

import websockets

from bridge_system import System as _System, cursor_id, retire_third_reading

BUILD = sys.argv[1]
CASE = sys.argv[2]
# "<case>/raw": the client offers no permessage-deflate, so the bridge frames messages itself and
# sends many per write; otherwise it compresses through Beast. Both paths run every case.
RAW = CASE.endswith("/raw")
CASE = CASE.removesuffix("/raw")


def System(conf=""):
    return _System(BUILD, conf)


def connect(url, **kw):
    if RAW:
        kw["compression"] = None
    return websockets.connect(url, **kw)


async def recv_json(ws, timeout=10):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def readings(ws, n, timeout=20, statuses=0):
    """The next n reading messages (other messages are returned separately), and at least
    `statuses` status messages: a commit's statuses follow its readings, so a reading published
    after a status may arrive first."""
    got, other = [], []
    end = time.time() + timeout
    while len(got) < n or sum(m["op"] == "status" for m in other) < statuses:
        m = await recv_json(ws, max(0.1, end - time.time()))
        (got if m["op"] == "reading" else other).append(m)
    return got, other


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def case_replay_live_once(sys_):
    for i in range(5):
        sys_.pub("sensors/a/temperature", str(20 + i))
    sys_.pub("sensors/b/humidity", "40")
    async with connect(sys_.url()) as ws:
        check(RAW != ("permessage-deflate" in (ws.response_headers.get("Sec-WebSocket-Extensions") or "")),
              "permessage-deflate negotiated when offered")
        await ws.send(json.dumps({"op": "subscribe", "topic": "sensors/+/temperature", "after": 0}))
        sub = await recv_json(ws)
        check(sub["op"] == "subscribed" and sub["topic"] == "sensors/+/temperature", f"subscribed: {sub}")
        got, _ = await readings(ws, 5)
        check([r["id"] for r in got] == [1, 2, 3, 4, 5], f"replay ids {[r['id'] for r in got]}")
        # An overlapping subscription: a reading matching both is still sent once.
        await ws.send(json.dumps({"op": "subscribe", "topic": "sensors/a/#"}))
        check((await recv_json(ws))["op"] == "subscribed", "second subscribed")
        sys_.pub("sensors/a/temperature", "30")
        sys_.pub("sensors/b/humidity", "41")   # matches neither
        sys_.pub("sensors/a/pressure", "1000")  # only the second
        got, _ = await readings(ws, 2)
        check([(r["metric"], r["id"]) for r in got] == [("temperature", 7), ("pressure", 9)], f"live {got}")
        check(all(r["value"] is not None and "sensor" in r for r in got), "reading fields")
        await ws.send(json.dumps({"op": "unsubscribe", "topic": "sensors/a/#"}))
        check((await recv_json(ws))["op"] == "unsubscribed", "unsubscribed")
        sys_.pub("sensors/a/pressure", "1001")   # no longer wanted
        sys_.pub("sensors/c/temperature", "22")  # still wanted
        got, _ = await readings(ws, 1)
        check(got[0]["sensor"] == "c", f"after unsubscribe {got}")
        sys_.pub("sensors/c/status", "offline")
        status = await recv_json(ws)
        check(status == {"op": "status", "sensor": "c", "online": False}, f"status {status}")


async def case_presence_follows_filters(sys_):
    # docs/api.md section 5.2: presence only for sensors the subscriptions can match; none before
    # the first subscription.
    async with connect(sys_.url()) as narrow, connect(sys_.url()) as wide, connect(sys_.url()) as idle:
        await narrow.send(json.dumps({"op": "subscribe", "topic": "sensors/a/temperature"}))
        check((await recv_json(narrow))["op"] == "subscribed", "narrow subscribed")
        await wide.send(json.dumps({"op": "subscribe", "topic": "sensors/+/temperature"}))
        check((await recv_json(wide))["op"] == "subscribed", "wide subscribed")
        for sensor in ("a", "b", "c"):
            sys_.pub(f"sensors/{sensor}/status", "online")
        sys_.pub("sensors/b/temperature", "20")
        sys_.pub("sensors/a/temperature", "21")
        got, other = await readings(narrow, 1, statuses=1)
        check(got[0]["sensor"] == "a", f"narrow reading {got}")
        check([(m["op"], m.get("sensor")) for m in other] == [("status", "a")], f"narrow presence {other}")
        got, other = await readings(wide, 2, statuses=3)
        check(sorted(m["sensor"] for m in other if m["op"] == "status") == ["a", "b", "c"], f"wide presence {other}")
        # Widening a subscription widens presence from then on.
        await narrow.send(json.dumps({"op": "subscribe", "topic": "sensors/c/#"}))
        check((await recv_json(narrow))["op"] == "subscribed", "second subscribed")
        sys_.pub("sensors/b/status", "offline")
        sys_.pub("sensors/c/status", "offline")
        sys_.pub("sensors/a/temperature", "22")
        got, other = await readings(narrow, 1, statuses=1)
        check([(m["op"], m.get("sensor")) for m in other] == [("status", "c")], f"widened presence {other}")
        try:
            m = await recv_json(idle, 1)
            check(False, f"a connection without subscriptions got {m}")
        except asyncio.TimeoutError:
            pass


async def case_resume_under_load(sys_):
    total = 2000
    lines = [(f"sensors/r{i % 4}/temperature", str(i)) for i in range(total)]
    publisher = asyncio.get_running_loop().run_in_executor(None, sys_.pub_many, lines)
    ids, last, connections = [], 0, 0
    while len(ids) < total and connections < 100:
        # This client stops reading with readings still coming, so its closing handshake waits
        # behind data it will not read: give up on the handshake soon (it is not what we test).
        async with connect(sys_.url(), close_timeout=0.5) as ws:
            connections += 1
            await ws.send(json.dumps({"op": "subscribe", "topic": "sensors/#", "after": last}))
            check((await recv_json(ws))["op"] == "subscribed", "subscribed")
            want = min(total - len(ids), 150 + connections * 41 % 300)
            got, _ = await readings(ws, want, 30)
            ids += [r["id"] for r in got]
            last = ids[-1]
    await publisher
    check(connections > 3, f"reconnected {connections} times")
    check(ids == list(range(1, total + 1)), f"every id once in order ({len(ids)} ids)")


async def case_backfill_second_subscription(sys_):
    # A second subscription asking for older readings gets exactly those of its topic not
    # already sent through the first, oldest first, then live.
    for i in range(10):
        sys_.pub(f"sensors/s{i % 2}/temperature", str(i))
    async with connect(sys_.url()) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": "sensors/s0/#", "after": 0}))
        await recv_json(ws)
        got, _ = await readings(ws, 5)
        check([r["id"] for r in got] == [1, 3, 5, 7, 9], f"s0 {got}")
        await ws.send(json.dumps({"op": "subscribe", "topic": "sensors/+/temperature", "after": 4}))
        await recv_json(ws)
        got, _ = await readings(ws, 3)
        check([r["id"] for r in got] == [6, 8, 10], f"back-fill {[r['id'] for r in got]}")
        sys_.pub("sensors/s1/temperature", "11")
        got, _ = await readings(ws, 1)
        check(got[0]["id"] == 11, "live after back-fill")


async def case_bad_frames(sys_):
    async with connect(sys_.url()) as ws:
        await ws.send("{not json")
        m = await recv_json(ws)
        check(m["op"] == "error" and m["code"] == "bad_json", f"bad json {m}")
        await ws.send(json.dumps({"op": "dance", "topic": "x"}))
        check((await recv_json(ws))["code"] == "bad_request", "unknown op")
        await ws.send(json.dumps({"op": "subscribe", "topic": "a/#/b"}))
        check((await recv_json(ws))["code"] == "bad_topic", "bad filter")
        # Filters a client controls are bounded (docs/api.md section 8.3): 60 KB, 30,000 levels.
        await ws.send(json.dumps({"op": "subscribe", "topic": "a/" * 30000 + "#"}))
        m = await recv_json(ws)
        check(m["code"] == "bad_topic" and "bytes" in m["message"], f"huge filter {m}")
        await ws.send(json.dumps({"op": "subscribe", "topic": "a/" * 8 + "#"}))
        m = await recv_json(ws)
        check(m["code"] == "bad_topic" and "levels" in m["message"], f"deep filter {m}")
        await ws.send(json.dumps({"op": "subscribe", "topic": "#", "after": -3}))
        check((await recv_json(ws))["code"] == "bad_request", "bad after")
        await ws.send(b"\x00\x01binary")
        try:
            await asyncio.wait_for(ws.recv(), 10)
            check(False, "binary frame should close")
        except websockets.ConnectionClosed as e:
            check(e.code == 1003, f"binary close code {e.code}")
    async with connect(sys_.url(), max_size=None) as ws:
        await ws.send("x" * (100 * 1024))
        try:
            await asyncio.wait_for(ws.recv(), 10)
            check(False, "oversize message should close")
        except websockets.ConnectionClosed as e:
            check(e.code == 1009, f"oversize close code {e.code}")
    # The server is still fine, and a plain GET on the path is told to upgrade.
    check(b"426" in sys_.http("/api/v1/ws").split(b"\r\n")[0], "426 without upgrade")
    check(b" 400 " in sys_.http("/api/v1/stream?topic=" + "a/" * 9 + "b").split(b"\r\n")[0], "deep SSE filter")
    async with connect(sys_.url()) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": "#"}))
        check((await recv_json(ws))["op"] == "subscribed", "still serving")
        pong = await ws.ping()
        await asyncio.wait_for(pong, 5)


def newest_id(sys_):
    body = sys_.http("/api/v1/updates?timeout=0").split(b"\r\n\r\n", 1)[1]
    return cursor_id(json.loads(body)["cursor"])


async def case_conflate_stalled(sys_):
    # A dashboard subscription with policy "conflate" that stops reading is not disconnected:
    # while it is behind it gets the newest reading per series, each saying how many it replaced.
    per_line, lines_n = 400, 160
    total = per_line * lines_n
    senml = "[" + ",".join('{"n":"temperature","v":%d}' % (i % 40) for i in range(per_line)) + "]"
    lines = [(f"sensors/c{i % 4}/temperature", senml) for i in range(lines_n)]
    # No compression and small client buffers, so that the bridge's writes back up quickly.
    async with websockets.connect(sys_.url(), compression=None, max_queue=1, read_limit=4096) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": "sensors/#", "policy": "conflate"}))
        check((await recv_json(ws))["op"] == "subscribed", "subscribed")
        await asyncio.get_running_loop().run_in_executor(None, sys_.pub_many, lines)
        deadline = time.time() + 60
        while newest_id(sys_) < total and time.time() < deadline:
            await asyncio.sleep(0.05)
        check(newest_id(sys_) == total, "all committed")
        accounted, newest, last, skipped_total, n = {}, {}, 0, 0, 0
        while sum(accounted.values()) < total:
            got, _ = await readings(ws, 1, 30)
            r = got[0]
            check(r["id"] > last, f"id order {last} then {r['id']}")
            last = r["id"]
            k = r.get("skipped", 0)
            skipped_total += k
            accounted[r["sensor"]] = accounted.get(r["sensor"], 0) + 1 + k
            newest[r["sensor"]] = r["id"]
            n += 1
        check(accounted == {f"c{i}": total // 4 for i in range(4)}, f"every reading sent or counted {accounted}")
        check(skipped_total > 0 and n < total, f"conflated: {n} messages for {total} readings")
        for i in range(4):
            body = sys_.http(f"/api/v1/sensors/c{i}/temperature/latest").split(b"\r\n\r\n", 1)[1]
            check(newest[f"c{i}"] == json.loads(body)["id"], f"newest of c{i} was sent last")
        metrics = sys_.http("/metrics").decode()
        check("telemetry_stream_slow_disconnects_total 0" in metrics, "not disconnected")
        check(f"telemetry_stream_readings_conflated_total {skipped_total}" in metrics, "conflated counted")
        await ws.send(json.dumps({"op": "subscribe", "topic": "x/#", "policy": "newest"}))
        err = await recv_json(ws)
        check(err["op"] == "error" and "policy" in err["message"], f"bad policy {err}")


def series_count(sys_, sensor):
    body = sys_.http("/api/v1/sensors").split(b"\r\n\r\n", 1)[1]
    return next((s["count"] for s in json.loads(body)["series"] if s["sensor"] == sensor), 0)


async def case_reset_per_series(sys_):
    # docs/api.md section 6: a subscription gets a reset only when retention deleted, after its
    # cursor, a reading of a series it selects.
    retire_third_reading(sys_)
    async with connect(sys_.url()) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": "sensors/y/#", "after": 2}))
        check((await recv_json(ws))["op"] == "subscribed", "y subscribed")
        m = await recv_json(ws)
        check(m["op"] == "reading" and m["id"] == 4, f"y lost nothing, no reset: {m}")
        await ws.send(json.dumps({"op": "subscribe", "topic": "sensors/x/#", "after": 2}))
        check((await recv_json(ws))["op"] == "subscribed", "x subscribed")
        m = await recv_json(ws)
        check(m == {"op": "reset", "topic": "sensors/x/#", "reason": "retention", "after": 2, "oldest_id": 1},
              f"x lost reading 3: {m}")
        m = await recv_json(ws)
        check(m["op"] == "reading" and m["id"] == 5, f"then x's reading 5: {m}")


async def case_shutdown(sys_):
    async with connect(sys_.url()) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": "#"}))
        await recv_json(ws)
        sys_.bridge.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(ws.recv(), 10)
            check(False, "expected close")
        except websockets.ConnectionClosed as e:
            check(e.code == 1001, f"going away {e.code}")
    check(sys_.bridge.wait(20) == 0, "exit 0")


CASES = {
    "replay_live_once": case_replay_live_once,
    "resume_under_load": case_resume_under_load,
    "backfill_second_subscription": case_backfill_second_subscription,
    "bad_frames": case_bad_frames,
    "shutdown": case_shutdown,
    "conflate_stalled": case_conflate_stalled,
    "presence_follows_filters": case_presence_follows_filters,
    "reset_per_series": case_reset_per_series,
}

if __name__ == "__main__":
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(var, None)
    conf = {"resume_under_load": "[hub]\nwindow = 64\n",
            "reset_per_series": "[storage]\nretention_days = 1\nretention_interval_s = 1\n"}.get(CASE, "")
    s = System(conf)
    try:
        asyncio.run(CASES[CASE](s))
        print(f"ws {CASE}: 1 passed, 0 failed")
    except Exception as e:
        print(f"ws {CASE}: FAILED: {e!r}")
        print(open(os.path.join(s.dir, "bridge.err")).read()[-3000:])
        sys.exit(1)
    finally:
        s.stop()
