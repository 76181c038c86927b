#!/usr/bin/env python3
"""Writes the seed corpus fuzz/corpus/<target>/ from the examples of docs/api.md, conf/ and the
tests. Run from anywhere; it only (re)writes the files named here (seed-*), so inputs added
by hand or kept from fuzzing runs (regression-*) stay. Each file is one input in the format the
target's header comment describes."""
import base64, hashlib, hmac, json, os, pathlib

root = pathlib.Path(__file__).resolve().parent
corpus = root / "corpus"
repo = root.parent


def write(target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data if isinstance(data, bytes) else data.encode())


# fuzz_payload: byte 0 = limits mode, line 1 = topic, rest = payload.
payloads = {
    "json-object": '{"value": 21.37, "ts": 1732270000123, "seq": 42, "unit": "Cel"}',
    "json-rfc3339": '{"value": 21.5, "ts": "2024-11-22T11:00:00.5+01:00"}',
    "json-ts-string-ms": '{"value": 1, "ts": "1732270000123"}',
    "json-float-ts": '{"value": -3.5e2, "ts": 1.732270000123e12}',
    "json-null-value": '{"value": null}',
    "senml": '[{"bt": 1732270000, "bu": "Cel", "v": 21.4}, {"n": "humidity", "u": "%RH", "v": 48, "t": 1}]',
    "senml-relative": '[{"bn": "dev1", "bv": 10, "v": 1.5, "t": -5}, {"v": 2, "vs": "x"}]',
    "senml-no-v": '[{"vs": "on"}, {"vb": true}]',
    "bare": "21.37",
    "bare-exp": "  -1.5e-3\n",
    "nan": "NaN",
    "inf": "-Infinity",
    "overflow": "1e999",
    "string": '"21.5"',
    "deep": "[" * 20 + "]" * 20,
}
for i, (name, p) in enumerate(payloads.items()):
    mode = bytes([4 if i % 2 else 0])
    write("fuzz_payload", name, mode + b"sensors/kitchen/temperature\n" + p.encode())
write("fuzz_payload", "prefix-levels", b"\x08site/a/sensors/s-1/humidity\n48")
write("fuzz_payload", "status-topic", b"\x00sensors/kitchen/status\nonline")
write("fuzz_payload", "bad-topic", b"\x00sensors/k+/temperature\n1")

# fuzz_topic: filter, second filter, topic.
topics = {
    "plus": "sensors/+/temperature\nsensors/kitchen/#\nsensors/kitchen/temperature",
    "hash": "#\n+/+\n$SYS/broker/load",
    "parent": "sensors/kitchen/#\nsensors/+\nsensors/kitchen",
    "empty-levels": "a//+\n+/+/b\na//b",
    "bad-hash": "a/#/b\nsensors/#\nsensors/a/b",
    "bad-plus": "a/b+\n+\nb",
    "deep": "a/" * 8 + "#\n" + "+/" * 9 + "+\n" + "a/" * 9 + "z",
}
for name, t in topics.items():
    write("fuzz_topic", name, t)

# fuzz_conditional: If-None-Match, If-Modified-Since, etag.
conds = {
    "imf": '"8c3f5d2a91b04e7f"\nSun, 06 Nov 1994 08:49:37 GMT\n"8c3f5d2a91b04e7f"',
    "rfc850": 'W/"a", "b"\nSunday, 06-Nov-94 08:49:37 GMT\n"b"',
    "asctime": "*\nSun Nov  6 08:49:37 1994\n\"x\"",
    "list-empty-elements": ' , "x" ,, W/"y"\nFri, 22 Nov 2024 10:00:00 GMT\n"y"',
    "garbled": '"unterminated\nFri, 31 Dec 9999 23:59:60 GMT\n"z"',
    "leap": '\nThu, 01 Jan 1970 00:00:00 GMT\n"0"',
}
for name, c in conds.items():
    write("fuzz_conditional", name, c)

# fuzz_ws_message: one client message.
ws = {
    "subscribe": {"op": "subscribe", "topic": "sensors/+/temperature"},
    "subscribe-after": {"op": "subscribe", "topic": "sensors/+/temperature", "after": 123},
    "conflate": {"op": "subscribe", "topic": "sensors/#", "policy": "conflate"},
    "unsubscribe": {"op": "unsubscribe", "topic": "sensors/+/temperature"},
    "bad-op": {"op": "dance", "topic": "x"},
    "bad-after": {"op": "subscribe", "topic": "#", "after": -3},
    "bad-policy": {"op": "subscribe", "topic": "x/#", "policy": "newest"},
    "big-after": {"op": "subscribe", "topic": "#", "after": 18446744073709551615},
}
for name, m in ws.items():
    write("fuzz_ws_message", name, json.dumps(m))
write("fuzz_ws_message", "not-object", "[1,2]")

# fuzz_config: the documented configuration and the README's auth example.
write("fuzz_config", "conf-broker-bridge", (repo / "conf" / "broker-bridge.toml").read_bytes())
write("fuzz_config", "auth", '''[auth]
jwt_hs256_keys = ["at least 32 random bytes, really!!"]
leeway_s = 30
[[auth.tokens]]
token = "a long random string"
topics = ["sensors/kitchen/#"]
[http]
allowed_origins = ["https://dash.example"]
listen = "0.0.0.0:8080"
rate_limit_per_s = 10.5
''')
write("fuzz_config", "bad-key", '[mqtt]\nkeepalive_s = 1\nunknown = true\n')
write("fuzz_config", "listen-v6", '[http]\nlisten = "[::1]:0"\n[ingest]\nmax_ts_past_s = 86400\n')

