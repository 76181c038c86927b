#!/usr/bin/env bash
# Streaming benchmark (Server-Sent Events, GET /api/v1/stream, WebSocket, GET /api/v1/ws, gRPC,
# telemetry.v1.Telemetry/Subscribe, and long polling, GET /api/v1/updates):
# end-to-end latency from MQTT publish to receipt by stream subscribers, deliveries/s at
# saturation, and the bridge's resident memory per idle subscriber. See "Streaming (SSE and
# WebSocket)" in bench/README.md.
#
# A private Mosquitto on a free loopback port; for each scenario and transport a fresh
# broker-bridge (own config and database in a temp dir) and one bench/stream_bench.cpp process,
# which holds the stream connections and publishes over MQTT on the same 2-core machine. It
# reports its own CPU beside the bridge's and Mosquitto's, over the same measured window.
#
# Scenarios: latency with SUBS_SMALL and SUBS_LARGE subscribers at RATE readings/s for DURATION s,
# once per transport in TRANSPORTS, ROUNDS times (the transports' order reversed every other
# round; with ROUNDS > 1 the summary adds per-transport medians and their ratio to the first
# transport); saturation: SAT_SUBS subscribers, one step per rate in
# SAT_RATES (the same connections), per transport in SAT_TRANSPORTS; idle: IDLE_SUBS streams held
# IDLE_HOLD s, VmRSS of the bridge before and after, per transport in IDLE_TRANSPORTS.
#
# Usage: bench/stream.sh [BUILD_DIR]   (or BUILD_DIR=...; default: this repository's build/)
# Environment: SUBS_SMALL=100 SUBS_LARGE=1000 RATE=100 DURATION=10 SAT_SUBS=5000
#              SAT_RATES=30,250,500,1000 SAT_DURATION=10 IDLE_SUBS=10000 IDLE_HOLD=5 QOS=1 THREADS=1
#              HTTP_THREADS=2 SCENARIOS="small large sat idle" TRANSPORTS="sse ws"
#              SAT_TRANSPORTS=sse IDLE_TRANSPORTS=sse ROUNDS=1   (transports: sse, ws, grpc, longpoll;
#              a bridge for grpc also gets `[grpc] listen = "127.0.0.1:0"`)
#              BRIDGE_TOML=FILE (sections appended to every bridge's config, e.g. [stream]; not [grpc])
# Runtime: about 3-4 minutes; hard limit 8 minutes, 4 more per further round.
set -euo pipefail
build=$(realpath "${1:-${BUILD_DIR:-$(dirname "$0")/../build}}")
SUBS_SMALL=${SUBS_SMALL:-100}
SUBS_LARGE=${SUBS_LARGE:-1000}
RATE=${RATE:-100}
DURATION=${DURATION:-10}
SAT_SUBS=${SAT_SUBS:-5000}
SAT_RATES=${SAT_RATES:-30,250,500,1000}
SAT_DURATION=${SAT_DURATION:-10}
IDLE_SUBS=${IDLE_SUBS:-10000}
IDLE_HOLD=${IDLE_HOLD:-5}
QOS=${QOS:-1}
THREADS=${THREADS:-1}
HTTP_THREADS=${HTTP_THREADS:-2}
SCENARIOS=${SCENARIOS:-small large sat idle}
TRANSPORTS=${TRANSPORTS:-sse ws}
SAT_TRANSPORTS=${SAT_TRANSPORTS:-sse}
IDLE_TRANSPORTS=${IDLE_TRANSPORTS:-sse}
ROUNDS=${ROUNDS:-1}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer" >&2; exit 2; }
for t in $TRANSPORTS $SAT_TRANSPORTS $IDLE_TRANSPORTS; do
  [[ $t == sse || $t == ws || $t == grpc || $t == longpoll ]] ||
    { echo "unknown transport '$t' (sse, ws, grpc or longpoll)" >&2; exit 2; }
done
LIMIT_S=$((480 + 240 * (ROUNDS - 1)))  # each further round of the latency scenarios: up to 4 minutes more
bridge_bin=$build/broker-bridge/broker-bridge
bench_bin=$build/bench/stream-bench
BENCH_NAME=stream-bench
source "$(dirname "$0")/common.sh"
require_build "$build" broker-bridge stream-bench
# 10,000 streams: one descriptor each in the bridge and in the bench (separate processes).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > IDLE_SUBS + 200 )) || { echo "open-files limit $(ulimit -n) too low for IDLE_SUBS=$IDLE_SUBS" >&2; exit 1; }

# ---- Mosquitto ----
start_mosquitto
mver=$(mosquitto -h 2>/dev/null | head -1 || true)

