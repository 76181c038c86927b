#!/usr/bin/python3
"""MQTT republish of committed readings ([mqtt_out], docs/api.md section 13), seen by clients the
project did not write: mosquitto_sub and a Paho client (python3-paho-mqtt), against a real
Mosquitto and the real bridge process, compared with what the HTTP API says was committed.
Usage: mqtt_out_test.py BUILD_DIR CASE
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes

from bridge_system import check, free_port, metric, mosquitto_conf, run_case, start_mosquitto

BUILD = sys.argv[1]
CASE = sys.argv[2]
OUT_CONF = '[mqtt_out]\nprefix = "out"\n'
OUT_PORT = free_port()  # out_broker_away: the second broker's port, in the bridge's configuration
MAX_INFLIGHT = 100  # mqtt_out.max_inflight: a restart sends again at most twice that (docs/api.md 13)


def committed(sys_):
    """Every committed reading, in id order, as /api/v1/updates returns them."""
    got, after = [], 0
    while True:
        s, _, body = sys_.request(f"/api/v1/updates?after={after}&timeout=0&limit=10000")
        check(s == 200, f"updates: {s}")
        page = json.loads(body)
        got += page["readings"]
        if not page["readings"]:
            return got
        after = page["cursor"]


def wait_committed(sys_, n, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = committed(sys_)
        if len(got) >= n:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{n} readings not committed (have {len(committed(sys_))})")


def wait_acked(sys_, newest, timeout=60):
    """Until the bridge says the out broker acknowledged everything up to `newest`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (metric(sys_, "telemetry_mqtt_out_acked_id") or 0) >= newest:
            return
        time.sleep(0.1)
    raise AssertionError(f"republished readings not acknowledged up to {newest}: "
                         f"acked {metric(sys_, 'telemetry_mqtt_out_acked_id')}")


