#!/usr/bin/python3
"""End-to-end tests of HTTPS and WSS (docs/api.md section 8.4) with clients the project did not
write: curl, Python's ssl/http.client and python3-websockets, all verifying the bridge's
certificate against a CA the test makes with tools/make-certs.sh. Also the handshake deadline
(slowloris) and the WebSocket message limit. Each case starts its own Mosquitto and bridge.
Usage: tls_test.py BUILD_DIR CASE
"""
import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import websockets

from bridge_system import SSE, System, cursor_id

BUILD = sys.argv[1]
CASE = sys.argv[2]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "static-token-for-everything-tls"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def make_certs(out, *names):
    subprocess.run([os.path.join(REPO, "tools", "make-certs.sh"), out, *names], check=True,
                   stdout=subprocess.DEVNULL)


def tls_conf(certs, extra=""):
    return f"""
[http]
tls_cert = "{certs}/server.pem"
tls_key = "{certs}/server.key"
handshake_timeout_s = 2
[auth]
[[auth.tokens]]
token = "{TOKEN}"
topics = ["#"]
{extra}"""


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def curl(sys_, path, *args):
    """curl against the bridge by the name in its certificate; returns (exit code, stdout)."""
    r = subprocess.run(["curl", "-sS", "--max-time", "10", *args, f"https://localhost:{sys_.port}{path}"],
                       capture_output=True, text=True)
    return r.returncode, r.stdout


def committed(sys_, n):
    deadline = time.time() + 20
    while time.time() < deadline:
        s, _, body = sys_.request("/api/v1/updates?timeout=0", AUTH)
        if s == 200 and cursor_id(json.loads(body)["cursor"]) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{n} readings not committed")


def peer_names(port, ca):
    """The names in the certificate a fresh TLS connection is offered."""
    ctx = ssl.create_default_context(cafile=ca)
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 5), server_hostname="localhost") as s:
        return {v for k, v in s.getpeercert()["subjectAltName"]}


