"""Test support: a private Mosquitto and broker-bridge on free loopback ports, for tests that
drive the bridge with third-party clients (python3-websockets, http.client). Stopped by PID."""
import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time



def cursor_id(cursor):
    """The reading id of a cursor as the bridge hands it out, `N@E` (docs/api.md 2.1), or of a bare id."""
    return int(str(cursor).split("@", 1)[0])

def check(cond, what):
    if not cond:
        raise AssertionError(what)


def rss_kib(pid):
    """Resident memory of a process (VmRSS), KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def descriptors(pid):
    """Open file descriptors of a process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def metric(sys_, name):
    """The value of one /metrics line (`name` with its labels), or None."""
    _, _, body = sys_.request("/metrics")
    m = re.search(rf"^{re.escape(name)} (\d+)$", body.decode(), re.M)
    return int(m.group(1)) if m else None


def run_case(label, cases, build, case, ca_file=None):
    """Runs cases[case] = (fn, bridge configuration) against its own System, without any proxy of
    the environment; fn takes the System and may be a coroutine. Exits 1 on failure, with the
    bridge's log. ca_file: the bridge speaks HTTPS (System's ca_file)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(var, None)
    fn, conf = cases[case]
    s = System(build, conf, ca_file=ca_file)
    try:
        r = fn(s)
        if asyncio.iscoroutine(r):
            asyncio.run(r)
        print(f"{label} {case}: 1 passed, 0 failed")
    except Exception as e:
        print(f"{label} {case}: FAILED: {e!r}")
        print(open(os.path.join(s.dir, "bridge.err")).read()[-3000:])
        sys.exit(1)
    finally:
        s.stop()


def retire_third_reading(sys_):
    """For a bridge with retention of one day every second ([storage] retention_days = 1,
    retention_interval_s = 1): readings 1, 2 and 4 of sensors/y/temperature, 3 and 5 of
    sensors/x/temperature, where 3 is dated just inside the day, so retention deletes it moments
    later; returns once it has. A client resuming after 2 with x selected gets a reset
    (docs/api.md section 6), one selecting only y does not."""
    sys_.pub("sensors/y/temperature", "20")
    sys_.pub("sensors/y/temperature", "21")
    # 5 s inside the day when published: time enough to be accepted on a slow machine (an older
    # one is refused as out of range), and deleted within the wait below.
    now = int(time.time() * 1000)
    sys_.pub("sensors/x/temperature", json.dumps({"value": 5, "ts": now - 86_400_000 + 5_000}))
    sys_.pub("sensors/y/temperature", "22")
    sys_.pub("sensors/x/temperature", "6")

    def state():
        _, _, body = sys_.request("/api/v1/updates?timeout=0")
        _, _, sensors = sys_.request("/api/v1/sensors")
        x = next((s["count"] for s in json.loads(sensors)["series"] if s["sensor"] == "x"), 0)
        return cursor_id(json.loads(body)["cursor"]), x

    deadline = time.time() + 30
    while time.time() < deadline and state() != (5, 1):
        time.sleep(0.1)
    check(state() == (5, 1), "reading 3 deleted by retention")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_conf(port, extra=""):
    """A Mosquitto configuration: loopback listener on `port`, anonymous, Nagle off, a deep queue."""
    text = (f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
            f"max_queued_messages 1000000\n{extra}")
    return text + ("user root\n" if os.geteuid() == 0 else "")


def wait_port(port, seconds=10):
    """True once something accepts connections on 127.0.0.1:port, False after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def start_mosquitto(conf, port):
    """Runs `mosquitto -c conf` and waits until it accepts connections on `port`."""
    p = subprocess.Popen(["mosquitto", "-c", conf], stderr=subprocess.DEVNULL)
    if not wait_port(port):
        p.kill()
        raise AssertionError(f"mosquitto did not listen on {port}")
    return p


