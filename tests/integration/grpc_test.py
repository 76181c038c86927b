#!/usr/bin/python3
"""End-to-end tests of the gRPC API (telemetry.v1.Telemetry, docs/api.md section 12) with a client
the project did not write: Debian's python3-grpcio, with stubs that the build generates from
proto/telemetry/v1/telemetry.proto with Debian's protoc and grpc_python_plugin.

Each case starts its own Mosquitto and broker-bridge ([grpc] listen on a free port), publishes with
mosquitto_pub, and checks what a gRPC user would see. Usage: grpc_test.py BUILD_DIR CASE
"""
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc

import auth_test  # make_jwt: HS256 JWTs made with Python's own hmac
import buckets_test  # the readings of the live-aggregate cases and their check against /aggregate
from bridge_system import check, cursor_id, metric, retire_third_reading, run_case
import tls_test  # make_certs, tls_conf: a CA and the bridge's certificate

BUILD = sys.argv[1]
CASE = sys.argv[2]
sys.path.insert(0, os.path.join(BUILD, "proto", "python"))
from telemetry.v1 import telemetry_pb2 as pb  # noqa: E402
from telemetry.v1 import telemetry_pb2_grpc as pb_grpc  # noqa: E402

GRPC_ON = '[grpc]\nlisten = "127.0.0.1:0"\n'


def grpc_port(sys_):
    """The port from the bridge's "serving grpc" line (it listens on port 0)."""
    sys_.out.seek(0)
    m = re.search(r"serving grpc [0-9.]+:(\d+)", sys_.out.read())
    check(m, "the bridge prints its gRPC port")
    return int(m.group(1))


def stub(sys_, options=()):
    # No proxy: grpcio would otherwise honour http_proxy for a loopback address.
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port(sys_)}",
                                    options=[("grpc.enable_http_proxy", 0), *options])
    return pb_grpc.TelemetryStub(channel)


class Stream:
    """A Subscribe call read by a thread into a queue, so a test can wait for the next event with
    a timeout. `end` is (code, details) once the call has ended."""

    def __init__(self, st, metadata=None, read=True, **request):
        self.call = st.Subscribe(pb.SubscribeRequest(**request), metadata=metadata, timeout=120)
        self.events = queue.Queue()
        self.end = None
        if read:
            self.start_reading()

    def start_reading(self):
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for ev in self.call:
                self.events.put(ev)
        except grpc.RpcError as e:
            self.end = (e.code(), e.details())
        else:
            self.end = (grpc.StatusCode.OK, "")
        self.events.put(None)

    def after(self):
        """The cursor the stream started after (the telemetry-after initial metadata): once the
        client has it, everything published is delivered."""
        return int(dict(self.call.initial_metadata())["telemetry-after"])

    def next(self, timeout=20, kinds=("reading", "status", "reset")):
        """The next event of one of `kinds` (heartbeats are skipped), or None when the call ended
        or on timeout."""
        end = time.time() + timeout
        while True:
            try:
                ev = self.events.get(timeout=max(0.1, end - time.time()))
            except queue.Empty:
                return None
            if ev is None:
                self.events.put(None)
                return None
            if ev.WhichOneof("kind") in kinds:
                return ev

    def readings(self, n, timeout=30):
        got = []
        end = time.time() + timeout
        while len(got) < n:
            ev = self.next(max(0.1, end - time.time()), ("reading",))
            check(ev is not None, f"stream ended after {len(got)} of {n} readings: {self.end}")
            got.append(ev.reading)
        return got

    def wait_end(self, timeout=30):
        end = time.time() + timeout
        while self.end is None and time.time() < end:
            time.sleep(0.05)
        return self.end

    def cancel(self):
        self.call.cancel()


def refused(st, metadata=None, **request):
    """The status of a Subscribe call that the bridge must refuse at once."""
    try:
        for _ in st.Subscribe(pb.SubscribeRequest(**request), metadata=metadata, timeout=20):
            pass
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def stored_ids(sys_, sensor, metric_name, headers=None):
    """Every stored id of one series, through the HTTP API (paged by `next`)."""
    ids, target = [], f"/api/v1/sensors/{sensor}/{metric_name}/readings?limit=10000"
    while target:
        s, _, body = sys_.request(target, headers)
        check(s == 200, f"readings {s}")
        page = json.loads(body)
        ids += [r["id"] for r in page["readings"]]
        target = (f"/api/v1/sensors/{sensor}/{metric_name}/readings?limit=10000&cursor={page['next']}"
                  if page.get("next") else None)
    return ids