class PahoSub:
    """A Paho MQTT 5 client subscribed at QoS 1; collects (topic, id user property, payload, retain)."""

    def __init__(self, sys_, topic, name):
        self.messages, self.lock = [], threading.Lock()
        self.epochs = set()  # the epoch user properties seen
        self.subscribed = threading.Event()
        self.c = mqtt.Client(client_id=name, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.c.connect("127.0.0.1", sys_.mqtt_port)
        self.c.loop_start()
        check(self.subscribed.wait(10), "paho subscribed")

    def _on_message(self, client, userdata, msg):
        props = dict(getattr(msg.properties, "UserProperty", []) or [])
        with self.lock:
            self.messages.append((msg.topic, props.get("id"), msg.payload.decode(), bool(msg.retain)))
            self.epochs.add(props.get("epoch"))

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class MosquittoSub:
    """mosquitto_sub (MQTT 5, QoS 1) writing 'topic<TAB>user property<TAB>payload' lines to a file."""

    def __init__(self, sys_, topic):
        self.path = os.path.join(sys_.dir, "mosquitto_sub.out")
        self.f = open(self.path, "w")
        self.p = subprocess.Popen(["mosquitto_sub", "-p", str(sys_.mqtt_port), "-V", "mqttv5", "-q", "1",
                                   "-t", topic, "-t", "probe/#", "-F", "%t\t%P\t%p"], stdout=self.f)
        # Ready once it receives what is published after it subscribed.
        deadline = time.time() + 10
        while time.time() < deadline and "probe/x" not in open(self.path).read():
            sys_.pub("probe/x", "1")
            time.sleep(0.1)
        check("probe/x" in open(self.path).read(), "mosquitto_sub subscribed")

    def lines(self):
        self.f.flush()
        out = []
        for line in open(self.path).read().splitlines():
            t, prop, payload = line.split("\t", 2)
            if not t.startswith("probe/"):
                props = dict(kv.partition(":")[::2] for kv in prop.split())  # "id:5 epoch:0a1b2c3d"
                out.append((t, props.get("id"), payload, False))
        return out

    def close(self):
        self.p.terminate()
        self.p.wait(10)
        self.f.close()


def check_stream(what, msgs, readings):
    """msgs (topic, id property, payload) of the stream topics: every committed reading once, in
    id order, the payload exactly its JSON of the HTTP API, its id also the user property; a
    reading sent again (a restart between PUBACK and recording it) repeats the same message."""
    by_id = {r["id"]: r for r in readings}
    first, repeats = {}, 0
    order = []
    for topic, prop, payload, _ in msgs:
        doc = json.loads(payload)
        i = doc["id"]
        check(prop == str(i), f"{what}: user property id {prop} for payload id {i}")
        check(i in by_id, f"{what}: id {i} was republished but is not committed")
        check(doc == by_id[i], f"{what}: payload {payload} differs from the API's {by_id[i]}")
        check(topic == f"out/{doc['sensor']}/{doc['metric']}", f"{what}: topic {topic} for {payload}")
        if i in first:
            repeats += 1
            check(first[i] == payload, f"{what}: a repeat of {i} with another payload")
            continue
        first[i] = payload
        order.append(i)
    want = [r["id"] for r in readings]
    missing = sorted(set(want) - set(order))
    check(not missing, f"{what}: {len(missing)} committed readings never republished, e.g. {missing[:5]}")
    check(order == want, f"{what}: not in id order")
    check(repeats <= 2 * MAX_INFLIGHT, f"{what}: {repeats} repeats, more than could be unrecorded")
    return repeats


def stream_only(msgs):
    return [m for m in msgs if m[0].count("/") == 2 and not m[0].endswith("/status")]


def case_once_across_kill(sys_):
    """Readings published while the bridge is SIGKILLed and restarted: mosquitto_sub and a Paho
    client see each committed reading (and nothing else) once, in id order, with its id."""
    msub = MosquittoSub(sys_, "out/+/+")
    paho = PahoSub(sys_, "out/+/+", "paho-out-test")
    sensors, per = 6, 500
    lines = [(f"sensors/k{s}/t", json.dumps({"value": n + s / 10, "seq": n})) for s in range(sensors)
             for n in range(per)]
    pub = threading.Thread(target=sys_.pub_many, args=(lines,))
    pub.start()
    deadline = time.time() + 60
    while time.time() < deadline and (metric(sys_, "telemetry_mqtt_out_published_total") or 0) < 600:
        time.sleep(0.02)
    sys_.kill_bridge()  # mid-stream: readings committed, some republished, some in flight
    time.sleep(0.5)
    sys_.start_bridge()
    pub.join(120)
    readings = wait_committed(sys_, sensors * per)
    check(len(readings) == sensors * per, f"{len(readings)} committed, {sensors * per} published")
    wait_acked(sys_, readings[-1]["id"])
    deadline = time.time() + 30
    while time.time() < deadline and (len({m[1] for m in stream_only(paho.snapshot())}) < len(readings) or
                                      len({m[1] for m in stream_only(msub.lines())}) < len(readings)):
        time.sleep(0.1)
    r1 = check_stream("mosquitto_sub", stream_only(msub.lines()), readings)
    r2 = check_stream("paho", stream_only(paho.snapshot()), readings)
    check(metric(sys_, "telemetry_mqtt_out_lag_ids") == 0, "no lag once everything is acknowledged")
    print(f"{len(readings)} readings, repeats after the SIGKILL: mosquitto_sub {r1}, paho {r2}")
    msub.close()
    paho.close()


def case_filtered_inputs(sys_):
    """Rejected payloads and topics, and a duplicate (same seq and ts), are not republished;
    presence is, retained, as {"sensor","online"}."""
    paho = PahoSub(sys_, "out/#", "paho-out-filtered")
    now = int(time.time() * 1000)
    dup = json.dumps({"value": 5, "ts": now - 1000, "seq": 7})
    for topic, payload in [("sensors/a/t", "1"), ("sensors/a/t", dup), ("sensors/a/t", dup),
                           ("sensors/a/t", "not a number"), ("sensors/a/t", '{"value": null}'),
                           ("sensors/bad name/t", "2"), ("sensors/a/status", "maybe"),
                           ("sensors/b/h", json.dumps({"value": 3, "ts": now + 10 ** 9}))]:
        sys_.pub(topic, payload)
    subprocess.run(["mosquitto_pub", "-p", str(sys_.mqtt_port), "-q", "1", "-r", "-t", "sensors/a/status",
                    "-m", "online"], check=True)
    sys_.pub("sensors/a/t", "9")  # the last one: once it is republished, everything before is
    readings = wait_committed(sys_, 3)
    time.sleep(0.5)
    readings = committed(sys_)
    check([r["value"] for r in readings] == [1, 5, 9], f"committed: {readings}")
    wait_acked(sys_, readings[-1]["id"])
    deadline = time.time() + 10
    while time.time() < deadline and not any(m[0] == "out/a/status" for m in paho.snapshot()):
        time.sleep(0.1)
    msgs = paho.snapshot()
    check_stream("paho", stream_only(msgs), readings)
    status = [m for m in msgs if m[0] == "out/a/status"]
    check(status and json.loads(status[-1][2]) == {"sensor": "a", "online": True}, f"presence republished: {status}")
    others = {m[0] for m in msgs} - {"out/a/t", "out/a/status", "out/latest/a/t"}
    check(not others, f"nothing else republished: {others}")
    check(metric(sys_, "telemetry_mqtt_out_published_total") == 3, "3 readings republished")
    paho.close()


def case_retained_latest(sys_):
    """The retained message under out/latest/<sensor>/<metric> is the series' /latest (greatest
    ts), also when a late reading (older ts) was committed after it, and after a restart."""
    now = int(time.time() * 1000)
    pubs = []
    for s in range(4):
        for k in range(5):
            pubs.append((f"sensors/r{s}/t", json.dumps({"value": s * 10 + k, "ts": now - 60_000 + k * 1000})))
        pubs.append((f"sensors/r{s}/t", json.dumps({"value": -1, "ts": now - 120_000})))  # late
    sys_.pub_many(pubs)
    readings = wait_committed(sys_, len(pubs))
    wait_acked(sys_, readings[-1]["id"])
    sys_.bridge.terminate()
    sys_.bridge.wait(10)
    sys_.start_bridge()
    sys_.pub("sensors/r0/t", json.dumps({"value": 99, "ts": now - 500}))  # r0's new latest
    readings = wait_committed(sys_, len(pubs) + 1)
    wait_acked(sys_, readings[-1]["id"])
    paho = PahoSub(sys_, "out/latest/#", "paho-out-retained")
    deadline = time.time() + 10
    while time.time() < deadline and len(paho.snapshot()) < 4:
        time.sleep(0.1)
    time.sleep(0.3)
    got = {m[0]: m for m in paho.snapshot()}
    check(len(got) == 4, f"one retained message per series: {sorted(got)}")
    for s in range(4):
        _, _, body = sys_.request(f"/api/v1/sensors/r{s}/t/latest")
        topic, prop, payload, retained = got[f"out/latest/r{s}/t"]
        check(retained, f"{topic} is retained")
        check(json.loads(payload) == json.loads(body), f"{topic}: {payload} is not /latest {body}")
        check(prop == str(json.loads(body)["id"]), f"{topic}: id property {prop}")
    _, _, body = sys_.request("/api/v1/updates?timeout=0")
    epoch = json.loads(body)["cursor"].partition("@")[2]
    check(paho.epochs == {epoch}, f"epoch user property {paho.epochs}, the database's is {epoch}")
    check(json.loads(got["out/latest/r0/t"][2])["value"] == 99, "r0's latest follows the restart")
    paho.close()


class Broker:
    """A second Mosquitto (the out broker), persistent, so a subscriber's session outlives a stop."""

    def __init__(self, dir_, port):
        self.port, self.dir = port, os.path.join(dir_, "out-broker")
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(mosquitto_conf(port, f"persistence true\npersistence_location {self.dir}/\n"))
        self.p = None

    def start(self):
        self.p = start_mosquitto(self.conf, self.port)

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.terminate()  # saves its persistence file
            self.p.wait(10)


def session_client(port, on_message=None):
    """A Paho MQTT 5 client with a persistent session (clean start off, expiry 300 s)."""
    c = mqtt.Client(client_id="paho-out-session", protocol=mqtt.MQTTv5)
    if on_message:
        c.on_message = on_message
    props = mqtt.Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 300
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    return c


def case_out_broker_away(sys_):
    """The out broker is away while readings are committed, then goes away again in the middle of
    republishing: the republisher falls behind (lag), holds nothing for it in memory, and once the
    broker is back catches up from storage, so a subscriber with a persistent session gets every
    reading once, in id order."""
    broker = Broker(sys_.dir, OUT_PORT)
    try:
        broker.start()
        subscribed = threading.Event()
        c = session_client(OUT_PORT)
        c.on_subscribe = lambda *a: subscribed.set()
        c.loop_start()
        c.subscribe("away/+/+", qos=1)
        check(subscribed.wait(10), "session subscribed")
        c.loop_stop()
        c.disconnect()
        broker.stop()
        sys_.pub_many([(f"sensors/w{s}/t", json.dumps({"value": n, "seq": n})) for s in range(4) for n in range(500)])
        readings = wait_committed(sys_, 2000)
        check(metric(sys_, "telemetry_mqtt_out_connected") == 0, "not connected while the out broker is away")
        check(metric(sys_, "telemetry_mqtt_out_lag_ids") == readings[-1]["id"], "the lag shows what waits")
        broker.start()
        wait_acked(sys_, readings[-1]["id"])
        # Then the out broker goes away while readings are being republished, and comes back.
        sys_.pub_many([(f"sensors/w{s}/t", json.dumps({"value": n, "seq": n})) for s in range(4)
                       for n in range(500, 2500)])
        deadline = time.time() + 30
        while time.time() < deadline and (metric(sys_, "telemetry_mqtt_out_acked_id") or 0) < readings[-1]["id"] + 300:
            time.sleep(0.01)
        broker.stop()
        stopped_at = metric(sys_, "telemetry_mqtt_out_acked_id")
        readings = wait_committed(sys_, 10000)
        broker.start()
        wait_acked(sys_, readings[-1]["id"])
        got, lock = [], threading.Lock()

        def on_message(client, userdata, msg):
            with lock:
                got.append((msg.topic, dict(msg.properties.UserProperty).get("id"), msg.payload.decode(), False))
        c = session_client(OUT_PORT, on_message)
        c.loop_start()
        deadline = time.time() + 60
        while time.time() < deadline and len({m[1] for m in got}) < len(readings):
            time.sleep(0.1)
        time.sleep(0.3)
        c.loop_stop()
        c.disconnect()
        with lock:
            msgs = [(t.replace("away/", "out/", 1), i, p, r) for t, i, p, r in got]
        repeats = check_stream("paho (persistent session)", msgs, readings)
        print(f"out broker stopped with {stopped_at} of {readings[-1]['id']} acknowledged; {repeats} repeats")
    finally:
        broker.stop()


def case_config_loop(_sys):
    """A prefix that the ingest subscription would read back is refused at start-up."""
    bridge = os.path.join(BUILD, "broker-bridge", "broker-bridge")
    with tempfile.TemporaryDirectory() as d:
        for conf, key in [('[mqtt_out]\nprefix = "sensors"\n', "mqtt_out.prefix"),
                          ('[mqtt]\ntopic_prefix = "a/b"\n[mqtt_out]\nprefix = "a"\nretained_prefix = "a/b"\n',
                           "mqtt_out.retained_prefix"),
                          ('[mqtt]\ntopic_prefix = "plant/in"\n[mqtt_out]\nprefix = "plant/in"\n', "mqtt_out.prefix")]:
            path = os.path.join(d, "bridge.toml")
            with open(path, "w") as f:
                f.write(conf)
            p = subprocess.run([bridge, "--config", path, "--http", "127.0.0.1:0", "--db", os.path.join(d, "t.db")],
                               capture_output=True, text=True, timeout=30)
            check(p.returncode == 2, f"{conf!r}: exit {p.returncode}, {p.stderr}")
            check(key in p.stderr and "feedback loop" in p.stderr, f"{conf!r}: says why: {p.stderr}")
            check(not os.path.exists(os.path.join(d, "t.db")), "refused before opening storage")


CASES = {
    "once_across_kill": (case_once_across_kill, OUT_CONF),
    "filtered_inputs": (case_filtered_inputs, OUT_CONF),
    "retained_latest": (case_retained_latest, OUT_CONF),
    "config_loop": (case_config_loop, ""),
    "out_broker_away": (case_out_broker_away,
                        f'[mqtt_out]\nprefix = "away"\nurl = "tcp://127.0.0.1:{OUT_PORT}"\nmax_queued = 50\n'
                        '[mqtt]\nreconnect_min_s = 1\nreconnect_max_s = 2\n'),
}

if __name__ == "__main__":
    run_case("mqtt out", CASES, BUILD, CASE)
