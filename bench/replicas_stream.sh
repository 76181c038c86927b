#!/usr/bin/env bash
# SSE delivery with the streams spread over replicas on PostgreSQL (docs/api.md section 14)
# against the same streams on one SQLite bridge: deliveries/s, end-to-end latency (MQTT publish
# -> stream subscriber, as bench/stream.sh) and CPU per delivery.
#
# One Mosquitto and one PostgreSQL 15 cluster (bench/common.sh: start_mosquitto, start_postgres)
# for the whole run. Per round and setup (SETUPS, the order reversed every other round): `sqlite`
# is one bridge on SQLite; `pgN` is N replicas on a fresh PostgreSQL database with
# `[mqtt] shared_group` (the broker hands each reading to one replica; every replica serves all
# of them through its store tailer). One stream-bench holds SUBS SSE streams, spread round robin
# over the setup's bridges (--port P1,P2,...), and publishes RATE readings/s at QoS 1 for WARMUP
# then DURATION measured seconds. Reported per setup: deliveries/s, p50/p99 latency, CPU of the
# bridges together and of PostgreSQL per delivery (us), over the measured window.
#
# Usage: bench/replicas_stream.sh [BUILD_DIR]
# Environment: SUBS=300 RATE=100 DURATION=20 WARMUP=3 ROUNDS=2 SETUPS="sqlite pg3" HTTP_THREADS=2
# Runtime: about 40 s per round and setup (2.5 minutes at the defaults); hard limit 10 minutes.
set -euo pipefail
build=$(realpath "${1:-${BUILD_DIR:-$(dirname "$0")/../build}}")
SUBS=${SUBS:-300}
RATE=${RATE:-100}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-2}
SETUPS=${SETUPS:-sqlite pg3}
LIMIT_S=600
bridge_bin=$build/broker-bridge/broker-bridge
bench_bin=$build/bench/stream-bench
BENCH_NAME=replicas-stream-bench
source "$(dirname "$0")/common.sh"
require_build "$build" broker-bridge stream-bench
ulimit -n 65536 2>/dev/null || true

start_mosquitto
start_postgres

results=$work/results.txt
: > "$results"
db_seq=0
echo "replicas_stream.sh: $(nproc) cores, SUBS=$SUBS RATE=$RATE DURATION=$DURATION ROUNDS=$ROUNDS SETUPS=\"$SETUPS\"" \
     "(PostgreSQL on port $pgport, fsync on); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((round = 1; round <= ROUNDS; round++)); do
  order=$SETUPS
  (( round % 2 == 0 )) && order=$(printf '%s\n' $SETUPS | tac | paste -sd' ')
  for setup in $order; do
    check_time
    bridges=() ports=()
    if [[ $setup == sqlite ]]; then
      n=1 extra='' BRIDGE_MQTT_EXTRA=''
    else
      n=${setup#pg}
      db_seq=$((db_seq + 1)); psql_do postgres "CREATE DATABASE bench_$db_seq"
      extra=$(printf 'engine = "postgresql"\nurl = "postgresql://postgres@127.0.0.1:%s/bench_%s"\nretention_days = 0' "$pgport" "$db_seq")
      BRIDGE_MQTT_EXTRA="shared_group = \"bench-$round-$setup\""
    fi
    for ((i = 0; i < n; i++)); do
      launch_bridge "$bridge_bin" "$work/$setup-$round-r$i" $((SUBS + 100)) "$extra"
      bridges+=("$bpid"); ports+=("$bport")
    done
    watched=("${bridges[@]}")
    [[ $setup == sqlite ]] || read -r -a pgp <<< "$(pg_pids)"
    [[ $setup == sqlite ]] || watched+=("${pgp[@]}")
    label="$setup round=$round"
    echo "== $label: ${#bridges[@]} bridge(s) on ports ${ports[*]}"
    rc=0
    timeout --signal=TERM --kill-after=10 $((WARMUP + DURATION + 120)) "$bench_bin" \
      --port "$(IFS=,; echo "${ports[*]}")" --mqtt "tcp://127.0.0.1:$mport" --qos 1 \
      --subscribers "$SUBS" --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" --drain 5 --drain-max 30 \
      --watch-pid "$(IFS=,; echo "${watched[*]}")" > "$work/bench.out" 2> "$work/bench.err" || rc=$?
    grep '^RESULT' "$work/bench.out" | sed 's/^/  /' || true
    [[ -s $work/bench.err ]] && sed 's/^/  stderr: /' "$work/bench.err" | head -10
    (( rc == 0 )) || echo "  (stream-bench exit status $rc)"
    sed -n "s/^RESULT /setup=$setup round=$round bridges=$(IFS=,; echo "${bridges[*]}") /p" "$work/bench.out" >> "$results"
    for p in "${bridges[@]}"; do stop_pid "$p"; done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "$SETUPS" <<'PY'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in open(sys.argv[1]) if line.strip()]
setups = sys.argv[2].split()
def cpu_us(r, pids):  # CPU of these processes per delivery, summed
    return sum(float(r.get(f"pid{p}_cpu_us_per_delivery", 0)) for p in pids)
print()
print("| setup | round | streams | rate/s | received / expected | deliveries/s | p50 ms | p99 ms | bridges CPU us/delivery | PostgreSQL CPU us/delivery | bridges + bench waiting for a CPU, s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
per = {}
for r in rows:
    bridges = r["bridges"].split(",")
    others = [k[3:-len("_cpu_us_per_delivery")] for k in r if k.startswith("pid") and k.endswith("_cpu_us_per_delivery")]
    pg = [p for p in others if p not in bridges]
    b, g = cpu_us(r, bridges), cpu_us(r, pg)
    # Time runnable but not running (schedstat) over the window: how much the run queued for the
    # cores, i.e. how busy the machine was.
    wait = float(r["bench_runq_wait_s"]) + sum(float(r.get(f"pid{p}_runq_wait_s", 0)) for p in bridges)
    per.setdefault(r["setup"], []).append((float(r["deliveries_per_s"]), float(r["p50_ms"]), float(r["p99_ms"]), b, g))
    print(f"| {r['setup']} | {r['round']} | {r['subscribers']} | {r['rate']} | {r['received']} / {r['expected']} | "
          f"{float(r['deliveries_per_s']):,.0f} | {float(r['p50_ms']):.2f} | {float(r['p99_ms']):.2f} | {b:.1f} | "
          f"{f'{g:.1f}' if pg else '-'} | {wait:.1f} |")
print()
print("| setup | rounds | median deliveries/s | median p50 ms | median p99 ms | median bridges CPU us/delivery | median PostgreSQL CPU us/delivery |")
print("|---|---|---|---|---|---|---|")
for s in setups:
    if s not in per:
        continue
    cols = list(zip(*per[s]))
    m = [statistics.median(c) for c in cols]
    print(f"| {s} | {len(per[s])} | {m[0]:,.0f} | {m[1]:.2f} | {m[2]:.2f} | {m[3]:.1f} | {'-' if s == 'sqlite' else f'{m[4]:.1f}'} |")
PY
echo "replicas_stream.sh: done in ${SECONDS}s"
