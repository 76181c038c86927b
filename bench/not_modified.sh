#!/usr/bin/env bash
# Conditional-GET benchmark: 304 Not Modified responses per second on
# /api/v1/sensors/b1/temperature/latest (If-None-Match with the current ETag) against nginx
# serving the same bytes as a small static file with its default ETag, in the same run, with the
# same load tool (wrk -t1), at equal cores: for each N in CORES, the bridge with [http] threads = N
# against nginx with worker_processes N, rounds alternating. Reports requests/s and each server's
# CPU per 304 (user + system CPU of its processes over the wrk run / requests completed). All on
# this machine: wrk shares the cores with the server it measures.
#
# Usage: bench/not_modified.sh [BUILD_DIR]   (or BUILD_DIR=...; default: this repository's build/)
# Environment: ROUNDS=3 DURATION=10 (seconds) CONNECTIONS=50 CORES="1 2"
#   (NGINX_WORKERS / BRIDGE_THREADS, if set, give one unequal pair instead of CORES)
# Runtime: about 2*ROUNDS*DURATION + 10 s per entry of CORES; hard limit 9.5 minutes.
set -euo pipefail
build=$(realpath "${1:-${BUILD_DIR:-$(dirname "$0")/../build}}")
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
CORES=${CORES:-1 2}
LIMIT_S=570
bridge_bin=$build/broker-bridge/broker-bridge
[[ -x $bridge_bin ]] || { echo "missing $bridge_bin (build first)" >&2; exit 1; }
for t in wrk nginx mosquitto mosquitto_pub curl python3; do
  command -v "$t" > /dev/null || { echo "missing $t" >&2; exit 1; }
