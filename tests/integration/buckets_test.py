#!/usr/bin/python3
"""End-to-end tests of live aggregates (docs/api.md section 4.1): `bucket=` on SSE and long
polling, `"bucket"` in a WebSocket subscribe, with third-party clients (raw sockets,
http.client, python3-websockets) and readings published by mosquitto_pub with explicit `ts`,
late readings and repeated (`seq`, `ts`) duplicates.

The promise each case checks: the buckets a live subscriber received, keeping the newest event
per (series, t), equal what /aggregate answers afterwards for the same range. Usage:
buckets_test.py BUILD_DIR CASE
"""
import asyncio
import json
import sys
import time

import websockets

from bridge_system import SSE, System, check, cursor_id, run_case

BUILD = sys.argv[1]
CASE = sys.argv[2]

MIN = 60_000
# Whole minutes two hours ago: well inside the accepted window of readings' times (1.4).
T0 = (int(time.time() * 1000) // MIN - 120) * MIN
TOKEN_A = "static-token-for-sensor-a"
AUTH_CONF = f"""
[[auth.tokens]]
token = "{TOKEN_A}"
topics = ["sensors/a/#"]
"""


def reading(minute, second, value, seq):
    """A JSON payload at T0 + minute:second; values are multiples of 1/4 so sums are exact."""
    return json.dumps({"value": value, "ts": T0 + minute * MIN + second * 1000, "seq": seq})


def publish_phase(sys_, phase):
    """The readings of sensors a and b (temperature), in three phases. Phase 2 brings late readings
    into closed buckets and redeliveries of readings already stored; phase 3 a reading of a much
    later minute per series, which closes every bucket before it."""
    lines = []
    if phase == 1:
        for sensor, base in (("a", 20.0), ("b", 10.0)):
            for m in range(0, 3):
                for s in (5, 25, 45):
                    lines.append((f"sensors/{sensor}/temperature", reading(m, s, base + m + s / 20, m * 100 + s)))
        lines.append(("sensors/a/humidity", reading(1, 0, 50.0, 1)))  # not selected by the filters
    elif phase == 2:
        for sensor, base in (("a", 20.0), ("b", 10.0)):
            for m in range(3, 6):
                for s in (10, 40):
                    lines.append((f"sensors/{sensor}/temperature", reading(m, s, base + m * 2 + s / 40, m * 100 + s)))
        # Late: minute 1 and 3 of a, minute 0 of b (closed by then), with values that move min/max.
        lines.append(("sensors/a/temperature", reading(1, 50, 5.5, 1050)))
        lines.append(("sensors/a/temperature", reading(3, 55, 99.25, 3055)))
        lines.append(("sensors/b/temperature", reading(0, 59, -3.75, 59)))
        # Duplicates: the same (seq, ts) again, stored once (docs/api.md 1.5).
        lines.append(("sensors/a/temperature", reading(1, 50, 5.5, 1050)))
        lines.append(("sensors/b/temperature", reading(4, 10, 10 + 8 + 0.25, 410)))
    else:
        for sensor in ("a", "b"):
            lines.append((f"sensors/{sensor}/temperature", reading(30, 0, 1.0, 9999)))
    sys_.pub_many(lines)


def aggregate(sys_, sensor, t_from, t_to, token=None):
    """/aggregate's 1-minute buckets of sensor's temperature in [t_from, t_to), by t."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, _, body = sys_.request(
        f"/api/v1/sensors/{sensor}/temperature/aggregate?bucket=1m&from={t_from}&to={t_to}", headers)
    check(status == 200, f"aggregate {status} {body!r}")
    return {b["t"]: b for b in json.loads(body)["buckets"]}


def apply(state, event):
    """A client's view: the newest event per (sensor, t)."""
    check(set(event) >= {"sensor", "metric", "t", "count", "min", "max", "avg", "final", "correction"},
          f"bucket event fields: {event}")
    check(event["metric"] == "temperature", f"only selected series: {event}")
    check(event["t"] % MIN == 0, f"bucket start aligned: {event}")
    state[(event["sensor"], event["t"])] = event


def same(got, want):
    return (got["count"] == want["count"] and got["min"] == want["min"] and got["max"] == want["max"]
            and abs(got["avg"] - want["avg"]) <= 1e-9 * max(1.0, abs(want["avg"])))


def mismatch(sys_, state, sensors, t_from, t_to, token=None):
    """What differs between the received buckets in [t_from, t_to) and /aggregate's; "" if none."""
    diffs = []
    for sensor in sensors:
        want = aggregate(sys_, sensor, t_from, t_to, token)
        got = {t: e for (s, t), e in state.items() if s == sensor and t_from <= t < t_to}
        for t in sorted(set(want) | set(got)):
            if t not in got or t not in want or not same(got[t], want[t]):
                diffs.append(f"{sensor} t={(t - T0) // MIN}m got {got.get(t)} want {want.get(t)}")
    return "; ".join(diffs)


def wait_until_equal(sys_, state, more, sensors, t_from, t_to, what, token=None, timeout=40):
    """Takes events with more() (None when there is none for now) until the received buckets equal
    /aggregate's, or fails with the difference."""
    end = time.time() + timeout
    diff = "nothing received"
    while time.time() < end:
        ev = more()
        if ev is not None:
            apply(state, ev)
            continue
        diff = mismatch(sys_, state, sensors, t_from, t_to, token)
        if not diff:
            return
    raise AssertionError(f"{what}: buckets differ from /aggregate: {diff}")


def sse_more(stream, timeout=0.5):
    def more():
        ev = stream.next(timeout)
        if ev is None:
            return None
        check(ev["event"] == "bucket" and cursor_id(ev["id"]) > 0, f"SSE bucket frame with an id: {ev}")
        stream.last_id = ev["id"]
        return json.loads(ev["data"])
    return more


def case_sse(sys_):
    # Errors first: widths outside 1s..31d, provisional without bucket, conflation.
    for q in ("bucket=500ms", "bucket=32d", "bucket=x", "provisional=true", "bucket=1m&policy=conflate",
              "bucket=1m&provisional=yes"):
        status, _, body = sys_.request(f"/api/v1/stream?{q}")
        check(status == 400 and b"bad_parameter" in body, f"{q}: {status} {body!r}")
    # A subscriber that joins in the middle of minute 2 (phase 1 published before it).
    publish_phase(sys_, 1)
    wait_for_count(sys_, 19)
    live = SSE(sys_, "/api/v1/stream?topic=sensors/%2B/temperature&bucket=1m")
    check(live.status == 200, f"stream status {live.status}")
    publish_phase(sys_, 2)
    publish_phase(sys_, 3)
    state = {}
    # Every bucket from the one open when it joined on, and the late minutes 0 and 1 it was told of.
    wait_until_equal(sys_, state, sse_more(live), ["a", "b"], T0 + 2 * MIN, T0 + 30 * MIN, "live SSE")
    corrections = {(s, (t - T0) // MIN) for (s, t), e in state.items() if e["correction"]}
    check({("a", 1), ("a", 3), ("b", 0)} <= corrections, f"late readings corrected closed buckets: {corrections}")
    check(all(e["final"] for e in state.values()), "no provisional events unless asked")
    check(not any(t == T0 + 30 * MIN for (_, t) in state), "the open bucket is not sent as final")
    for (s, t), e in state.items():
        if t < T0 + 2 * MIN:  # closed before it joined: only the corrections, with their whole value
            check(e["correction"], f"{s} {t}: before joining only corrections")
    check(mismatch(sys_, {k: v for k, v in state.items() if k[1] < T0 + 2 * MIN}, ["a"], T0 + MIN, T0 + 2 * MIN) == "",
          "a correction carries the whole bucket")

    # Resume: a second subscriber from the start of the database, cut after a few events, then
    # resumed with Last-Event-ID while more (late) readings arrive: together they equal /aggregate.
    first = SSE(sys_, "/api/v1/stream?topic=sensors/%2B/temperature&bucket=1m&after=0")
    resumed = {}
    more = sse_more(first, 10)
    for _ in range(4):
        ev = more()
        check(ev is not None, "replayed buckets from storage")
        apply(resumed, ev)
    first.close()
    sys_.pub_many([("sensors/a/temperature", reading(2, 59, 7.25, 259)),
                   ("sensors/b/temperature", reading(31, 0, 2.0, 10000))])
    second = SSE(sys_, "/api/v1/stream?topic=sensors/%2B/temperature&bucket=1m", {"Last-Event-ID": str(first.last_id)})
    wait_until_equal(sys_, resumed, sse_more(second), ["a", "b"], T0, T0 + 30 * MIN, "resumed SSE")
    wait_until_equal(sys_, state, sse_more(live), ["a", "b"], T0 + 2 * MIN, T0 + 30 * MIN, "live SSE after more")
    live.close()
    second.close()


def wait_for_count(sys_, n, timeout=20):
    """Waits until n readings are committed (the newest id in /metrics)."""
    end = time.time() + timeout
    while time.time() < end:
        _, _, body = sys_.request("/metrics")
        for line in body.decode().splitlines():
            if line.startswith("telemetry_readings_stored_total ") and int(line.split()[1]) >= n:
                return
        time.sleep(0.05)
    raise AssertionError(f"{n} readings not committed")


def case_longpoll(sys_):
    for q in ("bucket=0s", "bucket=1m&provisional=1"):
        status, _, body = sys_.request(f"/api/v1/updates?{q}")
        check(status == 400 and b"bad_parameter" in body, f"{q}: {status} {body!r}")
    publish_phase(sys_, 1)
    wait_for_count(sys_, 19)
    cursor = 0  # from the start: the first answers replay from storage
    state = {}

    def more():
        nonlocal cursor
        status, _, body = sys_.request(f"/api/v1/updates?topic=sensors/%2B/temperature&bucket=1m&after={cursor}&timeout=1")
        check(status == 200, f"poll {status} {body!r}")
        ans = json.loads(body)
        check("readings" not in ans and isinstance(ans["buckets"], list), f"a bucket poll answers buckets: {ans}")
        check(cursor_id(ans["cursor"]) >= cursor_id(cursor), f"cursor moves forward: {ans}")
        cursor = ans["cursor"]
        for b in ans["buckets"][:-1]:
            apply(state, b)
        return ans["buckets"][-1] if ans["buckets"] else None

    publish_phase(sys_, 2)
    publish_phase(sys_, 3)
    wait_until_equal(sys_, state, more, ["a", "b"], T0, T0 + 30 * MIN, "long poll")
    check(any(e["correction"] for e in state.values()), "corrections by long poll")
    # Live: a parked poll is answered by the reading that closes a bucket.
    sys_.pub_many([("sensors/a/temperature", reading(30, 30, 3.5, 10001)),
                   ("sensors/a/temperature", reading(31, 0, 4.5, 10002)),
                   ("sensors/b/temperature", reading(31, 0, 4.5, 10002))])
    wait_until_equal(sys_, state, more, ["a", "b"], T0, T0 + 31 * MIN, "long poll live")


async def ws_wait(sys_, ws, state, sub_topic, t_from, t_to, what, raw, other, timeout=40):
    """Takes messages until the received buckets equal /aggregate's; bucket messages go to state,
    reading ids to raw, anything else to other. Returns the id of the last bucket message."""
    end = time.time() + timeout
    diff = "nothing"
    last = 0
    while time.time() < end:
        try:
            m = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
        except asyncio.TimeoutError:
            diff = mismatch(sys_, state, ["a", "b"], t_from, t_to)
            if not diff:
                return last
            continue
        if m["op"] == "reading":
            raw.append(m["id"])
        elif m["op"] == "bucket":
            check(m["topic"] == sub_topic and m["id"] >= last, f"bucket message topic and id: {m}")
            last = m["id"]
            ev = dict(m)
            del ev["op"], ev["topic"], ev["id"]
            apply(state, ev)
        else:
            other.append(m)
    raise AssertionError(f"{what}: buckets differ from /aggregate: {diff}")


async def case_ws(sys_):
    topic = "sensors/+/temperature"
    publish_phase(sys_, 1)
    wait_for_count(sys_, 19)
    async with websockets.connect(sys_.url()) as ws:
        for bad in ({"bucket": "1"}, {"bucket": 60}, {"provisional": True}, {"bucket": "1m", "policy": "conflate"},
                    {"bucket": "1m", "provisional": "yes"}):
            await ws.send(json.dumps({"op": "subscribe", "topic": topic, **bad}))
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            check(m["op"] == "error" and m["code"] == "bad_request", f"{bad}: {m}")
        # Buckets from the start (back-filled from storage), provisional values included, and a
        # raw subscription beside it that still gets each reading of b.
        await ws.send(json.dumps({"op": "subscribe", "topic": topic, "after": 0, "bucket": "1m", "provisional": True}))
        await ws.send(json.dumps({"op": "subscribe", "topic": "sensors/b/#"}))
        state, raw, other = {}, [], []
        publish_phase(sys_, 2)
        publish_phase(sys_, 3)
        last = await ws_wait(sys_, ws, state, topic, T0, T0 + 31 * MIN, "WebSocket", raw, other)
        check([m["op"] for m in other] == ["subscribed", "subscribed"], f"two subscriptions: {other}")
        check(any(not e["final"] for e in state.values() if e["t"] == T0 + 30 * MIN),
              "the open bucket arrives as provisional when asked")
        check(any(e["correction"] for e in state.values()), "corrections on WebSocket")
        check(len(raw) >= 8 and len(raw) == len(set(raw)), f"raw readings beside the buckets, once each: {raw}")
    # Resume on a new connection after the last bucket message's id, with more readings meanwhile.
    sys_.pub_many([("sensors/a/temperature", reading(1, 1, -20.0, 101)),
                   ("sensors/b/temperature", reading(32, 0, 6.0, 10003))])
    async with websockets.connect(sys_.url()) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": topic, "after": last, "bucket": "1m"}))
        # The same filter with another width is refused; unsubscribing and subscribing again is the way.
        await ws.send(json.dumps({"op": "subscribe", "topic": topic, "bucket": "5m"}))
        other = []
        await ws_wait(sys_, ws, state, topic, T0, T0 + 31 * MIN, "WebSocket resumed", [], other)
        check([m["op"] for m in other] == ["subscribed", "error"] and other[1]["code"] == "bad_request",
              f"subscribed, then the other width refused: {other}")


def case_grant(sys_):
    # The grant applies as to raw streams: a token for sensors/a/# gets a's buckets only.
    publish_phase(sys_, 1)
    wait_for_count(sys_, 19)
    auth = {"Authorization": f"Bearer {TOKEN_A}"}
    stream = SSE(sys_, "/api/v1/stream?topic=sensors/%2B/temperature&bucket=1m&after=0", auth)
    check(stream.status == 200, f"stream {stream.status}")
    status, _, _ = sys_.request("/api/v1/stream?topic=sensors/b/%23&bucket=1m", auth)
    check(status == 403, f"nothing granted: {status}")
    publish_phase(sys_, 3)
    state = {}
    more = sse_more(stream)
    wait_until_equal(sys_, state, more, ["a"], T0, T0 + 30 * MIN, "granted SSE", TOKEN_A)
    check({s for (s, _) in state} == {"a"}, f"only granted series: {sorted(state)}")
    sys_.pub_many([("sensors/b/temperature", reading(40, 0, 1.0, 1)), ("sensors/b/temperature", reading(41, 0, 1.0, 2))])
    sys_.pub_many([("sensors/a/temperature", reading(40, 0, 1.0, 1))])
    ev = sse_more(stream, 20)()
    check(ev is not None and ev["sensor"] == "a" and ev["t"] == T0 + 30 * MIN, f"next bucket is a's: {ev}")
    stream.close()


CASES = {
    "sse": (case_sse, ""),
    "longpoll": (case_longpoll, ""),
    "ws": (case_ws, ""),
    "grant": (case_grant, AUTH_CONF),
}

if __name__ == "__main__":
    run_case("buckets", CASES, BUILD, CASE)