# fuzz_auth: byte 0 odd = header JSON + claims JSON (signed by the target); even = raw token.
now = 1732269600
jwts = {
    "jwt": ({"alg": "HS256", "typ": "JWT"}, {"sub": "dash", "exp": now + 3600, "topics": ["sensors/#"]}),
    "jwt-nbf-aud": ({"alg": "HS256"}, {"exp": now + 60, "nbf": now + 10, "aud": ["x", "telemetry"],
                                       "iss": "https://issuer.example", "topics": ["sensors/+/temperature"]}),
    "jwt-expired": ({"alg": "HS256"}, {"exp": now - 3600, "topics": ["#"]}),
    "jwt-none": ({"alg": "none"}, {"exp": now + 3600, "topics": ["#"]}),
    "jwt-bad-topic": ({"alg": "HS256"}, {"exp": now + 3600, "topics": ["a/#/b"]}),
    "jwt-float-exp": ({"alg": "HS256"}, {"exp": 1.7322732e9, "topics": ["sensors/a/#"]}),
}
for i, (name, (h, c)) in enumerate(jwts.items()):
    mode = 1 | (4 if "aud" in name else 0)
    write("fuzz_auth", name, bytes([mode]) + json.dumps(h).encode() + b"\n" + json.dumps(c).encode())
write("fuzz_auth", "static", b"\x00static-token-0123456789")


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


key = b"fuzz-key-0123456789abcdef0123456789abcdef"
signing = b64(b'{"alg":"HS256"}') + b"." + b64(json.dumps({"exp": now + 3600, "topics": ["#"]}).encode())
token = signing + b"." + b64(hmac.new(key, signing, hashlib.sha256).digest())
write("fuzz_auth", "raw-jwt", b"\x00" + token)
write("fuzz_auth", "raw-garbage", b"\x00a.b.c")

# fuzz_query: byte 0 = method/version/router bits, line 1 = target, then headers.
queries = {
    "sensors": (0, "/api/v1/sensors", []),
    "latest": (0, "/api/v1/sensors/kitchen/temperature/latest", ['If-None-Match: "8c3f5d2a91b04e7f"']),
    "latest-ims": (0, "/api/v1/sensors/kitchen/temperature/latest",
                   ["If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT"]),
    "readings-range": (0, "/api/v1/sensors/kitchen/temperature/readings?from=2024-11-22T00:00:00Z&to=2024-11-23T00:00:00Z&limit=1000", []),
    "readings-desc": (0, "/api/v1/sensors/kitchen/temperature/readings?limit=5&order=desc", ["Accept-Encoding: gzip"]),
    "readings-csv": (0, "/api/v1/sensors/kitchen/temperature/readings?from=1732230000000", ["Accept: text/csv"]),
    "readings-cursor": (0, "/api/v1/sensors/kitchen/temperature/readings?limit=2&cursor=a.1732269601000.2.00000000", []),
    "aggregate": (0, "/api/v1/sensors/kitchen/temperature/aggregate?bucket=1h&from=2024-11-22T00:00:00Z&to=2024-11-23T00:00:00Z", []),
    "aggregate-1m": (0, "/api/v1/sensors/edge/temperature/aggregate?bucket=1m", []),
    "aggregate-500ms": (0, "/api/v1/sensors/hall/humidity/aggregate?bucket=500ms&from=1732269600000&to=1732269700000", []),
    "updates": (0, "/api/v1/updates?topic=sensors/%2B/temperature&timeout=10", []),
    "updates-after": (0, "/api/v1/updates?after=1043&timeout=30&limit=500", []),
    "stream": (0, "/api/v1/stream?topic=sensors/%2B/temperature&after=1040&policy=conflate", ["Last-Event-ID: 12"]),
    "ws": (16, "/api/v1/ws?access_token=static-token-0123456789", []),
    "auth-bearer": (32, "/api/v1/sensors/kitchen/temperature/readings?limit=3",
                    ["Authorization: Bearer static-token-0123456789", "Origin: https://dash.example"]),
    "auth-forbidden": (32, "/api/v1/sensors/hall/humidity/latest", ["Authorization: Bearer static-token-0123456789"]),
    "preflight": (3 | 32, "/api/v1/sensors", ["Origin: https://dash.example", "Access-Control-Request-Method: GET"]),
    "metrics": (32, "/metrics", ["Authorization: Bearer metrics-token-0123456789"]),
    "host-rebinding": (0, "/api/v1/sensors", ["Host: evil.example:8080"]),
    "index": (0, "/?transport=sse", ["Accept-Encoding: gzip, deflate"]),
    "head": (2, "/api/v1/stream", []),
    "bad-param": (0, "/api/v1/sensors/kitchen/temperature/readings?limit=0&limit=2", []),
}
for name, (mode, target, headers) in queries.items():
    write("fuzz_query", name, bytes([mode]) + "\n".join([target] + headers).encode())
print("seeds written under", corpus)
