#!/usr/bin/env bash
# SSE tail latency of the bridge against Nchan (nginx's pub/sub module), issue 12: the same load
# tool (stream-bench) in the same run, the peers alternating. See "SSE tail latency against Nchan
# (issue 12)" in bench/README.md.
#
# For each N in CORES (bridge [http] threads = N against nginx worker_processes = N) and each
# scenario STREAMSxRATE in SCENARIOS: ROUNDS rounds, each running the bridge and Nchan once (the
# order swapped every round, so that drift of the machine's load falls on both). Every run starts
# its server fresh and runs one stream-bench: STREAMS SSE connections, readings published at RATE/s
# (each delivered to every stream) for WARMUP s unmeasured and DURATION s measured.
#   bridge: GET /api/v1/stream; published over MQTT (QoS 1) to a private Mosquitto the bridge reads.
#   Nchan:  GET /sub/bench (nchan_subscriber eventsource); each reading POSTed to /pub/bench
#           (nchan_publisher) on one keep-alive connection; both locations on one channel.
# Same payload, same rate, same latency (receipt - `seq`, the publish time) for both.
#
# Usage: bench/stream_vs_nchan.sh [BUILD_DIR]   (or BUILD_DIR=...; default: this repository's build/)
# Environment: SCENARIOS="100x100 1000x100 5000x20" DURATION=10 ROUNDS=3 CORES=1 WARMUP=2
#              THREADS=1 (stream-bench receiving threads)
#              PERF_DIR=DIR (perf record -g of the server's processes, 999 Hz, for DURATION s from
#              about the end of the warm-up: DIR/<peer>-<scenario>-r<round>.data; see README)
# Runtime: about 2 * ROUNDS * (DURATION + WARMUP + 8) s per scenario and entry of CORES (8 min
# with the defaults); hard limit 20 minutes. Needs the Debian package libnginx-mod-nchan.
set -euo pipefail
build=$(realpath "${1:-${BUILD_DIR:-$(dirname "$0")/../build}}")
SCENARIOS=${SCENARIOS:-100x100 1000x100 5000x20}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CORES=${CORES:-1}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-1}
LIMIT_S=1200
nchan_module=/usr/lib/nginx/modules/ngx_nchan_module.so
if [[ ! -f $nchan_module ]] || ! command -v nginx > /dev/null; then
  echo "Nchan is not installed: apt-get install libnginx-mod-nchan" >&2
  exit 2
fi
max_streams=0 max_rate=0
for sc in $SCENARIOS; do
  [[ $sc =~ ^([1-9][0-9]*)x([1-9][0-9]*)$ ]] || { echo "scenario '$sc' is not STREAMSxRATE, e.g. 1000x100" >&2; exit 2; }
  (( BASH_REMATCH[1] > max_streams )) && max_streams=${BASH_REMATCH[1]}
  (( BASH_REMATCH[2] > max_rate )) && max_rate=${BASH_REMATCH[2]}
done
runs=$(( $(wc -w <<< "$SCENARIOS") * $(wc -w <<< "$CORES") * ROUNDS * 2 ))
(( runs * (DURATION + WARMUP + 8) < LIMIT_S )) || { echo "$runs runs of ${DURATION}s do not fit the ${LIMIT_S}s limit" >&2; exit 2; }
(( max_streams <= 20000 )) || { echo "at most 20000 streams" >&2; exit 2; }
bridge_bin=$build/broker-bridge/broker-bridge
bench_bin=$build/bench/stream-bench
BENCH_NAME=stream-vs-nchan
source "$(dirname "$0")/common.sh"
require_build "$build" broker-bridge stream-bench
# One descriptor per stream in the server and in the bench (separate processes).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > max_streams + 200 )) || { echo "open-files limit $(ulimit -n) too low for $max_streams streams" >&2; exit 1; }
chmod 755 "$work"  # nginx workers may run as another user

start_mosquitto

run_n=0
bpid='' bport=''
start_bridge() {  # start_bridge THREADS: sets bpid, bport
  run_n=$((run_n + 1))
  HTTP_THREADS=$1 launch_bridge "$bridge_bin" "$work/bridge$run_n" $((max_streams + 1000))
}