# ---- bridge (fresh for each scenario) ----
bridge_n=0
bpid='' bport='' gport=''
start_bridge() {  # start_bridge TRANSPORT: grpc also opens the gRPC port (`gport`)
  bridge_n=$((bridge_n + 1))
  local dir=$work/bridge$bridge_n extra=''
  [[ $1 == grpc ]] && extra=$'[grpc]\nlisten = "127.0.0.1:0"\n'
  extra+=$(cat "${BRIDGE_TOML:-/dev/null}")
  launch_bridge "$bridge_bin" "$dir" $((IDLE_SUBS + 5000)) "$extra"
  gport=''
  if [[ $1 == grpc ]]; then
    # Printed before the HTTP line that launch_bridge waited for.
    gport=$(sed -n 's#^broker-bridge: serving grpc 127.0.0.1:\([0-9]*\)$#\1#p' "$dir/out.log")
    [[ -n $gport ]] || { echo "bridge printed no gRPC port:" >&2; cat "$dir/out.log" >&2; exit 1; }
  fi
}
transport_args() {  # transport_args TRANSPORT: stream-bench's options for it
  echo "--transport $1${gport:+ --grpc-port $gport}"
}

results=$work/results.txt
: > "$results"
run_bench() {  # run_bench LABEL TIMEOUT_S ARGS...
  local label=$1 tmo=$2; shift 2
  check_time
  (( tmo < $(remaining) )) || tmo=$(remaining)
  echo "== $label: stream-bench $*"
  local rc=0
  timeout --signal=TERM --kill-after=10 "$tmo" "$bench_bin" --port "$bport" --mqtt "tcp://127.0.0.1:$mport" \
    --qos "$QOS" --threads "$THREADS" --watch-pid "$bpid,$mpid" "$@" > "$work/bench.out" 2> "$work/bench.err" || rc=$?
  cat "$work/bench.out"
  [[ -s $work/bench.err ]] && sed 's/^/  stderr: /' "$work/bench.err" | head -20
  sed -n "s/^RESULT /label=$label /p" "$work/bench.out" >> "$results"
  (( rc == 0 )) || echo "  (stream-bench exit status $rc)"
  bridge_stream_metrics
}

echo "stream.sh: $(nproc) cores, $mver, mosquitto port $mport, QoS $QOS publisher, bench threads $THREADS," \
     "bridge [http] threads $HTTP_THREADS; the load generator runs on the same cores."

for sc in $SCENARIOS; do
  case $sc in
  small|large)
    n=$SUBS_SMALL; [[ $sc == large ]] && n=$SUBS_LARGE
    for round in $(seq "$ROUNDS"); do
      order=$TRANSPORTS
      (( round % 2 == 0 )) && order=$(printf '%s\n' $TRANSPORTS | tac | paste -sd' ')
      for t in $order; do
        start_bridge "$t"
        # shellcheck disable=SC2046  # transport_args is words on purpose
        run_bench "latency-$n" 120 $(transport_args "$t") --subscribers "$n" --rate "$RATE" --duration "$DURATION" --warmup 2
        stop_pid "$bpid"
      done
    done
    ;;
  sat)
    for t in $SAT_TRANSPORTS; do
      start_bridge "$t"
      # shellcheck disable=SC2046
      run_bench "saturation-$SAT_SUBS" 240 $(transport_args "$t") --subscribers "$SAT_SUBS" --rate "$SAT_RATES" \
        --duration "$SAT_DURATION" --warmup 1 --drain 5 --drain-max 20
      stop_pid "$bpid"
    done
    ;;
  idle)
    for t in $IDLE_TRANSPORTS; do
      start_bridge "$t"
      sleep 1  # let start-up allocations settle before the baseline
      echo "  kernel, before: $(grep -E '^(TCP|sockets):' /proc/net/sockstat | paste -sd' ')"
      check_time
      echo "== idle-$IDLE_SUBS: stream-bench $(transport_args "$t") --subscribers $IDLE_SUBS --idle-hold $IDLE_HOLD"
      # shellcheck disable=SC2046
      timeout --signal=TERM --kill-after=10 $((IDLE_HOLD + 150)) "$bench_bin" --port "$bport" --threads "$THREADS" \
        $(transport_args "$t") --subscribers "$IDLE_SUBS" --idle-hold "$IDLE_HOLD" --settle 2 --watch-pid "$bpid" \
        > "$work/bench.out" 2> "$work/bench.err" &
      ipid=$!; pids+=("$ipid")
      for _ in $(seq 1500); do grep -q '^READY' "$work/bench.out" && break; kill -0 "$ipid" 2>/dev/null || break; sleep 0.1; done
      if grep -q '^READY' "$work/bench.out"; then
        bridge_stream_metrics
        echo "  kernel, held:   $(grep -E '^(TCP|sockets):' /proc/net/sockstat | paste -sd' ')"
      fi
      rc=0; wait "$ipid" || rc=$?
      keep=(); for p in "${pids[@]}"; do [[ $p == "$ipid" ]] || keep+=("$p"); done; pids=("${keep[@]}")
      cat "$work/bench.out"
      [[ -s $work/bench.err ]] && sed 's/^/  stderr: /' "$work/bench.err" | head -20
      sed -n "s/^RESULT /label=idle-$IDLE_SUBS /p" "$work/bench.out" >> "$results"
      (( rc == 0 )) || echo "  (stream-bench exit status $rc)"
      stop_pid "$bpid"
    done
    ;;
  *) echo "unknown scenario $sc" >&2; exit 2 ;;
  esac
