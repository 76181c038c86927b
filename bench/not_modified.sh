#!/usr/bin/env bash
# Conditional-GET benchmark: 304 Not Modified responses per second on
# /api/v1/sensors/b1/temperature/latest (If-None-Match with the current ETag) against nginx
# serving the same bytes as a small static file with its default ETag, in the same run, with the
# same load tool (wrk -t1) and the same number of server threads (bridge [http] threads = 2,
# nginx worker_processes 2). All on this machine: wrk shares the cores with the server it measures.
#
# Usage: bench/not_modified.sh [BUILD_DIR]   (or BUILD_DIR=...; default: this repository's build/)
# Environment: ROUNDS=3 DURATION=10 (seconds) CONNECTIONS=50 NGINX_WORKERS=2 BRIDGE_THREADS=2
# Runtime: about 2*ROUNDS*DURATION + 10 s; hard limit 5 minutes.
set -euo pipefail
build=$(realpath "${1:-${BUILD_DIR:-$(dirname "$0")/../build}}")
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
NGINX_WORKERS=${NGINX_WORKERS:-2}
BRIDGE_THREADS=${BRIDGE_THREADS:-2}
LIMIT_S=290
bridge_bin=$build/broker-bridge/broker-bridge
[[ -x $bridge_bin ]] || { echo "missing $bridge_bin (build first)" >&2; exit 1; }
for t in wrk nginx mosquitto mosquitto_pub curl python3; do
  command -v "$t" > /dev/null || { echo "missing $t" >&2; exit 1; }
done
(( 2 * ROUNDS * DURATION + 20 < LIMIT_S )) || { echo "ROUNDS*DURATION too large for the ${LIMIT_S}s limit" >&2; exit 1; }
BENCH_NAME=not-modified-bench
source "$(dirname "$0")/common.sh"
clk=$(getconf CLK_TCK)
chmod 755 "$work"  # nginx workers may run as another user and must read the file

# ---- Mosquitto + bridge with one reading.
mport=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\n' "$mport" > "$work/mosquitto.conf"
[[ $(id -u) -eq 0 ]] && echo "user root" >> "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" 2> "$work/mosquitto.log" & pids+=($!)
wait_tcp "$mport" || { echo "mosquitto did not start: $(cat "$work/mosquitto.log")" >&2; exit 1; }

bport=$(free_port)
printf '[http]\nthreads = %s\n' "$BRIDGE_THREADS" > "$work/bridge.toml"
"$bridge_bin" --config "$work/bridge.toml" --mqtt "tcp://127.0.0.1:$mport" --http "127.0.0.1:$bport" \
  --db "$work/bridge.db" > "$work/bridge.out" 2> "$work/bridge.err" &
bridge_pid=$!; pids+=("$bridge_pid")
ready=0
for _ in $(seq 200); do
  [[ $(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "http://127.0.0.1:$bport/readyz") == 200 ]] && { ready=1; break; }
  sleep 0.05
done
(( ready )) || { echo "bridge not ready: $(tail -5 "$work/bridge.err")" >&2; exit 1; }
timeout 10 mosquitto_pub -p "$mport" -q 1 -t sensors/b1/temperature -m '{"value":21.5,"seq":1}'
burl="http://127.0.0.1:$bport/api/v1/sensors/b1/temperature/latest"
ok=0
for _ in $(seq 100); do curl -sf --noproxy '*' "$burl" > /dev/null && { ok=1; break; }; sleep 0.05; done
(( ok )) || { echo "the reading never appeared on $burl" >&2; exit 1; }
btag=$(curl -si --noproxy '*' "$burl" | tr -d '\r' | sed -n 's/^ETag: //Ip')

# ---- nginx: NGINX_WORKERS workers, the same body as a static file, default ETag.
nport=$(free_port)
mkdir -p "$work/www" "$work/nginx"
curl -s --noproxy '*' "$burl" > "$work/www/latest.json"
chmod -R a+rX "$work/www"
cat > "$work/nginx.conf" <<CONF
worker_processes $NGINX_WORKERS;
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
nginx_workers=$(pgrep -P "$nginx_pid" | tr '\n' ' ')

check_304() {
  local code; code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -H "If-None-Match: $2" "$1")
  [[ $code == 304 ]] || { echo "expected 304 from $1 with If-None-Match: $2, got $code" >&2; exit 1; }
  echo "  304 check: $1  ETag $2  ok" >&2
  curl -si --noproxy '*' -H "If-None-Match: $2" "$1" | tr -d '\r' | sed 's/^/      /' >&2
}
check_304 "$burl" "$btag"; check_304 "$nurl" "$ntag"
echo "  body ($(wc -c < "$work/www/latest.json") bytes): $(cat "$work/www/latest.json")" >&2

# run_wrk ARRAY LABEL URL TAG PIDS...: appends requests/s to ARRAY; fails on non-2xx/3xx.
wrk_errors=""
run_wrk() {
  local -n acc=$1
  local label=$2
  shift
  local out c0 c1
  c0=$(cpu_ticks "${@:4}")
  out=$(timeout $((DURATION + 30)) wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "If-None-Match: $3" "$2")
  c1=$(cpu_ticks "${@:4}")
  if grep -q "Non-2xx or 3xx" <<< "$out"; then echo "wrk saw non-2xx/3xx answers from $2:" >&2; echo "$out" >&2; exit 1; fi
  grep -q "Socket errors" <<< "$out" && wrk_errors+="$label: $(grep 'Socket errors' <<< "$out"); "
  local rps lat
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' <<< "$out")
  lat=$(awk '/^ +Latency/ {print $2 " avg, " $4 " max"}' <<< "$out")
  acc+=("${rps%.*}")
  echo "    $label: ${rps%.*} req/s, latency $lat, server cpu $(python3 -c "print(f'{($c1-$c0)/$clk:.1f}')")s over ${DURATION}s" >&2
}
metric() { curl -s --noproxy '*' "http://127.0.0.1:$bport/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

before=$(metric telemetry_http_not_modified_total)
b=(); n=()
for r in $(seq "$ROUNDS"); do
  (( SECONDS < LIMIT_S - DURATION * 2 )) || { echo "not_modified.sh: out of time" >&2; exit 1; }
  echo "round $r" >&2
  run_wrk n nginx "$nurl" "$ntag" "$nginx_pid" $nginx_workers
  run_wrk b bridge "$burl" "$btag" "$bridge_pid"
done
after=$(metric telemetry_http_not_modified_total)
bm=$(median "${b[@]}"); nm=$(median "${n[@]}")
echo
echo "=== 304 summary ($(date -u +%F), $(nproc) cores, ${SECONDS}s) ==="
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s -H 'If-None-Match: <tag>', $ROUNDS rounds alternating nginx/bridge"
echo "  nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') static file (worker_processes $NGINX_WORKERS): ${n[*]}  median $nm req/s"
echo "  broker-bridge /latest ([http] threads = $BRIDGE_THREADS): ${b[*]}  median $bm req/s"
echo "  ratio bridge/nginx: $(python3 -c "print(f'{$bm/$nm:.2f}')")  (aim >= 0.9)"
echo "  bridge telemetry_http_not_modified_total increased by $(python3 -c "print(int(float('$after') - float('$before')))")" \
     "(wrk: about $(printf '%s\n' "${b[@]}" | awk -v d="$DURATION" '{s += $1 * d} END {print s}') completed)"
echo "  wrk non-2xx/3xx: 0; socket errors: ${wrk_errors:-none}"