def newest_id(sys_, headers=None):
    s, _, body = sys_.request("/api/v1/updates?timeout=0", headers)
    return cursor_id(json.loads(body)["cursor"])


def wait_newest(sys_, n, headers=None, timeout=30):
    end = time.time() + timeout
    while time.time() < end and newest_id(sys_, headers) < n:
        time.sleep(0.05)
    check(newest_id(sys_, headers) >= n, f"{n} readings committed")


def case_replay_live(sys_):
    """Replay after a cursor, then live readings, once each, in id order, only those the filters
    select; presence; a subscription from now sees only what follows its metadata."""
    st = stub(sys_)
    for i in range(5):
        sys_.pub("sensors/a/temperature", str(20 + i))
    sys_.pub("sensors/b/humidity", "40")
    wait_newest(sys_, 6)
    s = Stream(st, topics=["sensors/+/temperature", "sensors/a/#"], after=0)
    got = s.readings(5)
    check([r.id for r in got] == [1, 2, 3, 4, 5], f"replay ids {[r.id for r in got]}")
    check(got[0].sensor == "a" and got[0].metric == "temperature" and got[0].value == 20 and got[0].ts > 0,
          f"reading fields {got[0]}")
    now = Stream(st, topics=["#"])
    check(now.after() == 6, f"live from the newest id: {now.after()}")
    sys_.pub("sensors/a/temperature", "30")
    sys_.pub("sensors/b/humidity", "41")   # not selected by s
    sys_.pub("sensors/c/temperature", "22")
    got = s.readings(2)
    check([(r.sensor, r.id) for r in got] == [("a", 7), ("c", 9)], f"live {got}")
    got = now.readings(3)
    check([r.id for r in got] == [7, 8, 9], f"from now {[r.id for r in got]}")
    sys_.pub("sensors/a/status", "online")
    ev = s.next(kinds=("status",))
    check(ev.status.sensor == "a" and ev.status.online, f"presence {ev}")
    check(metric(sys_, 'telemetry_stream_connections{transport="grpc"}') == 2, "two open gRPC streams")
    # A deadline ends the call like a cancellation; both release the stream.
    short = st.Subscribe(pb.SubscribeRequest(topics=["#"]), timeout=1)
    try:
        for _ in short:
            pass
        check(False, "a call past its deadline went on")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline: {e.code()}")
    s.cancel()
    now.cancel()
    end = time.time() + 20
    while time.time() < end and metric(sys_, 'telemetry_stream_connections{transport="grpc"}') != 0:
        time.sleep(0.05)
    check(metric(sys_, 'telemetry_stream_connections{transport="grpc"}') == 0, "cancelled streams released")


def restart(sys_):
    """Stops the bridge (SIGTERM) and starts it again on the same database and configuration."""
    args = sys_.bridge.args
    sys_.bridge.send_signal(signal.SIGTERM)
    check(sys_.bridge.wait(20) == 0, "bridge exits 0")
    sys_.out = open(os.path.join(sys_.dir, "bridge2.out"), "a+")  # append mode: see System.start_bridge
    sys_.bridge = subprocess.Popen(args, stdout=sys_.out, stderr=open(os.path.join(sys_.dir, "bridge.err"), "a"))
    end = time.time() + 20
    while time.time() < end:
        sys_.out.seek(0)
        if m := re.search(r"serving http://[0-9.]+:(\d+)", sys_.out.read()):
            sys_.port = int(m.group(1))
            return
        time.sleep(0.05)
    raise AssertionError("bridge did not restart")