# start_nchan WORKERS: a fresh nginx (not a daemon, stopped by PID) with one Nchan channel; its
# buffer keeps every message of a run (WARMUP + DURATION s at the highest rate, and then some),
# new subscribers start at the newest message. Sets npid, nport, nworkers (comma-separated).
npid='' nport='' nworkers=''
start_nchan() {
  run_n=$((run_n + 1))
  local dir=$work/nginx$run_n
  mkdir -p "$dir"
  nport=$(free_port)
  cat > "$dir/nginx.conf" <<CONF
load_module $nchan_module;
worker_processes $1;
worker_rlimit_nofile 65536;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $((max_streams + 1000)); }
http {
  access_log off;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  keepalive_timeout 300s;
  keepalive_requests 100000000;
  nchan_message_buffer_length $(( (WARMUP + DURATION + 30) * max_rate > 1000 ? (WARMUP + DURATION + 30) * max_rate : 1000 ));
  nchan_message_timeout $(( 2 * (WARMUP + DURATION) + 120 ))s;
  server {
    listen 127.0.0.1:$nport;
    location = /pub/bench { nchan_publisher; nchan_channel_id bench; }
    location = /sub/bench { nchan_subscriber eventsource; nchan_channel_id bench; nchan_subscriber_first_message newest; }
  }
}
CONF
  nginx -c "$dir/nginx.conf" -g 'daemon off;' 2> "$dir/stderr" &
  npid=$!; pids+=("$npid")
  wait_tcp "$nport" || { echo "nginx did not start: $(cat "$dir/stderr" "$dir/error.log" 2>/dev/null)" >&2; exit 1; }
  for _ in $(seq 100); do
    nworkers=$(pgrep -P "$npid" | paste -sd,)
    (( $(tr ',' ' ' <<< "$nworkers" | wc -w) >= $1 )) && break
    sleep 0.05
  done
  [[ -n $nworkers ]] || { echo "nginx started no worker process" >&2; exit 1; }
  [[ $(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -X POST -d '{"value":0,"seq":null}' \
        "http://127.0.0.1:$nport/pub/bench") == 20[12] ]] \
    || { echo "Nchan publisher on port $nport does not answer 201/202" >&2; exit 1; }
}

PERF_DIR=${PERF_DIR:-}
[[ -z $PERF_DIR ]] || { mkdir -p "$PERF_DIR"; PERF_DIR=$(realpath "$PERF_DIR"); }
# perf_measured NAME PIDS STREAMS: with PERF_DIR, a profile of PIDS (comma-separated) for the
# measured seconds. It starts once the streams are likely connected and warmed up (the bench
# connects about 1,000 streams a second here), so it may cover a little of the drain.
perf_measured() {
  [[ -n $PERF_DIR ]] || return 0
  (sleep $(( WARMUP + 1 + $3 / 1000 )); exec perf record -F 999 -g -p "$2" -o "$PERF_DIR/$1.data" -- sleep "$DURATION") \
    > /dev/null 2> "$PERF_DIR/$1.err" &
}

results=$work/results.txt
: > "$results"
# run_bench CORES SCENARIO ROUND PEER SERVER_PIDS STREAMS RATE ARGS...: one stream-bench; its
# RESULT line, labelled, goes to $results. SERVER_PIDS: whose CPU is the server's.
run_bench() {
  local cores=$1 sc=$2 round=$3 peer=$4 spids=$5 n=$6 rate=$7 tmo rc=0
  shift 7
  check_time
  tmo=$(( WARMUP + DURATION + 60 + n / 50 ))
  (( tmo < $(remaining) )) || tmo=$(remaining)
  echo "== cores $cores, $sc, round $round, $peer: stream-bench --subscribers $n --rate $rate $*"
  perf_measured "$peer-$sc-c$cores-r$round" "$spids" "$n"
  timeout --signal=TERM --kill-after=10 "$tmo" "$bench_bin" --threads "$THREADS" --subscribers "$n" --rate "$rate" \
    --duration "$DURATION" --warmup "$WARMUP" --drain 5 --drain-max 20 "$@" > "$work/bench.out" 2> "$work/bench.err" || rc=$?
  grep -v '^RESULT' "$work/bench.out" | sed 's/^/  /'
  [[ -s $work/bench.err ]] && sed 's/^/  stderr: /' "$work/bench.err" | head -20
  sed -n "s/^RESULT /cores=$cores scenario=$sc round=$round peer=$peer server_pids=$spids /p" "$work/bench.out" >> "$results"
  (( rc == 0 )) || echo "  (stream-bench exit status $rc)"
}

echo "stream_vs_nchan.sh: $(nproc) cores, $(nginx -v 2>&1 | sed 's/^nginx version: //') with Nchan" \
     "$(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo '?'), $(mosquitto -h 2>/dev/null | head -1 || true);" \
     "scenarios $SCENARIOS, $ROUNDS rounds of ${DURATION}s (+${WARMUP}s warm-up), bench threads $THREADS;" \
     "the load generator runs on the same cores."

