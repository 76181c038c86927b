#!/usr/bin/env bash
# The cost of security on streaming: 1,000 SSE streams (GET /api/v1/stream on `#`) at a modest
# publish rate, with and without TLS (https, the certificate of tools/make-certs.sh verified by
# the client) and with authentication off, a token whose grant is `#` (covers everything the
# stream asks for), or a token whose grant is narrower than the stream's filter
# (`sensors/+/temperature` against `#`: every published reading is still granted, but the grant
# is checked for each reading and stream instead of taking the fast path of an unrestricted one).
# Same binaries, one run, variants alternating in each round (the order rotated every round), a
# fresh bridge for every run. See "Security cost on streams" in bench/README.md.
#
# For each run stream-bench (bench/stream_bench.cpp, --tls / --token) reports latency publish ->
# receipt p50/p99/max, deliveries/s, and the bridge's CPU (utime+stime from /proc/PID/stat) over
# the measured window; the script prints per variant the medians over rounds and their ratios to
# plain / auth off, and TLS / plain with the same authentication.
#
# Usage: bench/security_cost.sh [BUILD_DIR]   (default: this repository's build/)
# Environment: ROUNDS=3 SUBS=1000 RATE=100 DURATION=10 WARMUP=2 QOS=1 THREADS=1 HTTP_THREADS=2
#              TRANSPORT=sse (or ws: the same over WebSocket, wss with TLS)
#              VARIANTS="plain-off plain-grant plain-narrow tls-off tls-grant tls-narrow"
#              (each <plain|tls>-<off|grant|narrow>); VERBOSE=1 prints stream-bench's whole output
#              and the bridge's stream metrics after each run
# Runtime: about 17 s per run (TLS handshakes under load add a few s), 18 runs: about 5 minutes;
# hard limit 9.5 minutes (rounds that would not fit are skipped, and said so).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(realpath "${1:-${BUILD_DIR:-$here/../build}}")
ROUNDS=${ROUNDS:-3}
SUBS=${SUBS:-1000}
RATE=${RATE:-100}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
QOS=${QOS:-1}
THREADS=${THREADS:-1}
HTTP_THREADS=${HTTP_THREADS:-2}
TRANSPORT=${TRANSPORT:-sse}
[[ $TRANSPORT == sse || $TRANSPORT == ws ]] || { echo "TRANSPORT is sse or ws" >&2; exit 2; }
VARIANTS=${VARIANTS:-plain-off plain-grant plain-narrow tls-off tls-grant tls-narrow}
LIMIT_S=570
read -r -a variants <<< "$VARIANTS"
for v in "${variants[@]}"; do
  [[ $v =~ ^(plain|tls)-(off|grant|narrow)$ ]] || { echo "unknown variant '$v' (<plain|tls>-<off|grant|narrow>)" >&2; exit 2; }
done
bridge_bin=$build/broker-bridge/broker-bridge
bench_bin=$build/bench/stream-bench
for b in "$bridge_bin" "$bench_bin"; do
  [[ -x $b ]] || { echo "missing $b (build first: cmake --build $build --target broker-bridge stream-bench)" >&2; exit 1; }
done
for t in mosquitto curl openssl python3; do command -v "$t" > /dev/null || { echo "missing $t" >&2; exit 1; }; done
"$bench_bin" --help | grep -q -- --tls || { echo "$bench_bin has no --tls (rebuild stream-bench)" >&2; exit 1; }
BENCH_NAME=security-cost-bench
source "$here/common.sh"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > SUBS + 200 )) || { echo "open-files limit $(ulimit -n) too low for SUBS=$SUBS" >&2; exit 1; }

token=bench-security-token-0123456789
"$here/../tools/make-certs.sh" "$work/certs" > /dev/null
BENCH_CA=$work/certs/ca.pem
tls_http="tls_cert = \"$work/certs/server.pem\"
tls_key = \"$work/certs/server.key\""
auth_toml() {  # auth_toml GRANT-FILTER
  printf '[auth]\n[[auth.tokens]]\ntoken = "%s"\ntopics = ["%s"]\n' "$token" "$1"
}