done
pairs=()  # "bridge_threads nginx_workers"
if [[ -n ${NGINX_WORKERS:-}${BRIDGE_THREADS:-} ]]; then pairs=("${BRIDGE_THREADS:-2} ${NGINX_WORKERS:-2}")
else for c in $CORES; do pairs+=("$c $c"); done; fi
(( ${#pairs[@]} * (2 * ROUNDS * DURATION + 20) < LIMIT_S )) || { echo "ROUNDS*DURATION too large for the ${LIMIT_S}s limit" >&2; exit 1; }
BENCH_NAME=not-modified-bench
source "$(dirname "$0")/common.sh"
clk=$(getconf CLK_TCK)
chmod 755 "$work"  # nginx workers may run as another user and must read the file

# ---- Mosquitto, for every bridge of the run.
mport=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\n' "$mport" > "$work/mosquitto.conf"
[[ $(id -u) -eq 0 ]] && echo "user root" >> "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" 2> "$work/mosquitto.log" & pids+=($!)
wait_tcp "$mport" || { echo "mosquitto did not start: $(cat "$work/mosquitto.log")" >&2; exit 1; }

# start_bridge THREADS: a fresh bridge with one reading; sets bridge_pid, burl, btag.
start_bridge() {
  bport=$(free_port)
  rm -f "$work"/bridge.db*
  printf '[http]\nthreads = %s\n' "$1" > "$work/bridge.toml"
  "$bridge_bin" --config "$work/bridge.toml" --mqtt "tcp://127.0.0.1:$mport" --http "127.0.0.1:$bport" \
    --db "$work/bridge.db" > "$work/bridge.out" 2> "$work/bridge.err" &
  bridge_pid=$!; pids+=("$bridge_pid")
  local ready=0
  for _ in $(seq 200); do
    [[ $(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "http://127.0.0.1:$bport/readyz") == 200 ]] && { ready=1; break; }
    sleep 0.05
  done
  (( ready )) || { echo "bridge not ready: $(tail -5 "$work/bridge.err")" >&2; exit 1; }
  timeout 10 mosquitto_pub -p "$mport" -q 1 -t sensors/b1/temperature -m '{"value":21.5,"seq":1}'
  burl="http://127.0.0.1:$bport/api/v1/sensors/b1/temperature/latest"
  local ok=0
  for _ in $(seq 100); do curl -sf --noproxy '*' "$burl" > /dev/null && { ok=1; break; }; sleep 0.05; done
  (( ok )) || { echo "the reading never appeared on $burl" >&2; exit 1; }
  btag=$(curl -si --noproxy '*' "$burl" | tr -d '\r' | sed -n 's/^ETag: //Ip')
}

# start_nginx WORKERS: the same body as a static file, default ETag; sets nginx_pid, nginx_workers, nurl, ntag.
start_nginx() {
  nport=$(free_port)
  rm -rf "$work/www" "$work/nginx"; mkdir -p "$work/www" "$work/nginx"
  curl -s --noproxy '*' "$burl" > "$work/www/latest.json"
  chmod -R a+rX "$work/www"
  cat > "$work/nginx.conf" <<CONF
worker_processes $1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi; uwsgi_temp_path $work/nginx/uwsgi; scgi_temp_path $work/nginx/scgi;
  server { listen 127.0.0.1:$nport; root $work/www; default_type application/json; }
}
CONF
  nginx -c "$work/nginx.conf" -g 'daemon off;' 2> "$work/nginx/stderr" & nginx_pid=$!; pids+=("$nginx_pid")
  wait_tcp "$nport" || { echo "nginx did not start: $(cat "$work/nginx/stderr" "$work/nginx/error.log" 2>/dev/null)" >&2; exit 1; }
  nurl="http://127.0.0.1:$nport/latest.json"
  ntag=$(curl -si --noproxy '*' "$nurl" | tr -d '\r' | sed -n 's/^ETag: //Ip')
  for _ in $(seq 50); do nginx_workers=$(pgrep -P "$nginx_pid" | tr '\n' ' '); [[ $(wc -w <<< "$nginx_workers") -ge $1 ]] && break; sleep 0.05; done
}

check_304() {
  local code; code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -H "If-None-Match: $2" "$1")
  [[ $code == 304 ]] || { echo "expected 304 from $1 with If-None-Match: $2, got $code" >&2; exit 1; }
  echo "  304 check: $1  ETag $2  ok" >&2
}

# run_wrk ARRAY CPU_ARRAY LABEL URL TAG PIDS...: appends requests/s to ARRAY and the servers' CPU
# microseconds per request to CPU_ARRAY; fails on non-2xx/3xx.
wrk_errors=""
run_wrk() {
  local -n acc=$1 cacc=$2
  local label=$3 url=$4 tag=$5
  shift 5
  local out c0 c1
  c0=$(cpu_ticks "$@")
  out=$(timeout $((DURATION + 30)) wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "If-None-Match: $tag" "$url")
  c1=$(cpu_ticks "$@")
  if grep -q "Non-2xx or 3xx" <<< "$out"; then echo "wrk saw non-2xx/3xx answers from $url:" >&2; echo "$out" >&2; exit 1; fi
  grep -q "Socket errors" <<< "$out" && wrk_errors+="$label: $(grep 'Socket errors' <<< "$out"); "
  local rps lat reqs us
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' <<< "$out")
  reqs=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<< "$out")
  lat=$(awk '/^ +Latency/ {print $2 " avg, " $4 " max"}' <<< "$out")
  us=$(python3 -c "print(f'{($c1-$c0)/$clk*1e6/max($reqs,1):.2f}')")
  acc+=("${rps%.*}"); cacc+=("$us")
  echo "    $label: ${rps%.*} req/s, latency $lat, server cpu $(python3 -c "print(f'{($c1-$c0)/$clk:.1f}')")s over ${DURATION}s = $us us per 304" >&2
}
metric() { curl -s --noproxy '*' "http://127.0.0.1:$bport/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

summary=()
for pair in "${pairs[@]}"; do
  read -r bt nw <<< "$pair"
  echo "== bridge [http] threads = $bt, nginx worker_processes = $nw" >&2
  start_bridge "$bt"; start_nginx "$nw"
  check_304 "$burl" "$btag"; check_304 "$nurl" "$ntag"
  before=$(metric telemetry_http_not_modified_total)
  b=(); n=(); bc=(); nc=()
  for r in $(seq "$ROUNDS"); do
    (( SECONDS < LIMIT_S - DURATION * 2 )) || { echo "not_modified.sh: out of time" >&2; exit 1; }
    echo "  round $r" >&2
    run_wrk n nc nginx "$nurl" "$ntag" "$nginx_pid" $nginx_workers
    run_wrk b bc bridge "$burl" "$btag" "$bridge_pid"
  done
  after=$(metric telemetry_http_not_modified_total)
  stop_pid "$bridge_pid"; stop_pid "$nginx_pid"
  bm=$(median "${b[@]}"); nm=$(median "${n[@]}"); bcm=$(median "${bc[@]}"); ncm=$(median "${nc[@]}")
  summary+=("bridge threads = $bt against nginx worker_processes = $nw:"
    "  nginx: ${n[*]}  median $nm req/s; CPU per 304 ${nc[*]}  median $ncm us"
    "  bridge: ${b[*]}  median $bm req/s; CPU per 304 ${bc[*]}  median $bcm us"
    "  ratio bridge/nginx: req/s $(python3 -c "print(f'{$bm/$nm:.2f}')"), CPU per 304 $(python3 -c "print(f'{$bcm/$ncm:.2f}')")  (aim: req/s >= 1.0)"
    "  bridge telemetry_http_not_modified_total rose by $(python3 -c "print(int(float('$after') - float('$before')))") (wrk: about $(printf '%s\n' "${b[@]}" | awk -v d="$DURATION" '{s += $1 * d} END {print s}'))")
done
echo
echo "=== 304 summary ($(date -u +%F), $(nproc) cores, ${SECONDS}s) ==="
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s -H 'If-None-Match: <tag>', $ROUNDS rounds alternating nginx/bridge; nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') static file"
printf '%s\n' "${summary[@]}"
echo "  wrk non-2xx/3xx: 0; socket errors: ${wrk_errors:-none}"
