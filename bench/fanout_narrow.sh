#!/usr/bin/env bash
# Fan-out with narrow filters, the common dashboard case: SENSORS sensors at RATE_PER_SENSOR
# readings/s each and STREAMS streams (SSE, then WebSocket), stream i subscribed to the topic of
# sensor i mod SENSORS only. See "Fan-out with narrow filters" in bench/README.md.
#
# Scenarios, each on a fresh Mosquitto and a fresh bridge (no retained status, no old session):
#   steady  streams connected, sensors publishing: the bridge's CPU per delivered reading,
#           deliveries/s, latency p50/p99/max (publish -> our receipt).
#   online  streams connected first, then every sensor comes online (retained `online` on
#           <prefix>/bench<k>/status, as sensor-sim does after a broker restart) and starts
#           publishing at once: time to the first reading on any stream, the share of streams
#           with a reading within FIRST_WITHIN s, and the status events each stream received.
#
# Several bridge binaries are compared in one run: each step runs them one after the other
# (A, B, A, B, ... with ROUNDS > 1, so machine load drifts hit both), medians per binary.
#
# Usage: bench/fanout_narrow.sh [BRIDGE ...]   (or BRIDGE=path; default
#        <this repo>/build/broker-bridge/broker-bridge)
# Environment: STREAM_BENCH=<this repo>/build/bench/stream-bench LABELS="A B ..." SENSORS=2000
#              STREAMS=2000 RATE_PER_SENSOR=1 DURATION=10 WARMUP=2 ONLINE_DURATION=15
#              FIRST_WITHIN=5 ROUNDS=1 SCENARIOS="steady online" TRANSPORTS="sse ws" QOS=1
#              HTTP_THREADS=2
# Runtime: about 2-2.5 minutes per bridge and round with the defaults; each stream-bench run is
# cut at 120 s.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if (( $# > 0 )); then bridges=("$@"); else bridges=("${BRIDGE:-$here/../build/broker-bridge/broker-bridge}"); fi
bench_bin=${STREAM_BENCH:-$here/../build/bench/stream-bench}
read -r -a labels <<< "${LABELS:-}"
: "${SENSORS:=2000}" "${STREAMS:=2000}" "${RATE_PER_SENSOR:=1}" "${DURATION:=10}" "${WARMUP:=2}"
: "${ONLINE_DURATION:=15}" "${FIRST_WITHIN:=5}" "${ROUNDS:=1}" "${QOS:=1}" "${HTTP_THREADS:=2}"
: "${SCENARIOS:=steady online}" "${TRANSPORTS:=sse ws}"
for t in $TRANSPORTS; do [[ $t == sse || $t == ws ]] || { echo "unknown transport '$t' (sse or ws)" >&2; exit 2; }; done
for s in $SCENARIOS; do [[ $s == steady || $s == online ]] || { echo "unknown scenario '$s' (steady or online)" >&2; exit 2; }; done
for b in "${bridges[@]}" "$bench_bin"; do [[ -x $b ]] || { echo "missing $b" >&2; exit 1; }; done
letters=(A B C D E F G H)
for i in "${!bridges[@]}"; do [[ -n ${labels[i]:-} ]] || labels[i]=${letters[i]:-$i}; done
command -v mosquitto >/dev/null || { echo "mosquitto not installed" >&2; exit 1; }
rate=$(awk -v s="$SENSORS" -v r="$RATE_PER_SENSOR" 'BEGIN {printf "%.10g", s * r}')
n_scen=$(wc -w <<< "$SCENARIOS") n_tr=$(wc -w <<< "$TRANSPORTS")
LIMIT_S=$(( ROUNDS * ${#bridges[@]} * n_scen * n_tr * 140 + 60 ))
BENCH_NAME=fanout-narrow
source "$here/common.sh"
# One descriptor per stream in the bridge and in stream-bench (separate processes), plus margin.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > STREAMS + 200 )) || { echo "open-files limit $(ulimit -n) too low for STREAMS=$STREAMS" >&2; exit 1; }

echo "fanout_narrow.sh: $(date '+%F %T'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
     "$(mosquitto -h 2>/dev/null | head -1 || true); $SENSORS sensors x $RATE_PER_SENSOR/s, $STREAMS streams," \
     "QoS $QOS publisher, bridge [http] threads $HTTP_THREADS; stream-bench $bench_bin"
for i in "${!bridges[@]}"; do echo "  bridge ${labels[i]}: ${bridges[i]}"; done

results=$work/results.txt
: > "$results"
run_n=0
# run_one SCENARIO TRANSPORT BRIDGE-INDEX ROUND
run_one() {
  local sc=$1 t=$2 bi=$3 round=$4 args tmo=120 rc=0
  run_n=$((run_n + 1))
  check_time
  (( tmo < $(remaining) )) || tmo=$(remaining)
  args=(--transport "$t" --subscribers "$STREAMS" --sensors "$SENSORS" --narrow --rate "$rate" --qos "$QOS" --settle 1)
  if [[ $sc == steady ]]; then
    args+=(--duration "$DURATION" --warmup "$WARMUP" --drain 5 --drain-max 20)
  else
    # Readings may not move for many seconds behind the status burst: wait for them that long
    # (within the 120 s a run may take: publishing stops at twice its duration at the latest).
    args+=(--duration "$ONLINE_DURATION" --status-online --first-within "$FIRST_WITHIN" --drain 30 --drain-max 60)
  fi
  start_mosquitto
  launch_bridge "${bridges[bi]}" "$work/run$run_n" $((STREAMS + 1000))
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  echo "== round $round, $sc, $t, bridge ${labels[bi]} (load $load): stream-bench ${args[*]}"
  timeout --signal=TERM --kill-after=10 "$tmo" "$bench_bin" --port "$bport" --mqtt "tcp://127.0.0.1:$mport" \
    --watch-pid "$bpid,$mpid" "${args[@]}" > "$work/bench.out" 2> "$work/bench.err" || rc=$?
  sed 's/^/  /' "$work/bench.out"
  [[ -s $work/bench.err ]] && sed 's/^/  stderr: /' "$work/bench.err" | head -20
  (( rc == 0 )) || echo "  (stream-bench exit status $rc)"
  bridge_stream_metrics
  # Peak resident memory: a burst of status events may be queued in the bridge all at once.
  local hwm
  hwm=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$bpid/status" 2>/dev/null || echo 0)
  # The bridge is the first watched pid: its fields are renamed bridge_*, Mosquitto's mosquitto_*.
  sed -n "s/^RESULT /scenario=$sc bridge=${labels[bi]} round=$round load1=$load bridge_vmhwm_kib=${hwm:-0} /p" "$work/bench.out" |
    sed "s/ pid${bpid}_/ bridge_/g; s/ pid${mpid}_/ mosquitto_/g" >> "$results"
  stop_pid "$bpid"
  stop_pid "$mpid"
}

for ((round = 1; round <= ROUNDS; round++)); do
  for sc in $SCENARIOS; do
    for t in $TRANSPORTS; do
      for bi in "${!bridges[@]}"; do run_one "$sc" "$t" "$bi" "$round"; done
    done
  done
done

# ---- RESULT lines (one a run) and medians per scenario, transport and bridge ----
python3 - "$results" "${labels[@]}" <<'PY'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(sys.argv[1]) if line.strip()]
labels = sys.argv[2:]
for r in rows:
    r["bridge_peak_mib"] = float(r.get("bridge_vmhwm_kib", 0)) / 1024
steady = [("bridge_cpu_us_per_delivery", "cpu_us_per_delivery", "{:.1f}"), ("deliveries_per_s", "deliveries_per_s", "{:.0f}"),
          ("p50_ms", "p50_ms", "{:.2f}"), ("p99_ms", "p99_ms", "{:.2f}"), ("max_ms", "max_ms", "{:.1f}"),
          ("bridge_cpu_pct", "bridge_cpu_pct", "{:.0f}"), ("bench_cpu_pct", "bench_cpu_pct", "{:.0f}"),
          ("bridge_peak_mib", "bridge_peak_rss_mib", "{:.0f}")]
online = [("first_reading_ms", "first_reading_ms", "{:.0f}"), ("first_reading_k_ms", "first_reading_k_ms", "{:.0f}"),
          ("streams_reading_within_frac", "streams_reading_within_frac", "{:.3f}"),
          ("streams_reading_within_k_frac", "streams_reading_within_k_frac", "{:.3f}"),
          ("stream_first_reading_p50_ms", "stream_first_p50_ms", "{:.0f}"),
          ("stream_first_reading_p99_ms", "stream_first_p99_ms", "{:.0f}"),
          ("status_per_stream_mean", "status_per_stream", "{:.1f}"), ("last_status_ms", "last_status_ms", "{:.0f}"),
          ("p99_ms", "p99_ms", "{:.1f}"), ("bridge_cpu_s", "bridge_cpu_s", "{:.2f}"),
          ("bridge_peak_mib", "bridge_peak_rss_mib", "{:.0f}")]
def fields(r):
    return steady if r["scenario"] == "steady" else online
for r in rows:
    out = [f"scenario={r['scenario']}", f"transport={r['transport']}", f"bridge={r['bridge']}", f"round={r['round']}",
           f"load1={r['load1']}"]
    out += [f"{name}={fmt.format(float(r[key]))}" for key, name, fmt in fields(r)]
    if r["scenario"] == "online":
        out.append(f"streams_with_own_status={r['streams_with_own_status']}")
    out += [f"complete={r['complete']}", f"received={r['received']}/{r['expected']}", f"disconnects={r['disconnects']}"]
    print("RESULT", " ".join(out))
print()
for sc in ("steady", "online"):
    group = [r for r in rows if r["scenario"] == sc]
    if not group:
        continue
    cols = steady if sc == "steady" else online
    print(f"medians, {sc}:")
    print("| transport | bridge | runs | " + " | ".join(name for _, name, _ in cols) + " | load1 |")
    print("|---|---|---|" + "---|" * len(cols) + "---|")
    for t in ("sse", "ws"):
        for b in labels:
            rs = [r for r in group if r["transport"] == t and r["bridge"] == b]
            if not rs:
                continue
            med = [fmt.format(statistics.median(float(r[key]) for r in rs)) for key, _, fmt in cols]
            loads = "/".join(r["load1"] for r in rs)
            print(f"| {t} | {b} | {len(rs)} | " + " | ".join(med) + f" | {loads} |")
            print(f"MEDIAN scenario={sc} transport={t} bridge={b} runs={len(rs)} " +
                  " ".join(f"{name}={m}" for (_, name, _), m in zip(cols, med)))
    print()
PY
echo "fanout_narrow.sh: done in ${SECONDS}s, load average now $(cut -d' ' -f1-3 /proc/loadavg)"