echo "security_cost.sh: $(date -u '+%F %T') UTC, $(nproc) cores; before: $(uptime)"
echo "  $SUBS $TRANSPORT streams on '#' (one stream-bench process, $THREADS receiving thread), $RATE readings/s QoS $QOS" \
     "over 10 sensors, ${WARMUP} s warm-up + ${DURATION} s measured per run; bridge [http] threads $HTTP_THREADS;" \
     "variants: ${variants[*]}; $ROUNDS rounds"
start_mosquitto

results=$work/results.txt
: > "$results"
run_n=0
run_variant() {  # run_variant VARIANT ROUND
  local v=$1 round=$2 tls=${1%%-*} auth=${1#*-} auth_cfg='' http_cfg='' args=() want load1 rc=0
  run_n=$((run_n + 1))
  case $auth in
    grant) auth_cfg=$(auth_toml '#'); args+=(--token "$token") ;;
    narrow) auth_cfg=$(auth_toml 'sensors/+/temperature'); args+=(--token "$token") ;;
  esac
  if [[ $tls == tls ]]; then http_cfg=$tls_http; args+=(--tls --ca-file "$BENCH_CA" --tls-name localhost); fi
  launch_bridge "$bridge_bin" "$work/bridge$run_n" $((SUBS + 1000)) "$auth_cfg" "$http_cfg"
  # The bridge is set up as meant: TLS or not (launch_bridge's /readyz went over https with the
  # CA, or over http), a token needed or not.
  want=200; [[ $auth != off ]] && want=401
  [[ $(bridge_curl "$bport" /api/v1/sensors -o /dev/null -w '%{http_code}') == "$want" ]] ||
    { echo "variant $v: /api/v1/sensors without a token did not answer $want" >&2; exit 1; }
  load1=$(cut -d' ' -f1 /proc/loadavg)
  echo "== round $round, $v (load1 $load1): stream-bench --subscribers $SUBS --rate $RATE ${args[*]/$token/<token>}"
  timeout --signal=TERM --kill-after=10 120 "$bench_bin" --port "$bport" --mqtt "tcp://127.0.0.1:$mport" \
    --qos "$QOS" --threads "$THREADS" --watch-pid "$bpid,$mpid" --transport "$TRANSPORT" --subscribers "$SUBS" \
    --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" "${args[@]}" > "$work/bench.out" 2> "$work/bench.err" || rc=$?
  if [[ -n ${VERBOSE:-} ]]; then sed 's/^/  /' "$work/bench.out"; bridge_stream_metrics; else grep -E '^(connected|tls:)' "$work/bench.out" | sed 's/^/  /'; fi
  sed -n 's/^RESULT .*\(p50_ms=[^ ]*\) \(p99_ms=[^ ]*\) \(max_ms=[^ ]*\).*\(deliveries_per_s=[^ ]*\).*/  \1 \2 \3 \4/p' "$work/bench.out"
  [[ -s $work/bench.err ]] && sed 's/^/  stderr: /' "$work/bench.err" | head -10
  sed -n "s/^RESULT /variant=$v round=$round load1=$load1 bridge_pid=$bpid rc=$rc /p" "$work/bench.out" >> "$results"
  (( rc == 0 )) || echo "  (stream-bench exit status $rc)"
  stop_pid "$bpid"
}

