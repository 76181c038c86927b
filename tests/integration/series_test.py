#!/usr/bin/python3
"""Series created by whoever publishes: the cap (ingest.max_series) and a paged, filtered
/api/v1/sensors (docs/api.md sections 3.3 and 8.3), with mosquitto_pub and http.client.
Usage: series_test.py BUILD_DIR CASE
"""
import json
import os
import sys
import time

from bridge_system import System, check, cursor_id, metric, run_case

BUILD = sys.argv[1]
CASE = sys.argv[2]




def committed(sys_, n):
    deadline = time.time() + 20
    while time.time() < deadline:
        s, _, body = sys_.request("/api/v1/updates?timeout=0")
        if s == 200 and cursor_id(json.loads(body)["cursor"]) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{n} readings not committed")


def case_cap(sys_):
    """With ingest.max_series = 5: readings of the first five series are stored, a sixth series
    is rejected and counted (series_limit), known series go on; in a SenML pack only the new
    series. records are dropped."""
    sys_.pub_many([(f"sensors/s{i}/t", "1") for i in range(5)])
    committed(sys_, 5)
    sys_.pub_many([(f"sensors/s{i}/t", "2") for i in range(5, 40)])
    sys_.pub("sensors/s0/t", "3")
    committed(sys_, 6)
    time.sleep(0.5)
    _, _, body = sys_.request("/api/v1/sensors")
    series = {f"{x['sensor']}/{x['metric']}" for x in json.loads(body)["series"]}
    check(series == {f"s{i}/t" for i in range(5)}, f"only the first five series: {sorted(series)}")
    check(metric(sys_, 'telemetry_ingest_rejects_total{reason="series_limit"}') == 35,
          "35 readings of new series rejected as series_limit")
    # A SenML pack with a known and a new series: the known one's record is stored.
    sys_.pub("sensors/s1/pack", json.dumps([{"bn": "", "n": "t", "v": 7}, {"n": "u", "v": 8}]))
    deadline = time.time() + 10
    while time.time() < deadline:
        _, _, body = sys_.request("/api/v1/sensors/s1/t/latest")
        if json.loads(body).get("value") == 7:
            break
        time.sleep(0.05)
    check(json.loads(body).get("value") == 7, f"the known series' record of the pack is stored: {body[:120]}")
    s, _, _ = sys_.request("/api/v1/sensors/s1/u/latest")
    check(s == 404, f"the new series' record is not: {s}")
    err = open(os.path.join(sys_.dir, "bridge.err")).read()
    check("series_limit" in err and "ingest.max_series" in err, "the log says why")


def case_sensors_page(sys_):
    """/api/v1/sensors?topic=...&limit=N&after=sensor/metric: filtered, paged with "next", each
    page revalidates with its own tag; bad parameters are 400."""
    sys_.pub_many([(f"sensors/k{i:02d}/{m}", "1") for i in range(12) for m in ("temp", "hum")])
    committed(sys_, 24)
    s, _, body = sys_.request("/api/v1/sensors")
    every = [f"{x['sensor']}/{x['metric']}" for x in json.loads(body)["series"]]
    check(len(every) == 24 and "next" not in json.loads(body), "unpaged: all 24, no next")
    got, after, pages = [], None, 0
    while True:
        q = "/api/v1/sensors?limit=5" + (f"&after={after}" if after else "")
        s, h, body = sys_.request(q)
        check(s == 200, f"{q}: {s}")
        page = json.loads(body)
        got += [f"{x['sensor']}/{x['metric']}" for x in page["series"]]
        pages += 1
        s2, _, _ = sys_.request(q, {"If-None-Match": h["etag"]})
        check(s2 == 304, f"a page revalidates: {s2}")
        if "next" not in page:
            break
        after = page["next"]
    check(got == every and pages == 5, f"pages of 5 give every series once, in order ({pages} pages)")
    s, _, body = sys_.request("/api/v1/sensors?topic=sensors/%2B/hum")
    hum = [x["metric"] for x in json.loads(body)["series"]]
    check(s == 200 and len(hum) == 12 and set(hum) == {"hum"}, f"topic filter: {hum}")
    s, _, body = sys_.request("/api/v1/sensors?topic=sensors/k03/%23&topic=sensors/k04/temp")
    check([f"{x['sensor']}/{x['metric']}" for x in json.loads(body)["series"]] == ["k03/hum", "k03/temp", "k04/temp"],
          f"several filters: {body[:200]}")
    for bad in ("limit=0", "limit=x", "after=nosuch", "topic=sensors/%23/x", "foo=1"):
        s, _, body = sys_.request("/api/v1/sensors?" + bad)
        check(s == 400 and json.loads(body)["error"]["code"] == "bad_parameter", f"{bad}: {s}")


CASES = {
    "cap": (case_cap, "[ingest]\nmax_series = 5\n"),
    "sensors_page": (case_sensors_page, ""),
}

if __name__ == "__main__":
    run_case("series", CASES, BUILD, CASE)