for cores in $CORES; do
  for sc in $SCENARIOS; do
    n=${sc%x*} rate=${sc#*x}
    for round in $(seq "$ROUNDS"); do
      order="bridge nchan"; (( round % 2 == 0 )) && order="nchan bridge"
      for peer in $order; do
        if [[ $peer == bridge ]]; then
          start_bridge "$cores"
          run_bench "$cores" "$sc" "$round" bridge "$bpid" "$n" "$rate" --port "$bport" --mqtt "tcp://127.0.0.1:$mport" \
            --qos 1 --watch-pid "$bpid,$mpid"
          stop_pid "$bpid"
        else
          start_nchan "$cores"
          run_bench "$cores" "$sc" "$round" nchan "$npid,$nworkers" "$n" "$rate" --port "$nport" --path /sub/bench \
            --publish-http "http://127.0.0.1:$nport/pub/bench" --watch-pid "$npid,$nworkers"
          stop_pid "$npid"
        fi
      done
    done
  done
done

# ---- summary ----
python3 - "$results" "$mpid" <<'PY'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(sys.argv[1]) if line.strip()]
mpid = sys.argv[2]
def summed(r, pids, field):  # one of stream-bench's per-process figures, summed over the processes
    return sum(float(r.get(f"pid{p}_{field}", 0)) for p in pids)
def cpu(r, pids):  # % of one core
    return summed(r, pids, "cpu_pct")
def waited(r, pids):  # seconds their threads waited runnable for a CPU
    return summed(r, pids, "runq_wait_s")
print()
print("| cores | streams x rate/s | round | peer | received / expected | p50 ms | p99 ms | max ms | kernel rx p99 ms | deliveries/s | server CPU % | server waited for a CPU, s | Mosquitto CPU % | bench CPU % | bench waited, s | disconnects | order errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    mq = f"{cpu(r, [mpid]):.0f}" if r["peer"] == "bridge" else "-"
    print(f"| {r['cores']} | {r['scenario']} | {r['round']} | {r['peer']} | {r['received']} / {r['expected']} | "
          f"{float(r['p50_ms']):.2f} | {float(r['p99_ms']):.2f} | {float(r['max_ms']):.2f} | {float(r['k_p99_ms']):.2f} | "
          f"{float(r['deliveries_per_s']):,.0f} | {cpu(r, r['server_pids'].split(',')):.0f} | "
          f"{waited(r, r['server_pids'].split(',')):.2f} | {mq} | {r['bench_cpu_pct']} | {float(r['bench_runq_wait_s']):.2f} | "
          f"{r['disconnects']} | {r['order_errors']} |")
print()
print("Medians over the rounds; aim (issue 12): bridge p99 <= Nchan's in each round, bridge max <= 2x its own p99.")
print()
print("| cores | streams x rate/s | bridge p50 / p99 / max ms | Nchan p50 / p99 / max ms | p99 bridge / Nchan | rounds bridge p99 <= Nchan | bridge runs max <= 2x p99 | incomplete runs |")
print("|---|---|---|---|---|---|---|---|")
groups = {}
for r in rows:
    groups.setdefault((r["cores"], r["scenario"]), []).append(r)
for (cores, sc), rs in groups.items():
    by = {p: [r for r in rs if r["peer"] == p] for p in ("bridge", "nchan")}
    def med(p, k):
        v = [float(r[k]) for r in by[p]]
        return statistics.median(v) if v else float("nan")
    def trio(p):
        return f"{med(p, 'p50_ms'):.2f} / {med(p, 'p99_ms'):.2f} / {med(p, 'max_ms'):.2f}"
    nch = {r["round"]: float(r["p99_ms"]) for r in by["nchan"]}
    paired = [r for r in by["bridge"] if r["round"] in nch]
    wins = sum(float(r["p99_ms"]) <= nch[r["round"]] for r in paired)
    tight = sum(float(r["max_ms"]) <= 2 * float(r["p99_ms"]) for r in by["bridge"])
    bad = sum(r["complete"] != "yes" or r["order_errors"] != "0" for r in rs)
    ratio = med("bridge", "p99_ms") / med("nchan", "p99_ms") if by["nchan"] and med("nchan", "p99_ms") > 0 else float("nan")
    print(f"| {cores} | {sc} | {trio('bridge')} | {trio('nchan')} | {ratio:.2f} | {wins} / {len(paired)} | "
          f"{tight} / {len(by['bridge'])} | {bad} |")
PY
echo "stream_vs_nchan.sh: done in ${SECONDS}s"