done_rounds=0
per_run_s=0
for round in $(seq "$ROUNDS"); do
  # Rounds that would not fit in the limit are skipped (a round takes about what the last took).
  if (( round > 1 && $(remaining) < per_run_s * ${#variants[@]} + 20 )); then
    echo "security_cost.sh: round $round would not fit in the ${LIMIT_S}s limit; stopping after $done_rounds rounds" >&2
    break
  fi
  t_round=$SECONDS
  n=${#variants[@]}
  for i in $(seq 0 $((n - 1))); do
    check_time
    run_variant "${variants[$(( (i + round - 1) % n ))]}" "$round"
  done
  per_run_s=$(( (SECONDS - t_round) / n + 1 ))
  done_rounds=$round
done

echo
echo "=== security cost on $SUBS $TRANSPORT streams x $RATE readings/s ($(date -u '+%F %T') UTC, $(nproc) cores, $done_rounds rounds, ${SECONDS}s) ==="
echo "after: $(uptime)"
python3 - "$results" "$mpid" "${variants[@]}" <<'PY'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(sys.argv[1]) if line.strip()]
mpid, variants = sys.argv[2], sys.argv[3:]
for r in rows:
    b = r["bridge_pid"]
    r["cpu_ms_per_1k"] = float(r[f"pid{b}_cpu_us_per_delivery"])  # us per delivery = ms per 1000
    r["bridge_cpu_pct"] = float(r[f"pid{b}_cpu_pct"])
    r["mosq_cpu_pct"] = float(r.get(f"pid{mpid}_cpu_pct", "nan"))
    # Waiting for a CPU while runnable (all threads), per second of the window: contention.
    r["bridge_wait"] = float(r.get(f"pid{b}_runq_wait_s", "nan")) / float(r["wall_s"])
    r["bench_wait"] = float(r.get("bench_runq_wait_s", "nan")) / float(r["wall_s"])
by = {v: [r for r in rows if r["variant"] == v] for v in variants}
keys = [("p50_ms", "p50 ms", "p50"), ("p99_ms", "p99 ms", "p99"), ("max_ms", "max ms", "max"),
        ("deliveries_per_s", "deliveries/s", "deliveries/s"), ("cpu_ms_per_1k", "bridge CPU ms / 1000 deliveries", "CPU/delivery")]
def med(v, k):
    xs = [float(r[k]) for r in by[v]]
    return statistics.median(xs) if xs else float("nan")
def fmt(k, x):
    return f"{x:,.0f}" if k == "deliveries_per_s" else f"{x:.2f}"

print()
print("Per run (variant, round): p50 / p99 / max ms, deliveries/s, bridge CPU ms per 1000 deliveries, bridge CPU %, bench CPU %, "
      "received / expected, disconnects, load1, run-queue wait of bridge / bench (s per s of window)")
for r in rows:
    print(f"  {r['variant']:13} r{r['round']}: {float(r['p50_ms']):.2f} / {float(r['p99_ms']):.2f} / {float(r['max_ms']):.2f} ms, "
          f"{float(r['deliveries_per_s']):,.0f}/s, {r['cpu_ms_per_1k']:.2f} ms, {r['bridge_cpu_pct']:.0f} %, "
          f"{r['bench_cpu_pct']} %, {r['received']} / {r['expected']}{'' if r['complete'] == 'yes' else ' INCOMPLETE'}, "
          f"{r['disconnects']}, {r['load1']}, {r['bridge_wait']:.2f} / {r['bench_wait']:.2f}")
print()
print("| variant | runs | " + " | ".join(h for _, h, _ in keys) + " | bridge CPU % | bench CPU % | run-queue wait bridge / bench | complete |")
print("|---|---|" + "---|" * (len(keys) + 4))
for v in variants:
    if not by[v]:
        continue
    comp = sum(r["complete"] == "yes" for r in by[v])
    print(f"| {v} | {len(by[v])} | " + " | ".join(fmt(k, med(v, k)) for k, _, _ in keys) +
          f" | {statistics.median(r['bridge_cpu_pct'] for r in by[v]):.0f} | {statistics.median(float(r['bench_cpu_pct']) for r in by[v]):.0f}"
          f" | {statistics.median(r['bridge_wait'] for r in by[v]):.2f} / {statistics.median(r['bench_wait'] for r in by[v]):.2f} | {comp}/{len(by[v])} |")

def ratios(a, b, label):
    if not by.get(a) or not by.get(b):
        return
    parts = []
    for k, _, short in keys:
        x, y = med(a, k), med(b, k)
        # also the median of the per-round ratios (the two runs of a round were minutes apart at most)
        per = [float(ra[k]) / float(rb[k]) for ra in by[a] for rb in by[b] if ra["round"] == rb["round"] and float(rb[k]) > 0]
        pr = f" (per round {statistics.median(per):.2f})" if per else ""
        parts.append(f"{short} {x / y:.2f}{pr}" if y else f"{short} -")
    print(f"  {label}: " + ", ".join(parts))

print()
print("Ratios of medians (variant / reference; p50, p99, max, deliveries/s, bridge CPU per delivery):")
for v in variants:
    if v != "plain-off":
        ratios(v, "plain-off", f"{v} / plain-off")
for a in ("off", "grant", "narrow"):
    if a != "off" and f"tls-{a}" in variants and f"plain-{a}" in variants:
        ratios(f"tls-{a}", f"plain-{a}", f"tls-{a} / plain-{a}")
PY
echo "security_cost.sh: done in ${SECONDS}s"
