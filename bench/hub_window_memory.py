#!/usr/bin/python3
"""What the hub window costs: the bridge's resident memory before and after 100,000 readings fill
its window, with short names and with 64-character sensor and metric names.
Usage: bench/hub_window_memory.py [BUILD_DIR]   (default: this repository's build/)"""
import sys, time, json, os
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "build")
from bridge_system import System, cursor_id, rss_kib as rss
for label, name in (("short", "s{i}"), ("64-char", "x"*60 + "{i:04d}")):
    s = System(BUILD, "[hub]\nwindow = 100000\n")
    try:
        time.sleep(1)
        r0 = rss(s.bridge.pid)
        lines = []
        for i in range(100000):
            sensor = name.format(i=i % 100)
            metric = "temperature" if label == "short" else "m" * 64
            lines.append((f"sensors/{sensor}/{metric}", json.dumps({"value": i * 0.5, "unit": "Cel", "seq": i // 100})))
        s.pub_many(lines)
        deadline = time.time() + 120
        while time.time() < deadline:
            st, _, body = s.request("/api/v1/updates?timeout=0")
            if cursor_id(json.loads(body)["cursor"]) >= 100000: break
            time.sleep(0.5)
        time.sleep(2)
        r1 = rss(s.bridge.pid)
        print(f"{label}: RSS {r0/1024:.1f} MB -> {r1/1024:.1f} MB, {(r1-r0)*1024/100000:.0f} bytes per reading in the window")
    finally:
        s.stop()
