#!/usr/bin/env bash
# Soak: the bridge for SOAK_S seconds (an hour by default) at a realistic load, sampled every
# SAMPLE_S seconds into a CSV: resident memory, open descriptors, WAL size, p50/p99 latency of
# live deliveries. Ends with each figure's least-squares slope after the warm-up and whether it
# stays flat (exit 1 when one does not). See "Soak" in bench/README.md. Not part of CI.
#
# Load: sensor-sim with SENSORS sensors at 1 Hz, QoS 1, through a private Mosquitto (persistence
# off, as the other benchmarks); bench/soak_driver.py with STREAMS streaming clients (half SSE,
# half WebSocket, each following one sensor), POLLERS pollers (half conditional GETs of a
# sensor's latest reading, half long polls) and CHURN_PER_S streaming clients leaving (half of
# them without a goodbye) and coming back, resuming after their last id, every second.
#
# Usage: bench/soak.sh [BUILD_DIR]   (or BUILD_DIR=...; default: this repository's build/)
# Environment: SOAK_S=3600 SAMPLE_S=10 SENSORS=200 STREAMS=500 POLLERS=100 CHURN_PER_S=5
#              HUB_WINDOW=12000 SOAK_CSV=soak.csv (kept) BRIDGE_TOML=FILE (appended to the bridge's
#              configuration) WARMUP_S (default: the time the hub window takes to fill plus 30 s,
#              or a sixth of the run up to 300 s if longer)
# The hub window (hub.window, readings kept in memory) is smaller than its default of 100,000 so
# that it is full after a minute: until then the bridge's memory grows by design (its cost per
# reading is measured by bench/hub_window_memory.py), which would hide or fake a trend.
# Runtime: SOAK_S plus about 10 s; hard limit SOAK_S + 300 s.
set -euo pipefail
build=$(realpath "${1:-${BUILD_DIR:-$(dirname "$0")/../build}}")
SOAK_S=${SOAK_S:-3600}
SAMPLE_S=${SAMPLE_S:-10}
SENSORS=${SENSORS:-200}
STREAMS=${STREAMS:-500}
POLLERS=${POLLERS:-100}
CHURN_PER_S=${CHURN_PER_S:-5}
HUB_WINDOW=${HUB_WINDOW:-12000}
fill_s=$((HUB_WINDOW / SENSORS + 30)) share_s=$((SOAK_S / 6 < 300 ? SOAK_S / 6 : 300))
WARMUP_S=${WARMUP_S:-$((fill_s > share_s ? fill_s : share_s))}
SOAK_CSV=$(realpath -m "${SOAK_CSV:-soak.csv}")
LIMIT_S=$((SOAK_S + 300))
bridge_bin=$build/broker-bridge/broker-bridge
sim_bin=$build/sensor-sim/sensor-sim
for b in "$bridge_bin" "$sim_bin"; do
  [[ -x $b ]] || { echo "missing $b (build first: cmake --build $build --target broker-bridge sensor-sim)" >&2; exit 1; }
done
command -v mosquitto >/dev/null || { echo "mosquitto not installed" >&2; exit 1; }
/usr/bin/python3 -c 'import websockets' || { echo "python3-websockets not installed (tools/install-deps.sh)" >&2; exit 1; }
BENCH_NAME=soak
source "$(dirname "$0")/common.sh"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

start_mosquitto
launch_bridge "$bridge_bin" "$work/bridge" $((STREAMS + POLLERS + 500)) \
  "$(printf '[hub]\nwindow = %s\n' "$HUB_WINDOW"; cat "${BRIDGE_TOML:-/dev/null}")"
echo "soak: bridge pid $bpid on port $bport, Mosquitto on $mport; ${SOAK_S} s, sample every ${SAMPLE_S} s"
echo "soak: $SENSORS sensors at 1 Hz, $STREAMS streaming clients, $POLLERS pollers, churn $CHURN_PER_S/s," \
     "hub window $HUB_WINDOW, warm-up $WARMUP_S s"

"$sim_bin" --mqtt "tcp://127.0.0.1:$mport" --sensors "$SENSORS" --rate 1 --qos 1 --duration 0 --drain-timeout 2 --quiet \
  > "$work/sim.log" 2>&1 &
pids+=("$!")

status=0
/usr/bin/python3 "$(dirname "$0")/soak_driver.py" --port "$bport" --pid "$bpid" --db "$work/bridge/telemetry.db" \
  --seconds "$SOAK_S" --sample-s "$SAMPLE_S" --sensors "$SENSORS" --streams "$STREAMS" --pollers "$POLLERS" \
  --churn-per-s "$CHURN_PER_S" --warmup-s "$WARMUP_S" --csv "$SOAK_CSV" || status=$?
check_time
kill -0 "$bpid" 2>/dev/null || { echo "soak: the bridge died:" >&2; tail -20 "$work/bridge/err.log" >&2; exit 1; }
echo "soak: bridge: stored $(metric "$bport" telemetry_readings_stored_total) readings," \
     "slow disconnects $(metric "$bport" telemetry_stream_slow_disconnects_total)," \
     "errors logged $(grep -c -i error "$work/bridge/err.log" || true); CSV: $SOAK_CSV"
exit "$status"