def case_resume_restart(sys_):
    """A stream ended by the bridge's shutdown says UNAVAILABLE; resuming after the last id
    received from the restarted bridge yields every reading once: none lost, none twice."""
    st = stub(sys_)
    sys_.pub_many([("sensors/a/temperature", str(i)) for i in range(50)])
    s = Stream(st, topics=["sensors/#"], after=0)
    ids = [r.id for r in s.readings(50)]
    publisher = threading.Thread(target=lambda: sys_.pub_many([("sensors/a/temperature", str(i)) for i in range(300)]))
    publisher.start()
    time.sleep(0.2)
    restart(sys_)  # while readings arrive: some before, some queued in Mosquitto for the bridge
    publisher.join()
    while (ev := s.next(20, ("reading",))) is not None:
        ids.append(ev.reading.id)
    code, details = s.end
    check(code == grpc.StatusCode.UNAVAILABLE and "after" in details, f"ended by the shutdown: {s.end}")
    wait_newest(sys_, 350)
    st = stub(sys_)
    r = Stream(st, topics=["sensors/#"], after=ids[-1])
    ids += [x.id for x in r.readings(350 - len(ids))]
    check(ids == stored_ids(sys_, "a", "temperature"), f"no gap, no duplicate across the restart ({len(ids)} ids)")
    check(ids == sorted(set(ids)) and len(ids) == 350, "350 distinct ids in order")


