#!/usr/bin/env bash
# Live aggregates against raw streams: the bridge's CPU for STREAMS SSE subscribers to 1-minute
# buckets (`bucket=1m`, docs/api.md section 4.1) of SENSORS series, against STREAMS raw
# subscribers of the same readings, RATE readings/s in total. See "Live aggregates" in
# bench/README.md.
#
# Each run: a fresh Mosquitto and bridge, one stream-bench process (STREAMS SSE connections on
# `#`, the publisher round-robin over SENSORS sensors), WARMUP s unmeasured, DURATION s measured.
# Modes alternate raw, bucket, raw, bucket ... for ROUNDS rounds; medians per mode. The bucket
# streams receive one event per series and minute, so stream-bench waits only 1 s for the
# readings it would be owed (they never come); that idle second is inside the measured window of
# both modes.
#
# Usage: bench/buckets.sh [BUILD_DIR]   (or BUILD_DIR=...; default: this repository's build/)
# Environment: STREAMS=1000 SENSORS=1000 RATE=100 DURATION=60 WARMUP=5 ROUNDS=1 HTTP_THREADS=2
# Runtime: about 80 s per run (a measured minute holds one bucket boundary); hard limit 10 minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(realpath "${1:-${BUILD_DIR:-$here/../build}}")
: "${STREAMS:=1000}" "${SENSORS:=1000}" "${RATE:=100}" "${DURATION:=60}" "${WARMUP:=5}" "${ROUNDS:=1}"
bridge_bin=$build/broker-bridge/broker-bridge
bench_bin=$build/bench/stream-bench
LIMIT_S=600
BENCH_NAME=buckets-bench
source "$here/common.sh"
require_build "$build" broker-bridge stream-bench
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "buckets.sh: $(date '+%F %T'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg);" \
     "$STREAMS SSE streams on '#', $SENSORS sensors, $RATE readings/s, ${DURATION}s measured, $ROUNDS rounds"
results=$work/results.txt
: > "$results"
run_n=0
for ((round = 1; round <= ROUNDS; round++)); do
  for mode in raw bucket; do
    run_n=$((run_n + 1))
    check_time
    start_mosquitto
    launch_bridge "$bridge_bin" "$work/run$run_n" $((STREAMS + 1000))
    args=(--subscribers "$STREAMS" --sensors "$SENSORS" --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP"
          --settle 2 --drain 1 --drain-max 20 --qos 1)
    [[ $mode == bucket ]] && args+=(--sse-query bucket=1m)
    load=$(cut -d' ' -f1 /proc/loadavg)
    echo "== round $round, $mode (load $load): stream-bench ${args[*]}"
    rc=0
    timeout --signal=TERM --kill-after=10 120 "$bench_bin" --port "$bport" --mqtt "tcp://127.0.0.1:$mport" \
      --watch-pid "$bpid,$mpid" "${args[@]}" > "$work/bench.out" 2> "$work/bench.err" || rc=$?
    # Exit status 1 in bucket mode: the streams lack the readings they would be owed (by design).
    (( rc == 0 )) || echo "  (stream-bench exit status $rc)"
    hwm=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$bpid/status" 2>/dev/null || echo 0)
    sed -n "s/^RESULT /run=$mode round=$round load1=$load bridge_vmhwm_kib=${hwm:-0} /p" "$work/bench.out" |
      sed "s/ pid${bpid}_/ bridge_/g; s/ pid${mpid}_/ mosquitto_/g" >> "$results"
    stop_pid "$bpid"
    stop_pid "$mpid"
  done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(sys.argv[1]) if line.strip()]
for r in rows:
    print("RESULT", " ".join(f"{k}={r[k]}" for k in ("run", "round", "load1", "bridge_cpu_s", "bridge_cpu_pct", "wall_s",
                                                      "deliveries", "other_events", "disconnects", "bridge_vmhwm_kib")))
print("\n| mode | runs | bridge CPU % (median) | bridge CPU s | readings delivered | bucket events | peak RSS MiB |")
print("|---|---|---|---|---|---|---|")
for mode in ("raw", "bucket"):
    rs = [r for r in rows if r["run"] == mode]
    if not rs:
        continue
    med = lambda k: statistics.median(float(r[k]) for r in rs)
    print(f"| {mode} | {len(rs)} | {med('bridge_cpu_pct'):.0f} | {med('bridge_cpu_s'):.2f} | {med('deliveries'):.0f} |"
          f" {med('other_events'):.0f} | {med('bridge_vmhwm_kib') / 1024:.0f} |")
PY
