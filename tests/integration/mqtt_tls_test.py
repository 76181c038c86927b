#!/usr/bin/python3
"""MQTT over TLS with per-sensor credentials, end to end (docs/api.md section 9, conf/secure/): a
real Mosquitto with the shipped secure configuration and ACL, certificates from
tools/make-certs.sh, the bridge reading over TLS with a password, and sensor-sim and mosquitto_pub
publishing as sensors. Usage: mqtt_tls_test.py BUILD_DIR CASE"""
import http.client
import json
import os
import re
import subprocess
import sys
import time

from secure_broker import SOURCE, SecureBridge, SecureBroker, shipped_bridge_conf

BUILD = os.path.abspath(sys.argv[1])
CASE = sys.argv[2]

_, SHIPPED = shipped_bridge_conf()
BRIDGE_USER = SHIPPED["mqtt"]["username"]
BRIDGE_PASSWORD = SHIPPED["mqtt"]["password"]
TOKEN = next(t["token"] for t in SHIPPED["auth"]["tokens"] if t["topics"] == ["sensors/#"])
USERS = {BRIDGE_USER: BRIDGE_PASSWORD, "sim-0000": "pw-zero", "sim-0001": "pw-one", "kitchen": "pw-kitchen"}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def eventually(pred, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def get(bridge, target):
    c = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=10)
    try:
        c.request("GET", target, headers={"Authorization": f"Bearer {TOKEN}"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def series(bridge):
    status, body = get(bridge, "/api/v1/sensors")
    check(status == 200, f"/api/v1/sensors answered {status}: {body!r}")
    return {(s["sensor"], s["metric"]): s for s in json.loads(body)["series"]}


def values(bridge, sensor):
    status, body = get(bridge, f"/api/v1/sensors/{sensor}/temperature/readings?limit=10000")
    if status == 404:
        return []
    check(status == 200, f"readings of {sensor} answered {status}: {body!r}")
    return [r["value"] for r in json.loads(body)["readings"]]


def start(broker, **changes):
    return SecureBridge(BUILD, broker, changes)


def sim(broker, *extra):
    argv = [os.path.join(BUILD, "sensor-sim", "sensor-sim"), "--mqtt", broker.url(), "--ca-file", broker.ca,
            "--quiet", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def stats(out):
    return {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", out.strip().splitlines()[-1])}


def case_own_readings(broker):
    """Each simulated sensor logs in over TLS as itself (its line of the password file) and its
    readings are stored; the shipped ACL lets it write sensors/<its id>/#."""
    bridge = start(broker)
    try:
        check(eventually(bridge.ready), "bridge not ready over TLS: " + bridge.log())
        r = sim(broker, "--password-file", broker.path("users.txt"), "--sensors", "2", "--rate", "5",
                "--duration", "2", "--seed", "7", "--connect-timeout", "10")
        check(r.returncode == 0, f"sensor-sim failed ({r.returncode}): {r.stderr}")
        st = stats(r.stdout)
        check(st["sent"] >= 10 and st["acked"] == st["sent"] and st["failed"] == 0, f"not all acked: {r.stdout}")
        per_sensor = {}

        def stored():
            s = series(bridge)
            for sensor in ("sim-0000", "sim-0001"):
                per_sensor[sensor] = s.get((sensor, "temperature"), {}).get("count", 0)
            return sum(per_sensor.values()) == st["acked"]
        check(eventually(stored), f"stored {per_sensor}, acked {st['acked']}")
        check(all(n > 0 for n in per_sensor.values()), f"a sensor stored nothing: {per_sensor}")
        # Presence went through the same identities (status topics are under sensors/<id>/); the
        # offline status came after the readings, maybe in a later commit.
        check(eventually(lambda: series(bridge)[("sim-0000", "temperature")]["online"] is False),
              "offline status of sim-0000 not stored")
    finally:
        bridge.stop()


def case_other_sensor_refused(broker):
    """A sensor publishing under another sensor's id, with its own valid credentials, is refused
    by the broker (MQTT 5 PUBACK 0x87) and nothing of it is stored."""
    bridge = start(broker)
    try:
        check(eventually(bridge.ready), "bridge not ready: " + bridge.log())
        rc, out = broker.pub("sim-0000", USERS["sim-0000"], "sensors/sim-0001/temperature", "99.5")
        check("RC:135" in out, f"no PUBACK 0x87 (Not authorized) for a foreign topic: {out}")
        rc, out = broker.pub("sim-0000", USERS["sim-0000"], "sensors/kitchen/status", "offline", ["-r"])
        check("RC:135" in out, f"no PUBACK 0x87 for a foreign status: {out}")
        # The owner's own reading, after the forged ones: once it is stored, they would be too.
        rc, out = broker.pub("sim-0001", USERS["sim-0001"], "sensors/sim-0001/temperature", "21.5")
        check(rc == 0 and "RC:135" not in out, f"the owner's publish failed: {out}")
        check(eventually(lambda: values(bridge, "sim-0001") == [21.5]), f"stored {values(bridge, 'sim-0001')}")
        s = series(bridge)
        check(set(s) == {("sim-0001", "temperature")}, f"unexpected series: {sorted(s)}")
        check(99.5 not in values(bridge, "sim-0001"), "the forged reading was stored")
    finally:
        bridge.stop()


def case_wrong_password(broker):
    """A wrong password, or none, is refused at CONNECT, for mosquitto_pub and sensor-sim alike."""
    bridge = start(broker)
    try:
        check(eventually(bridge.ready), "bridge not ready: " + bridge.log())
        rc, out = broker.pub("sim-0000", "not-the-password", "sensors/sim-0000/temperature", "1.0")
        check(rc != 0 and "Not authorized" in out, f"a wrong password was not refused: rc={rc} {out}")
        rc, out = broker.pub(None, None, "sensors/sim-0000/temperature", "2.0")
        check(rc != 0 and "Not authorized" in out, f"an anonymous client was not refused: rc={rc} {out}")
        r = sim(broker, "--password", "not-the-password", "--sensors", "1", "--duration", "1",
                "--connect-timeout", "2")
        check(r.returncode == 1, f"sensor-sim with a wrong password exited {r.returncode}: {r.stderr}")
        check("sim-0000" in r.stderr and "cannot connect" in r.stderr, f"sensor-sim gave no reason: {r.stderr}")
        rc, out = broker.pub("sim-0000", USERS["sim-0000"], "sensors/sim-0000/temperature", "3.0")
        check(rc == 0, f"the right password was refused: {out}")
        check(eventually(lambda: values(bridge, "sim-0000") == [3.0]), f"stored {values(bridge, 'sim-0000')}")
    finally:
        bridge.stop()


def case_bridge_wrong_ca(broker):
    """A bridge that trusts another CA refuses the broker's certificate: not ready, the log says
    why, and it keeps retrying."""
    other = broker.path("other-ca")
    subprocess.run([os.path.join(SOURCE, "tools", "make-certs.sh"), other], check=True, stdout=subprocess.DEVNULL)
    bridge = start(broker, ca_file=json.dumps(os.path.join(other, "ca.pem")))
    try:
        check(eventually(lambda: bridge.log().count("cannot connect") >= 2),
              "no repeated connect failure logged: " + bridge.log())
        check("certificate verify failed" in bridge.log(), "the log does not say why: " + bridge.log())
        check(not bridge.ready(), "ready without a broker connection")
        check(bridge.proc.poll() is None, "the bridge gave up instead of retrying")
    finally:
        bridge.stop()


def case_bridge_wrong_password(broker):
    """A bridge with a wrong password is refused by the broker: not ready, the reason logged,
    retried; the right one then connects (the password is really sent)."""
    bridge = start(broker, password='"not-the-bridge-password"')
    try:
        check(eventually(lambda: bridge.log().count("cannot connect") >= 2),
              "no repeated connect failure logged: " + bridge.log())
        check("Not authorized" in bridge.log() or "Bad user name or password" in bridge.log(),
              "the log does not say why: " + bridge.log())
        check(not bridge.ready(), "ready although the broker refused it")
    finally:
        bridge.stop()
    good = SecureBridge(BUILD, broker, name="good")
    try:
        check(eventually(good.ready), "the right password did not connect: " + good.log())
    finally:
        good.stop()


def case_bridge_wrong_host(broker):
    """The broker's certificate is from the trusted CA but names another host: verify (the
    default) refuses it, saying so; verify = false connects, as documented, with a warning."""
    bridge = start(broker)
    try:
        check(eventually(lambda: bridge.log().count("cannot connect") >= 2),
              "no repeated connect failure logged: " + bridge.log())
        check("does not name the host" in bridge.log(), "the log does not say why: " + bridge.log())
        check(not bridge.ready(), "ready with a certificate for another host")
    finally:
        bridge.stop()
    lax = start(broker, verify="false")
    try:
        check(eventually(lax.ready), "verify = false did not connect: " + lax.log())
        check("NOT checked" in lax.log(), "no warning for verify = false: " + lax.log())
    finally:
        lax.stop()


REPUBLISH_ACL = "topic readwrite republished/#\n"  # for the bridge's user, after the shipped lines


def metric(bridge, name):
    c = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=10)
    try:
        c.request("GET", "/metrics", headers={"Authorization": f"Bearer {SHIPPED['auth']['metrics_token']}"})
        r = c.getresponse()
        status, body = r.status, r.read()
    finally:
        c.close()
    check(status == 200, f"/metrics answered {status}")
    m = re.search(rf"(?m)^{name} (\S+)$", body.decode())
    return float(m.group(1)) if m else None


def case_republish(broker):
    """[mqtt_out] inherits [mqtt]'s TLS, CA and password: committed readings reach a TLS
    subscriber of the out broker with their ids. The ACL lets the bridge's user write only
    republished/#, so the retained copies (under denied/) are refused by the broker: that is
    logged, and does not hold the stream or the acknowledged cursor back."""
    sub_out = open(broker.path("sub.out"), "w+")
    sub = subprocess.Popen(["mosquitto_sub", "-V", "5", "-h", "127.0.0.1", "-p", str(broker.port), "--cafile",
                            broker.ca, "-u", BRIDGE_USER, "-P", BRIDGE_PASSWORD, "-q", "1", "-t", "republished/#",
                            "-F", "%t\t%P\t%p"], stdout=sub_out, stderr=subprocess.STDOUT)

    def subscribed():  # a clean session: it receives only what is published once it is subscribed
        broker.pub(BRIDGE_USER, BRIDGE_PASSWORD, "republished/probe", "1")
        sub_out.seek(0)
        return "republished/probe\t" in sub_out.read()
    check(eventually(subscribed), "mosquitto_sub subscribed")
    bridge = SecureBridge(BUILD, broker, name="republisher",
                          extra='\n[mqtt_out]\nprefix = "republished"\nretained_prefix = "denied"\n')
    try:
        check(eventually(bridge.ready), "not ready: " + bridge.log())
        for n in range(3):
            rc, out = broker.pub("sim-0000", "pw-zero", "sensors/sim-0000/temperature",
                                 json.dumps({"value": 20 + n, "seq": n}))
            check(rc == 0, f"publish refused: {out}")
        check(eventually(lambda: values(bridge, "sim-0000") == [20.0, 21.0, 22.0]),
              f"stored {values(bridge, 'sim-0000')}")
        newest = metric(bridge, "telemetry_newest_id")

        def lines():
            sub_out.seek(0)
            return [l for l in sub_out.read().splitlines() if l.startswith("republished/sim-0000/temperature\t")]
        check(eventually(lambda: len(lines()) >= 3), "republished over TLS: " + repr(lines()) + bridge.log())
        got = [json.loads(l.split("\t", 2)[2]) for l in lines()]
        check([g["value"] for g in got] == [20, 21, 22], f"republished {got}")
        for l, g in zip(lines(), got):
            check(f"id:{g['id']}" in l.split("\t", 2)[1].split(), f"no id user property in {l!r}")
        check(eventually(lambda: "refused" in bridge.log()), "the refused retained copy is not logged: " + bridge.log())
        check(eventually(lambda: metric(bridge, "telemetry_mqtt_out_acked_id") == newest),
              f"acknowledged up to {metric(bridge, 'telemetry_mqtt_out_acked_id')} of {newest}: " + bridge.log())
    finally:
        bridge.stop()
        sub.terminate()
        sub.wait(10)
    # A CA the out broker's certificate is not from: the republisher cannot connect and says why,
    # while ingest (on [mqtt]'s CA) goes on.
    other = broker.path("other-ca")
    subprocess.run([os.path.join(SOURCE, "tools", "make-certs.sh"), other], check=True, stdout=subprocess.DEVNULL)
    wrong = SecureBridge(BUILD, broker, name="wrong-ca", extra=f'\n[mqtt_out]\nprefix = "republished"\n'
                         f'ca_file = {json.dumps(os.path.join(other, "ca.pem"))}\n')
    try:
        check(eventually(wrong.ready), "ingest not ready: " + wrong.log())
        check(eventually(lambda: wrong.log().count("mqtt_out: cannot connect") >= 2),
              "no repeated mqtt_out connect failure: " + wrong.log())
        check("certificate verify failed" in wrong.log(), "the log does not say why: " + wrong.log())
    finally:
        wrong.stop()


CASES = {name[len("case_"):]: f for name, f in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    b = SecureBroker(USERS, server_name="broker.invalid" if CASE == "bridge_wrong_host" else None,
                     acl_extra=REPUBLISH_ACL if CASE == "republish" else "")
    try:
        CASES[CASE](b)
    except BaseException:
        sys.stderr.write("mosquitto log:\n" + b.log())
        raise
    finally:
        b.stop()
    print(f"{CASE}: ok")