async def case_https(sys_, certs):
    """curl and http.client over HTTPS with the test CA; without the CA, with TLS 1.1, or with
    plain HTTP, nothing is served."""
    sys_.pub("sensors/a/temperature", "21.5")
    committed(sys_, 1)
    rc, out = curl(sys_, "/api/v1/sensors/a/temperature/latest", "--cacert", f"{certs}/ca.pem",
                   "-H", f"Authorization: Bearer {TOKEN}")
    check(rc == 0 and json.loads(out)["value"] == 21.5, f"curl --cacert: rc {rc} {out[:200]}")
    rc, out = curl(sys_, "/api/v1/sensors/a/temperature/latest", "--cacert", f"{certs}/ca.pem")
    check(rc == 0 and '"unauthorized"' in out, f"no token over HTTPS is still 401: {out[:200]}")
    rc, _ = curl(sys_, "/healthz")
    check(rc == 60, f"curl without the CA refuses the certificate (exit 60): {rc}")
    rc, _ = curl(sys_, "/healthz", "--cacert", f"{certs}/ca.pem", "--tlsv1.1", "--tls-max", "1.1")
    check(rc != 0, f"TLS 1.1 is refused: curl exit {rc}")
    # Plain HTTP to the HTTPS port: the connection ends without an answer, nothing leaks.
    with socket.create_connection(("127.0.0.1", sys_.port), 5) as s:
        s.sendall(b"GET /api/v1/sensors HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        s.settimeout(5)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    check(b"series" not in data and not data.startswith(b"HTTP/1.1 200"), f"plain HTTP gets nothing: {data[:80]}")
    # Conditional GET over HTTPS: 304 with the tag.
    s, h, _ = sys_.request("/api/v1/sensors/a/temperature/latest", AUTH)
    s2, _, body = sys_.request("/api/v1/sensors/a/temperature/latest", {**AUTH, "If-None-Match": h["etag"]})
    check(s == 200 and s2 == 304 and body == b"", f"304 over HTTPS: {s} {s2}")
    # SSE over HTTPS: replay, then a live reading.
    sse = SSE(sys_, "/api/v1/stream?after=0", AUTH)
    check(sse.status == 200, f"SSE over HTTPS: {sse.status}")
    ev = sse.next()
    check(ev and json.loads(ev["data"])["value"] == 21.5, f"SSE replay over HTTPS: {ev}")
    sys_.pub("sensors/a/temperature", "22.5")
    ev = sse.next()
    check(ev and json.loads(ev["data"])["value"] == 22.5 and cursor_id(ev["id"]) == 2, f"SSE live over HTTPS: {ev}")
    sse.close()
    _, _, metrics = sys_.request("/metrics")
    check(b"telemetry_http_tls_handshake_failures_total " in metrics and
          b"telemetry_http_tls_handshake_failures_total 0\n" not in metrics,
          "the refused handshakes are counted")


async def case_wss(sys_, certs):
    """WSS with python3-websockets (compressed and not): subscribe, replay, live, and resume
    after a cursor on a new connection, with no gap and no duplicate."""
    sys_.pub_many([("sensors/a/temperature", str(i)) for i in range(10)])
    committed(sys_, 10)
    for compression in ("deflate", None):
        async with websockets.connect(sys_.url() + "?access_token=" + TOKEN, ssl=sys_.ssl_ctx,
                                      compression=compression) as ws:
            await ws.send(json.dumps({"op": "subscribe", "topic": "sensors/#", "after": 0}))
            ids = []
            while len(ids) < 10:
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if "id" in m:
                    ids.append(m["id"])
            check(ids == list(range(1, 11)), f"WSS replay ({compression}): {ids}")
    async with websockets.connect(sys_.url(), ssl=sys_.ssl_ctx, extra_headers=AUTH) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": "sensors/#", "after": 5}))
        ids = []
        sys_.pub_many([("sensors/a/temperature", str(i)) for i in range(10, 15)])
        while len(ids) < 10:
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if "id" in m:
                ids.append(m["id"])
        check(ids == list(range(6, 16)), f"WSS resume after 5, then live: {ids}")
    # A client that does not trust the CA is refused by its own TLS check.
    try:
        async with websockets.connect(sys_.url(), ssl=ssl.create_default_context()):
            check(False, "a client without the CA connected")
    except ssl.SSLCertVerificationError:
        pass


async def case_reload(sys_, certs):
    """SIGHUP reads the certificate again: new connections get the new one, a stream opened
    before keeps streaming; a broken certificate keeps the old one in use."""
    check("renewed.example" not in peer_names(sys_.port, f"{certs}/ca.pem"), "the first certificate")
    sse = SSE(sys_, "/api/v1/stream", AUTH)
    check(sse.status == 200, "stream before the reload")
    make_certs(certs, "renewed.example")  # same CA, new server certificate
    sys_.bridge.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and "renewed.example" not in peer_names(sys_.port, f"{certs}/ca.pem"):
        time.sleep(0.1)
    check("renewed.example" in peer_names(sys_.port, f"{certs}/ca.pem"), "new connections get the new certificate")
    sys_.pub("sensors/a/temperature", "1")
    ev = sse.next()
    check(ev and json.loads(ev["data"])["value"] == 1, f"the stream opened before the reload goes on: {ev}")
    # A broken key: the reload is refused, the renewed certificate stays in use, the bridge runs.
    with open(f"{certs}/server.key", "w") as f:
        f.write("not a key\n")
    sys_.bridge.send_signal(signal.SIGHUP)
    deadline = time.time() + 20  # the reload runs on an I/O thread: on a busy machine, a while
    while time.time() < deadline and "NOT reloaded" not in open(os.path.join(sys_.dir, "bridge.err")).read():
        time.sleep(0.1)
    check(sys_.bridge.poll() is None, "a failed reload does not stop the bridge")
    check("renewed.example" in peer_names(sys_.port, f"{certs}/ca.pem"), "the previous certificate stays")
    err = open(os.path.join(sys_.dir, "bridge.err")).read()
    check("NOT reloaded" in err and "server.key" in err, f"the log says why: {err[-400:]}")
    sys_.pub("sensors/a/temperature", "2")
    ev = sse.next()
    check(ev and json.loads(ev["data"])["value"] == 2, "the stream still goes on")
    sse.close()
    _, _, metrics = sys_.request("/metrics")
    check(b"telemetry_http_tls_reloads_total 1\n" in metrics, "one successful reload counted")


def closed_within(s, seconds):
    """True when the peer closes the connection within `seconds`."""
    s.settimeout(seconds)
    try:
        while s.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


async def case_handshake_timeout(sys_, certs):
    """A client that connects and sends nothing, or half a request a byte at a time, loses its
    connection after http.handshake_timeout_s (2 s here), on TLS and on plain HTTP; a client that
    keeps a connection open between requests is bound by the idle timeout instead."""
    t0 = time.time()
    with socket.create_connection(("127.0.0.1", sys_.port), 5) as s:
        check(closed_within(s, 8), "a silent connection is closed")
    check(time.time() - t0 < 6, f"within the handshake deadline: {time.time() - t0:.1f} s")
    # Through TLS, a request line then one header byte every 0.3 s.
    t0 = time.time()
    s = sys_.connect()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    done = False
    while time.time() - t0 < 8 and not done:
        try:
            s.sendall(b"X")
            time.sleep(0.3)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            done = True
    if not done:
        done = closed_within(s, 1)
    s.close()
    check(done and time.time() - t0 < 6, f"slowloris through TLS cut after {time.time() - t0:.1f} s")
    # A normal client with keep-alive is served twice on one connection, 3 s apart (> 2 s).
    s = sys_.connect()
    s.settimeout(5)
    for _ in range(2):
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while not answer.endswith(b'{"status":"ok"}'):
            chunk = s.recv(4096)
            check(chunk, f"keep-alive request answered: {answer[:80]}")
            answer += chunk
        check(answer.startswith(b"HTTP/1.1 200"), "keep-alive request answered 200")
        time.sleep(3)
    s.close()


async def case_ws_message_size(sys_, certs):
    """stream.ws_max_message_bytes (1024 here): a larger message closes with 1009, a smaller
    malformed one gets an error and the connection stays."""
    async with websockets.connect(sys_.url(), ssl=sys_.ssl_ctx, extra_headers=AUTH, compression=None) as ws:
        await ws.send("x" * 1000)
        m = json.loads(await asyncio.wait_for(ws.recv(), 10))
        check(m.get("op") == "error", f"a 1000-byte bad message gets an error: {m}")
        await ws.send(json.dumps({"op": "subscribe", "topic": "sensors/#"}))
        check(json.loads(await asyncio.wait_for(ws.recv(), 10))["op"] == "subscribed", "still usable")
        await ws.send("x" * 2000)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.exceptions.ConnectionClosed as e:
            check(e.rcvd is not None and e.rcvd.code == 1009, f"closed with 1009: {e}")


CASES = {
    "https": (case_https, ""),
    "wss": (case_wss, "[hub]\nwindow = 16\n"),
    "reload": (case_reload, ""),
    "handshake_timeout": (case_handshake_timeout, ""),
    "ws_message_size": (case_ws_message_size, "[stream]\nws_max_message_bytes = 1024\n"),
}

if __name__ == "__main__":
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(var, None)
    fn, extra = CASES[CASE]
    certs = tempfile.mkdtemp(prefix="telemetry-certs-")
    make_certs(certs)
    s = None
    try:
        s = System(BUILD, tls_conf(certs, extra), ca_file=f"{certs}/ca.pem")
        asyncio.run(fn(s, certs))
        print(f"tls {CASE}: 1 passed, 0 failed")
    except Exception as e:
        print(f"tls {CASE}: FAILED: {e!r}")
        if s is not None:
            print(open(os.path.join(s.dir, "bridge.err")).read()[-3000:])
        sys.exit(1)
    finally:
        if s is not None:
            s.stop()
        subprocess.run(["rm", "-rf", certs])