done

# ---- summary ----
python3 - "$results" "$mpid" <<'PY'
import sys
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(sys.argv[1]) if line.strip()]
mpid = sys.argv[2]
def bp(r, key):  # the bridge is the first watched pid, Mosquitto the second
    ks = sorted(k for k in r if k.startswith("pid") and k.endswith(key))
    ks = [k for k in ks if not k.startswith("pid" + mpid + "_")] if key != "_rss_kib" else ks
    return r[ks[0]] if ks else "-"
print()
print("| scenario | transport | subs | rate/s | published | received / expected | p50 ms | p99 ms | max ms | p50 / p99 ms at kernel rx | p99 ms to bridge | deliveries/s | bridge CPU % | bridge CPU ms per 1,000 deliveries | bench CPU % | mosquitto CPU % | disconnects | order errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r.get("mode") != "latency":
        continue
    mq = r.get(f"pid{mpid}_cpu_pct", "-")
    print(f"| {r['label']} | {r.get('transport', 'sse')} | {r['subscribers']} | {r['rate']} | {r['published']} | {r['received']} / {r['expected']} | "
          f"{float(r['p50_ms']):.2f} | {float(r['p99_ms']):.2f} | {float(r['max_ms']):.2f} | "
          f"{float(r['k_p50_ms']):.2f} / {float(r['k_p99_ms']):.2f} | {float(r['to_bridge_p99_ms']):.1f} | {float(r['deliveries_per_s']):,.0f} | "
          f"{bp(r, '_cpu_pct')} | {bp(r, '_cpu_us_per_delivery')} | {r['bench_cpu_pct']} | {mq} | {r['disconnects']} | {r['order_errors']} |")
# Medians over the rounds, per scenario and transport, and each transport's ratio to the first one
# run (TRANSPORTS' first); only when some scenario ran more than once per transport.
import statistics
groups = {}
for r in rows:
    if r.get("mode") == "latency":
        groups.setdefault((r["label"], r.get("transport", "sse")), []).append(r)
if any(len(g) > 1 for g in groups.values()):
    def num(x):
        try:
            return float(x)
        except ValueError:
            return float("nan")
    cols = [("p50 ms", lambda r: num(r["p50_ms"])), ("p99 ms", lambda r: num(r["p99_ms"])),
            ("max ms", lambda r: num(r["max_ms"])), ("deliveries/s", lambda r: num(r["deliveries_per_s"])),
            ("bridge CPU ms per 1,000 deliveries", lambda r: num(bp(r, "_cpu_us_per_delivery")))]
    print()
    print("| scenario | transport | rounds | complete | " + " | ".join("median " + c for c, _ in cols) + " | " +
          " | ".join(c + " ratio" for c, _ in cols) + " |")
    print("|---" * (4 + 2 * len(cols)) + "|")
    base = {}
    for (label, t), g in groups.items():
        med = [statistics.median(f(r) for r in g) for _, f in cols]
        base.setdefault(label, (t, med))
        bt, bm = base[label]
        ratios = [f"{m / b:.2f}" if b else "-" for m, b in zip(med, bm)] if t != bt else ["1"] * len(cols)
        done = sum(1 for r in g if r["complete"] == "yes")
        print(f"| {label} | {t} | {len(g)} | {done}/{len(g)} | " + " | ".join(f"{m:,.2f}" for m in med) + " | " +
              " | ".join(ratios) + " |")
    print("(ratios: each transport's median over the first transport's, in the same scenario)")
for r in rows:
    if r.get("mode") != "idle":
        continue
    per = [k for k in r if k.endswith("_kib_per_stream") and k.startswith("pid")]
    rss = [k for k in r if k.endswith("_rss_kib") and k.startswith("pid")]
    print()
    print(f"idle ({r.get('transport', 'sse')}): {r['streams']} streams open ({r['open_after_hold']} still open after {r['hold_s']} s), "
          f"connected in {r['connect_s']} s; bridge VmRSS {r[rss[0]] if rss else '-'} KiB "
          f"(baseline -> connected -> after hold): {r[per[0]] if per else '-'} KiB per idle stream; "
          f"bench {r['bench_kib_per_stream']} KiB per stream")
PY
echo "stream.sh: done in ${SECONDS}s"