class System:
    """A private Mosquitto and bridge; stopped (by PID) when the case ends."""

    def __init__(self, build, bridge_conf="", listen="127.0.0.1:0", ca_file=None, mqtt_port=None):
        """ca_file: the bridge speaks HTTPS/WSS (bridge_conf sets [http] tls_cert and tls_key);
        clients trust this CA. mqtt_port: another System's broker (a second replica), not one of
        its own."""
        self.mosq = self.bridge = None
        self.ssl_ctx = ssl.create_default_context(cafile=ca_file) if ca_file else None
        try:
            self._start(build, bridge_conf, listen, mqtt_port)
        except BaseException:
            self.stop()  # what started must not outlive a failed start (it would hold ctest's pipe)
            raise

    def _start(self, build, bridge_conf, listen, mqtt_port):
        self.dir = tempfile.mkdtemp(prefix="telemetry-ws-")
        if mqtt_port:
            self.mqtt_port = mqtt_port
        else:
            self.mqtt_port = free_port()
            conf = os.path.join(self.dir, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write(mosquitto_conf(self.mqtt_port))
            self.mosq = start_mosquitto(conf, self.mqtt_port)
        bconf = os.path.join(self.dir, "bridge.toml")
        with open(bconf, "w") as f:
            f.write(bridge_conf)
        self._bridge_args = (build, bconf, listen)
        self.start_bridge()

    def start_bridge(self):
        """Starts the bridge (again, after kill_bridge: same configuration, database and port
        choice) and waits until it is ready."""
        build, bconf, listen = self._bridge_args
        # Append mode: the child writes at the end whatever this side's reads did to the shared file
        # offset (with "w+" a seek(0) here could make its next line overwrite the first).
        path = os.path.join(self.dir, "bridge.out")
        open(path, "w").close()  # a restart starts with an empty file
        self.out = open(path, "a+")
        self.bridge = subprocess.Popen(
            [os.path.join(build, "broker-bridge", "broker-bridge"), "--config", bconf, "--mqtt",
             f"tcp://127.0.0.1:{self.mqtt_port}", "--http", listen, "--db",
             os.path.join(self.dir, "bridge.db")],
            stdout=self.out, stderr=open(os.path.join(self.dir, "bridge.err"), "a"))
        self.port = None
        deadline = time.time() + 20
        while time.time() < deadline and self.port is None:
            self.out.seek(0)
            m = re.search(r"serving https://[0-9.]+:(\d+)" if self.ssl_ctx else r"serving http://[0-9.]+:(\d+)",
                          self.out.read())
            if m:
                self.port = int(m.group(1))
            time.sleep(0.05)
        assert self.port, "bridge did not start"
        while time.time() < deadline and b"200 OK" not in self.http("/readyz"):
            time.sleep(0.05)

    def kill_bridge(self):
        """SIGKILL: the bridge gets no chance to finish anything."""
        self.bridge.kill()
        self.bridge.wait(10)

    def connect(self):
        """A connected socket to the bridge: TLS (verified against the CA, name localhost) when
        the bridge speaks HTTPS."""
        s = socket.create_connection(("127.0.0.1", self.port))
        return self.ssl_ctx.wrap_socket(s, server_hostname="localhost") if self.ssl_ctx else s

    def http(self, target):
        with self.connect() as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data

    def url(self):
        if self.ssl_ctx:
            return f"wss://localhost:{self.port}/api/v1/ws"
        return f"ws://127.0.0.1:{self.port}/api/v1/ws"

    def pub(self, topic, payload):
        subprocess.run(["mosquitto_pub", "-p", str(self.mqtt_port), "-q", "1", "-t", topic, "-m", payload],
                       check=True)

    def pub_many(self, lines):
        """Publishes 'topic payload' lines through one mosquitto_pub connection per topic."""
        by_topic = {}
        for topic, payload in lines:
            by_topic.setdefault(topic, []).append(payload)
        for topic, payloads in by_topic.items():
            subprocess.run(["mosquitto_pub", "-p", str(self.mqtt_port), "-q", "1", "-t", topic, "-l"],
                           input="\n".join(payloads) + "\n", text=True, check=True)

    def stop(self):
        for p in (self.bridge, self.mosq):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)



    def request(self, target, headers=None, method="GET"):
        """One HTTP request: (status, headers as a lowercase dict, body bytes)."""
        if self.ssl_ctx:
            c = http.client.HTTPSConnection("localhost", self.port, timeout=10, context=self.ssl_ctx)
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, target, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()


class SSE:
    """A minimal EventSource over a raw socket: status line, then events as dicts."""

    def __init__(self, system, target, headers=None):
        self.s = system.connect()
        self.s.settimeout(10)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{extra}\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])
        self.closed = False

    def next(self, timeout=10):
        """The next event with data, or None on timeout or close."""
        end = time.time() + timeout
        while True:
            while b"\n\n" in self.buf:
                block, _, self.buf = self.buf.partition(b"\n\n")
                ev = {"event": "message"}
                for line in block.decode().split("\n"):
                    k, _, v = line.partition(": ")
                    if k in ("id", "event", "data"):
                        ev[k] = v
                if "data" in ev:
                    return ev
            left = end - time.time()
            if left <= 0 or self.closed:
                return None
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                self.closed = True
            self.buf += chunk

    def close(self):
        self.s.close()
