"""Test support: the secure example of conf/secure/ run as its README says, in a private folder
laid out like the repository (conf/secure/certs, conf/secure/passwd, data/secure): certificates
from tools/make-certs.sh, the shipped mosquitto.conf (only its port changed) and ACL, and a
broker-bridge reading over TLS with a password. Processes are stopped by PID."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import tomllib

from bridge_system import free_port, wait_port

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECURE = os.path.join(SOURCE, "conf", "secure")


class SecureBroker:
    """Mosquitto with the TLS listener, password file and ACL of conf/secure/."""

    def __init__(self, users, server_name=None, acl_extra=""):
        """users: {name: password}, written to conf/secure/passwd as the README does.
        server_name: serve a certificate from the same CA that names only this host instead.
        acl_extra: lines appended to the shipped ACL."""
        self.dir = tempfile.mkdtemp(prefix="telemetry-tls-")
        self.proc = None
        self.users = dict(users)
        self.server_name = server_name
        self.acl_extra = acl_extra
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    @property
    def ca(self):
        return self.path("conf", "secure", "certs", "ca.pem")

    def _start(self):
        os.makedirs(self.path("conf", "secure"))
        os.makedirs(self.path("data", "secure"))
        subprocess.run([os.path.join(SOURCE, "tools", "make-certs.sh"), self.path("conf", "secure", "certs")],
                       check=True, stdout=subprocess.DEVNULL)
        if self.server_name:
            self._reissue_server_certificate()
        # user:password lines: the plain file sensor-sim reads, hashed in place by mosquitto_passwd.
        with open(self.path("users.txt"), "w") as f:
            f.writelines(f"{u}:{p}\n" for u, p in self.users.items())
        shutil.copy(self.path("users.txt"), self.path("conf", "secure", "passwd"))
        subprocess.run(["mosquitto_passwd", "-U", self.path("conf", "secure", "passwd")], check=True)
        shutil.copy(os.path.join(SECURE, "mosquitto.acl"), self.path("conf", "secure", "mosquitto.acl"))
        with open(self.path("conf", "secure", "mosquitto.acl"), "a") as f:
            f.write(self.acl_extra)
        with open(os.path.join(SECURE, "mosquitto.conf")) as f:
            shipped = f.read()
        for attempt in range(5):
            self.port = free_port()
            conf, n = re.subn(r"(?m)^listener 8883 127\.0\.0\.1$", f"listener {self.port} 127.0.0.1", shipped)
            assert n == 1, "conf/secure/mosquitto.conf no longer has 'listener 8883 127.0.0.1'"
            if os.geteuid() == 0:
                conf += "user root\n"  # else it drops to `mosquitto`, who cannot read our files
            with open(self.path("conf", "secure", "mosquitto.conf"), "w") as f:
                f.write(conf)
            self.err = open(self.path(f"mosquitto-{attempt}.err"), "w+")
            self.proc = subprocess.Popen(["mosquitto", "-c", "conf/secure/mosquitto.conf"], cwd=self.dir,
                                         stdout=self.err, stderr=self.err)
            if wait_port(self.port) and self.proc.poll() is None:
                return
            self.stop_broker()
        raise AssertionError("mosquitto did not start: " + self.log())

    def _reissue_server_certificate(self):
        """A valid certificate from our CA that does not name 127.0.0.1: only a host name check
        can refuse it."""
        certs = self.path("conf", "secure", "certs")
        ext = self.path("san.ext")
        with open(ext, "w") as f:
            f.write(f"subjectAltName=DNS:{self.server_name}\nextendedKeyUsage=serverAuth\n")
        run = lambda *argv: subprocess.run(argv, check=True, capture_output=True)
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
            f"/CN={self.server_name}", "-keyout", os.path.join(certs, "server.key"), "-out", self.path("server.csr"))
        run("openssl", "x509", "-req", "-in", self.path("server.csr"), "-CA", os.path.join(certs, "ca.pem"),
            "-CAkey", os.path.join(certs, "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", ext,
            "-out", os.path.join(certs, "server.pem"))

    def log(self):
        self.err.seek(0)
        return self.err.read()

    def url(self):
        return f"mqtts://127.0.0.1:{self.port}"

    def pub(self, user, password, topic, payload, extra=()):
        """mosquitto_pub over TLS, MQTT 5, QoS 1, with its debug lines: (exit code, output)."""
        argv = ["mosquitto_pub", "-V", "5", "-d", "-h", "127.0.0.1", "-p", str(self.port), "--cafile", self.ca,
                "-q", "1", "-t", topic, "-m", payload, *extra]
        if user is not None:
            argv += ["-u", user, "-P", password]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr

    def stop_broker(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def stop(self):
        self.stop_broker()
        shutil.rmtree(self.dir, ignore_errors=True)


def shipped_bridge_conf():
    """conf/secure/broker-bridge.toml as text, and parsed."""
    with open(os.path.join(SECURE, "broker-bridge.toml")) as f:
        text = f.read()
    return text, tomllib.loads(text)


class SecureBridge:
    """broker-bridge with conf/secure/broker-bridge.toml, run in the broker's folder (its relative
    certificate paths), over plain HTTP on a free port: `changes` replaces [mqtt] keys, `extra`
    is appended (further sections)."""

    def __init__(self, build, broker, changes=None, name="bridge", extra=""):
        self.broker = broker
        self.name = name
        text, _ = shipped_bridge_conf()
        # HTTPS is tested elsewhere; here the HTTP side stays plain so that http.client reads it.
        text = re.sub(r"(?m)^tls_(cert|key) = .*$", "", text)
        for key, value in (changes or {}).items():
            text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
            assert n == 1, f"conf/secure/broker-bridge.toml has no '{key} = ' line"
        conf = broker.path(f"{name}.toml")
        with open(conf, "w") as f:
            f.write(text + extra)
        self.out = open(broker.path(f"{name}.out"), "w+")
        self.err = open(broker.path(f"{name}.err"), "w+")
        self.proc = subprocess.Popen(
            [os.path.join(build, "broker-bridge", "broker-bridge"), "--config", conf, "--mqtt", broker.url(),
             "--http", "127.0.0.1:0", "--db", broker.path(f"{name}.db")],
            cwd=broker.dir, stdout=self.out, stderr=self.err)
        self.port = None
        deadline = time.time() + 20
        while time.time() < deadline and self.port is None and self.proc.poll() is None:
            self.out.seek(0)
            m = re.search(r"serving http://[0-9.]+:(\d+)", self.out.read())
            if m:
                self.port = int(m.group(1))
            time.sleep(0.05)
        assert self.port, "bridge did not start: " + self.log()

    def log(self):
        self.err.seek(0)
        return self.err.read()

    def ready(self):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", "/readyz")
            r = c.getresponse()
            r.read()
            return r.status == 200
        finally:
            c.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