def case_filters(sys_):
    """Bad requests are refused with INVALID_ARGUMENT, as the other transports refuse them;
    overlapping filters deliver a reading once; the number of streams is bounded."""
    st = stub(sys_)
    code, details = refused(st, topics=["sensors/#/x"])
    check(code == grpc.StatusCode.INVALID_ARGUMENT and "topic" in details, f"bad filter: {code} {details}")
    code, _ = refused(st, topics=[f"t{i}" for i in range(33)])
    check(code == grpc.StatusCode.INVALID_ARGUMENT, f"too many filters: {code}")
    code, _ = refused(st, topics=["a/" * 20 + "b"])
    check(code == grpc.StatusCode.INVALID_ARGUMENT, f"too many levels: {code}")
    code, _ = refused(st, after=-1)
    check(code == grpc.StatusCode.INVALID_ARGUMENT, f"negative after: {code}")
    # Overlapping filters deliver a reading once; other sensors not at all.
    sys_.pub("sensors/a/temperature", "1")
    sys_.pub("sensors/b/temperature", "2")
    sys_.pub("sensors/a/humidity", "3")
    wait_newest(sys_, 3)
    s = Stream(st, topics=["sensors/a/#", "sensors/+/temperature", "sensors/a/temperature"], after=0)
    check([(r.sensor, r.metric, r.id) for r in s.readings(3)] ==
          [("a", "temperature", 1), ("b", "temperature", 2), ("a", "humidity", 3)], "each selected reading once")
    only = Stream(st, topics=["sensors/b/#"], after=0)
    check([r.id for r in only.readings(1)] == [2], "only b")
    sys_.pub("sensors/a/temperature", "4")
    sys_.pub("sensors/b/temperature", "5")
    check([r.id for r in only.readings(1)] == [5], "live: only b")
    # At most http.max_connections (3 here) streams at once.
    third = Stream(st, topics=["#"])
    check(third.after() == 5, "a third stream")
    code, details = refused(st, topics=["#"])
    check(code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_connections" in details, f"a fourth: {code} {details}")
    third.cancel()


def case_reset(sys_):
    """Retention deleted a reading after the cursor of a series the stream selects: a Reset event
    first (docs/api.md section 6), then the readings still stored; none for other series."""
    retire_third_reading(sys_)
    st = stub(sys_)
    y = Stream(st, topics=["sensors/y/#"], after=2)
    ev = y.next()
    check(ev.WhichOneof("kind") == "reading" and ev.reading.id == 4, f"y lost nothing, no reset: {ev}")
    x = Stream(st, topics=["sensors/x/#"], after=2)
    ev = x.next()
    check(ev.WhichOneof("kind") == "reset" and ev.reset.reason == "retention" and ev.reset.after == 2
          and ev.reset.oldest_id == 1, f"x lost reading 3: {ev}")
    ev = x.next()
    check(ev.WhichOneof("kind") == "reading" and ev.reading.id == 5, f"then x's reading 5: {ev}")


def case_epoch(sys_):
    """Cursors carry the database's epoch (docs/api.md 2.1): the stream's initial metadata names it,
    an `after` with the current epoch resumes as always, one with another epoch gets a Reset
    (reason "epoch") and then every stored reading; a malformed epoch is refused."""
    for i in range(3):
        sys_.pub("sensors/a/temperature", str(i))
    st = stub(sys_)
    live = Stream(st, topics=["#"], after=0)
    check([r.id for r in live.readings(3)] == [1, 2, 3], "three readings stored")
    epoch = dict(live.call.initial_metadata())["telemetry-epoch"]
    check(re.fullmatch(r"[0-9a-f]{8}", epoch), f"telemetry-epoch metadata: {epoch!r}")
    s, _, body = sys_.request("/api/v1/updates?after=0&timeout=0")
    check(json.loads(body)["cursor"] == f"3@{epoch}", f"the same epoch as HTTP's cursors: {body!r}")
    live.cancel()
    same = Stream(st, topics=["#"], after=1, epoch=epoch)
    ev = same.next()
    check(ev.WhichOneof("kind") == "reading" and ev.reading.id == 2, f"same epoch: no reset, reading 2: {ev}")
    same.cancel()
    other = format(int(epoch, 16) ^ 0x5A5A5A5A, "08x")
    foreign = Stream(st, topics=["#"], after=7, epoch=other)
    ev = foreign.next()
    check(ev.WhichOneof("kind") == "reset" and ev.reset.reason == "epoch" and ev.reset.after == 7
          and ev.reset.oldest_id == 1 and ev.reset.epoch == epoch, f"another epoch: a reset first: {ev}")
    check([r.id for r in foreign.readings(3)] == [1, 2, 3], "then every stored reading")
    foreign.cancel()
    for bad in ({"epoch": "xyz", "after": 1}, {"epoch": epoch}):
        code, details = refused(st, topics=["#"], **bad)
        check(code == grpc.StatusCode.INVALID_ARGUMENT and "epoch" in details, f"{bad}: {code} {details}")


def case_stalled(sys_):
    """A client that stops reading is ended with RESOURCE_EXHAUSTED once its bounded queue is full
    (the bridge's memory stays bounded); a healthy client beside it gets everything; the stalled
    one resumes after the last id it received and loses nothing."""
    st = stub(sys_)
    total, chunk = 6000, 1000
    # grpcio's transport takes in a few MB for a client that does not read when it auto-tunes its
    # flow control window (BDP probing); with a fixed 64 KiB window the bridge's own bound shows
    # after a few thousand readings rather than tens of thousands.
    stalled = Stream(stub(sys_, [("grpc.http2.bdp_probe", 0)]), topics=["#"], read=False)
    healthy = Stream(st, topics=["#"])
    check(stalled.after() == 0 and healthy.after() == 0, "both live from the start")
    # In bursts that a reader that keeps reading keeps up with on a loaded machine.
    got = []
    for i in range(0, total, chunk):
        sys_.pub_many([("sensors/a/temperature", str(v)) for v in range(i, i + chunk)])
        got += [r.id for r in healthy.readings(chunk, timeout=50)]
    check(got == list(range(1, total + 1)), "the healthy client got every reading in order")
    end = time.time() + 30
    while time.time() < end and (metric(sys_, "telemetry_stream_slow_disconnects_total") or 0) < 1:
        time.sleep(0.1)
    check(metric(sys_, "telemetry_stream_slow_disconnects_total") == 1, "exactly the stalled stream was ended")
    check(healthy.end is None, f"the healthy stream is still open: {healthy.end}")
    check(metric(sys_, "telemetry_stream_queued_bytes") < 1 << 20, "queued bytes bounded")
    stalled.start_reading()  # now it reads what the transport holds, then the status
    ids = []
    while (ev := stalled.next(20, ("reading",))) is not None:
        ids.append(ev.reading.id)
    code, details = stalled.end
    check(code == grpc.StatusCode.RESOURCE_EXHAUSTED and "after" in details, f"stalled ended: {stalled.end}")
    check(len(ids) < total and ids == list(range(1, len(ids) + 1)), f"a prefix, in order ({len(ids)})")
    resumed = Stream(st, topics=["#"], after=ids[-1] if ids else 0)
    ids += [r.id for r in resumed.readings(total - len(ids), timeout=50)]
    check(ids == list(range(1, total + 1)), "resumed after its last id: no gap, no duplicate")


def case_conflate(sys_):
    """POLICY_CONFLATE: a client that stops reading is not ended; while it is behind it gets the
    newest reading of each series, saying how many it replaced (Reading.skipped), so every
    committed reading is sent or counted, in id order, and each series ends on its latest."""
    st = stub(sys_)
    per_line, lines_n = 400, 40
    total = per_line * lines_n
    senml = "[" + ",".join('{"n":"temperature","v":%d}' % (i % 40) for i in range(per_line)) + "]"
    # A fixed 64 KiB flow control window (no BDP probing), so that the bridge's writes back up.
    s = Stream(stub(sys_, [("grpc.http2.bdp_probe", 0)]), topics=["sensors/#"], policy=pb.POLICY_CONFLATE,
               read=False)
    check(s.after() == 0, "live from the start")
    sys_.pub_many([(f"sensors/c{i % 4}/temperature", senml) for i in range(lines_n)])
    wait_newest(sys_, total, timeout=60)
    s.start_reading()
    accounted, newest, last, skipped_total, n = {}, {}, 0, 0, 0
    while sum(accounted.values()) < total:
        ev = s.next(30, ("reading",))
        check(ev is not None, f"stream ended with {sum(accounted.values())} of {total} accounted: {s.end}")
        r = ev.reading
        check(r.id > last, f"id order: {last} then {r.id}")
        last = r.id
        skipped_total += r.skipped
        accounted[r.sensor] = accounted.get(r.sensor, 0) + 1 + r.skipped
        newest[r.sensor] = r.id
        n += 1
    check(accounted == {f"c{i}": total // 4 for i in range(4)}, f"every reading sent or counted {accounted}")
    check(skipped_total > 0 and n < total, f"conflated: {n} messages for {total} readings")
    for i in range(4):
        code, _, body = sys_.request(f"/api/v1/sensors/c{i}/temperature/latest")
        check(code == 200 and newest[f"c{i}"] == json.loads(body)["id"], f"the newest of c{i} was sent last")
    check(s.end is None, f"the stream is still open: {s.end}")
    check(metric(sys_, "telemetry_stream_slow_disconnects_total") == 0, "not disconnected")
    check(metric(sys_, "telemetry_stream_readings_conflated_total") == skipped_total, "conflated readings counted")
    s.cancel()


def case_heartbeat(sys_):
    """A stream with nothing to send gets a Heartbeat every stream.heartbeat_s, again and again,
    and the readings that follow still arrive."""
    s = Stream(stub(sys_), topics=["#"])
    check(s.after() == 0, "live from the start")
    for n in range(2):
        ev = s.next(20, ("heartbeat", "reading"))
        check(ev is not None and ev.WhichOneof("kind") == "heartbeat", f"heartbeat {n + 1}: {ev} {s.end}")
    sys_.pub("sensors/a/temperature", "21.5")
    r = s.readings(1)[0]
    check(r.id == 1 and r.value == 21.5, f"the reading after the heartbeats: {r}")
    s.cancel()


def case_queries(sys_):
    """ListSeries, History (paged with HTTP's opaque cursor) and Aggregate answer what the HTTP API
    answers for the same series; bad requests get INVALID_ARGUMENT or NOT_FOUND."""
    st = stub(sys_)
    base = (int(time.time() * 1000) - 3_600_000) // 10_000 * 10_000  # an hour ago, on a 10 s boundary
    sys_.pub_many([("sensors/a/temperature", json.dumps({"value": v, "ts": base + v * 1000, "unit": "Cel"}))
                   for v in range(25)] + [("sensors/b/humidity", "40")])
    wait_newest(sys_, 26)
    listed = st.ListSeries(pb.ListSeriesRequest(), timeout=20).series
    check([(x.sensor, x.metric, x.count) for x in listed] == [("a", "temperature", 25), ("b", "humidity", 1)],
          f"series {listed}")
    check(listed[0].unit == "Cel" and listed[0].latest.value == 24 and not listed[0].HasField("online"),
          f"series fields {listed[0]}")
    ids, cursor, pages = [], "", 0
    while True:
        page = st.History(pb.HistoryRequest(sensor="a", metric="temperature", limit=10, cursor=cursor), timeout=20)
        ids += [r.id for r in page.readings]
        pages += 1
        if not page.next:
            break
        cursor = page.next
    check(pages == 3 and ids == stored_ids(sys_, "a", "temperature"), f"paged history {pages} {ids}")
    # The cursor is HTTP's: a gRPC page's `next` continues an HTTP query, and the other way round.
    first = st.History(pb.HistoryRequest(sensor="a", metric="temperature", limit=10), timeout=20)
    s, _, body = sys_.request(f"/api/v1/sensors/a/temperature/readings?limit=10&cursor={first.next}")
    check(s == 200 and [r["id"] for r in json.loads(body)["readings"]] == ids[10:20], "HTTP continues a gRPC page")
    page = st.History(pb.HistoryRequest(sensor="a", metric="temperature", descending=True, limit=3,
                                        **{"from": base + 5000, "to": base + 9000}), timeout=20)
    check([r.value for r in page.readings] == [8, 7, 6] and page.next, f"range, newest first {page}")
    agg = st.Aggregate(pb.AggregateRequest(sensor="a", metric="temperature", bucket_ms=10_000), timeout=20)
    s, _, body = sys_.request("/api/v1/sensors/a/temperature/aggregate?bucket=10s")
    http_buckets = json.loads(body)["buckets"]
    check(agg.bucket_ms == 10_000 and [(b.t, b.count, b.min, b.max, b.avg) for b in agg.buckets] ==
          [(b["t"], b["count"], b["min"], b["max"], b["avg"]) for b in http_buckets] and len(http_buckets) >= 3,
          f"aggregate as HTTP: {agg} vs {http_buckets}")
    for call, req, code in [
            (st.History, pb.HistoryRequest(sensor="a", metric="nope"), grpc.StatusCode.NOT_FOUND),
            (st.History, pb.HistoryRequest(sensor="a b", metric="x"), grpc.StatusCode.INVALID_ARGUMENT),
            (st.History, pb.HistoryRequest(sensor="a", metric="temperature", cursor="garbage"),
             grpc.StatusCode.INVALID_ARGUMENT),
            (st.History, pb.HistoryRequest(sensor="a", metric="temperature", limit=10001),
             grpc.StatusCode.INVALID_ARGUMENT),
            (st.Aggregate, pb.AggregateRequest(sensor="a", metric="temperature", bucket_ms=1,
                                               **{"from": 0, "to": base}), grpc.StatusCode.INVALID_ARGUMENT),
            (st.Aggregate, pb.AggregateRequest(sensor="a", metric="temperature", bucket_ms=1),
             grpc.StatusCode.OK)]:
        try:
            call(req, timeout=20)
            got = grpc.StatusCode.OK
        except grpc.RpcError as e:
            got = e.code()
        check(got == code, f"{req} -> {got}, expected {code}")


def case_bucket(sys_):
    """Live aggregates over gRPC (SubscribeRequest.bucket): the buckets a subscriber received,
    keeping the newest event per (sensor, t), equal /aggregate's after closes, late readings
    (corrections) and redeliveries, live and replayed from after=0; bad requests refused."""
    st = stub(sys_)
    for req in (dict(bucket="500ms"), dict(bucket="32d"), dict(bucket="x"), dict(provisional=True),
                dict(bucket="1m", policy=pb.POLICY_CONFLATE)):
        code, details = refused(st, **req)
        check(code == grpc.StatusCode.INVALID_ARGUMENT, f"{req} -> {code} {details}")
    topics = ["sensors/+/temperature"]
    live = Stream(st, topics=topics, bucket="1m")
    live.after()  # subscribed: everything published from now on is counted
    corrections = []

    def more_of(stream):
        def more():
            ev = stream.next(0.5, ("bucket",))
            if ev is None:
                check(stream.end is None, f"bucket stream ended: {stream.end}")
                return None
            b = ev.bucket
            check(b.id > 0, f"a bucket event carries the id to resume after: {b}")
            if b.correction:
                corrections.append(b)
            return {"sensor": b.sensor, "metric": b.metric, "t": b.t, "count": b.count, "min": b.min,
                    "max": b.max, "avg": b.avg, "final": b.final, "correction": b.correction}
        return more

    t0, span = buckets_test.T0, 30 * buckets_test.MIN
    state = {}
    for phase in (1, 2, 3):
        buckets_test.publish_phase(sys_, phase)
    buckets_test.wait_until_equal(sys_, state, more_of(live), ("a", "b"), t0, t0 + span, "gRPC live buckets")
    check(corrections, "late readings into closed buckets came as corrections")
    # The same buckets replayed from the start, through storage and the catch-up path.
    replayed = {}
    buckets_test.wait_until_equal(sys_, replayed, more_of(Stream(st, topics=topics, bucket="1m", after=0)),
                                  ("a", "b"), t0, t0 + span, "gRPC replayed buckets")


# auth_test's tokens: TOKEN_A reads sensors/a/#, TOKEN_ALL everything; JWTs signed with its KEY.
TOKEN_A, TOKEN_ALL = auth_test.TOKEN_A, auth_test.TOKEN_ALL
AUTH_CONF = GRPC_ON + auth_test.AUTH_CONF


def case_auth(sys_):
    """With [auth] configured: the same tokens as HTTP in `authorization: Bearer` metadata; no or
    a wrong token is UNAUTHENTICATED, topics outside the grant PERMISSION_DENIED, and a grant
    narrower than the filters selects only what it grants."""
    st = stub(sys_)
    code, _ = refused(st, topics=["#"])
    check(code == grpc.StatusCode.UNAUTHENTICATED, f"no token: {code}")
    code, _ = refused(st, [("authorization", "Bearer not-a-token")], topics=["#"])
    check(code == grpc.StatusCode.UNAUTHENTICATED, f"unknown token: {code}")
    code, _ = refused(st, [("authorization", f"Bearer {TOKEN_A}")], topics=["sensors/b/#"])
    check(code == grpc.StatusCode.PERMISSION_DENIED, f"outside the grant: {code}")
    sys_.pub("sensors/a/temperature", "1")
    sys_.pub("sensors/b/temperature", "2")
    sys_.pub("sensors/b/status", "online")
    sys_.pub("sensors/a/temperature", "3")
    wait_newest(sys_, 3, {"Authorization": f"Bearer {TOKEN_ALL}"})
    a = Stream(st, [("authorization", f"Bearer {TOKEN_A}")], topics=["#"], after=0)
    check([(r.sensor, r.id) for r in a.readings(2)] == [("a", 1), ("a", 3)], "only the granted sensor")
    every = Stream(st, [("authorization", f"bearer {TOKEN_ALL}")], topics=["#"], after=0)
    check([r.id for r in every.readings(3)] == [1, 2, 3], "everything for the other token")
    sys_.pub("sensors/b/temperature", "4")
    sys_.pub("sensors/a/temperature", "5")
    check([r.id for r in a.readings(1)] == [5], "live: only the granted sensor")
    sa = stub(sys_)
    listed = sa.ListSeries(pb.ListSeriesRequest(), metadata=[("authorization", f"Bearer {TOKEN_A}")], timeout=20)
    check([x.sensor for x in listed.series] == ["a"], f"ListSeries within the grant: {listed}")
    try:
        sa.History(pb.HistoryRequest(sensor="b", metric="temperature"),
                   metadata=[("authorization", f"Bearer {TOKEN_A}")], timeout=20)
        check(False, "History outside the grant answered")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.PERMISSION_DENIED, f"History outside the grant: {e.code()}")
    try:
        sa.Aggregate(pb.AggregateRequest(sensor="a", metric="temperature"), timeout=20)
        check(False, "Aggregate without a token answered")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.UNAUTHENTICATED, f"Aggregate without a token: {e.code()}")
    sys_.pub("sensors/b/status", "offline")
    sys_.pub("sensors/a/status", "online")
    ev = a.next(20, ("status",))
    check(ev is not None and ev.status.sensor == "a", f"presence only of the granted sensor: {ev}")
    # A JWT that expires during the stream ends it with UNAUTHENTICATED; a fresh one resumes.
    exp = int(time.time()) + 3
    jwt = auth_test.make_jwt({"exp": exp, "topics": ["sensors/a/#"]})
    j = Stream(st, [("authorization", f"Bearer {jwt}")], topics=["#"], after=0)
    ids = [r.id for r in j.readings(3)]
    code, details = j.wait_end(20)
    check(code == grpc.StatusCode.UNAUTHENTICATED and "expired" in details and time.time() >= exp - 1,
          f"ended at expiry: {j.end}")
    sys_.pub("sensors/a/temperature", "6")
    fresh = auth_test.make_jwt({"exp": int(time.time()) + 300, "topics": ["sensors/a/#"]})
    r = Stream(st, [("authorization", f"Bearer {fresh}")], topics=["#"], after=ids[-1])
    check(ids == [1, 3, 5] and [x.id for x in r.readings(1)] == [6], f"resumed after {ids}: no gap, no duplicate")


def case_tls(sys_, ca_file):
    """With [http] tls_cert / tls_key the gRPC port speaks TLS with the same certificate: a client
    that verifies it against the CA subscribes; a plaintext client does not get in."""
    port = grpc_port(sys_)
    with open(ca_file, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    st = pb_grpc.TelemetryStub(grpc.secure_channel(f"localhost:{port}", creds, options=[("grpc.enable_http_proxy", 0)]))
    auth = [("authorization", f"Bearer {tls_test.TOKEN}")]
    s = Stream(st, auth, topics=["sensors/#"])
    check(s.after() == 0, "subscribed over TLS")
    sys_.pub("sensors/a/temperature", "21.5")
    r = s.readings(1)[0]
    check((r.id, r.sensor, r.value) == (1, "a", 21.5), f"reading over TLS {r}")
    code, _ = refused(stub(sys_), auth, topics=["#"])
    check(code == grpc.StatusCode.UNAVAILABLE, f"plaintext client against TLS: {code}")
    # SIGHUP: a renewed certificate reaches the gRPC port too (new connections, within seconds);
    # the stream opened before goes on.
    check("renewed.example" not in tls_test.peer_names(port, ca_file), "the first certificate on the gRPC port")
    tls_test.make_certs(os.path.dirname(ca_file), "renewed.example")  # same CA, new server certificate
    sys_.bridge.send_signal(signal.SIGHUP)
    deadline = time.time() + 15
    while time.time() < deadline and "renewed.example" not in tls_test.peer_names(port, ca_file):
        time.sleep(0.2)
    check("renewed.example" in tls_test.peer_names(port, ca_file), "new gRPC connections get the renewed certificate")
    fresh = pb_grpc.TelemetryStub(grpc.secure_channel(f"localhost:{port}", creds,
                                                      options=[("grpc.enable_http_proxy", 0)]))
    check(fresh.ListSeries(pb.ListSeriesRequest(), metadata=auth, timeout=20).series[0].sensor == "a",
          "a gRPC client trusting the CA works after the reload")
    sys_.pub("sensors/a/temperature", "22.5")
    r = s.readings(1)[0]
    check(r.value == 22.5, f"the stream opened before the reload goes on: {r}")


CASES = {
    "replay_live": (case_replay_live, GRPC_ON),
    "resume_restart": (case_resume_restart, GRPC_ON),
    "filters": (case_filters, GRPC_ON + "[http]\nmax_connections = 3\n"),
    "reset": (case_reset, GRPC_ON + "[storage]\nretention_days = 1\nretention_interval_s = 1\n"),
    "epoch": (case_epoch, GRPC_ON),
    "stalled": (case_stalled, GRPC_ON + "[stream]\nmax_queue_bytes = 131072\n"),
    "conflate": (case_conflate, GRPC_ON),
    "heartbeat": (case_heartbeat, GRPC_ON + "[stream]\nheartbeat_s = 1\n"),
    "queries": (case_queries, GRPC_ON),
    "bucket": (case_bucket, GRPC_ON),
    "auth": (case_auth, AUTH_CONF),
}


if __name__ == "__main__":
    if CASE != "tls":
        run_case("grpc", CASES, BUILD, CASE)
    else:
        certs = tempfile.mkdtemp(prefix="telemetry-certs-")
        try:
            tls_test.make_certs(certs)
            CASES["tls"] = (lambda s: case_tls(s, f"{certs}/ca.pem"), GRPC_ON + tls_test.tls_conf(certs))
            run_case("grpc", CASES, BUILD, CASE, ca_file=f"{certs}/ca.pem")
        finally:
            shutil.rmtree(certs, ignore_errors=True)
