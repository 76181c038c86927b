#!/usr/bin/env bash
# Conditional-GET benchmark: 304 Not Modified responses per second on /latest (If-None-Match with
# the current ETag) against nginx serving a small static file with its ETag, in the same run, with
# the same load tool (wrk) and the same number of server threads (2). All on this 2-core machine:
# wrk shares the cores with the server it measures.
# Usage: bench/not_modified.sh [BUILD_DIR]   (ROUNDS=3, DURATION=10s, CONNECTIONS=50)
set -euo pipefail
build=$(realpath "${1:-build}")
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY
work=$(mktemp -d /tmp/not-modified-bench-XXXXXX)
chmod 755 "$work"  # nginx workers run as another user and must read the file
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Mosquitto + bridge with one reading.
mport=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n' "$mport" > "$work/mosquitto.conf"
[[ $(id -u) -eq 0 ]] && echo "user root" >> "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" 2> "$work/mosquitto.log" & pids+=($!)
sleep 0.3
printf '[http]\nthreads = 2\n' > "$work/bridge.toml"
"$build/broker-bridge/broker-bridge" --config "$work/bridge.toml" --mqtt "tcp://127.0.0.1:$mport" \
  --http 127.0.0.1:0 --db "$work/bridge.db" > "$work/bridge.out" 2> "$work/bridge.err" & pids+=($!)
bport=""
for _ in $(seq 200); do bport=$(sed -n 's/.*serving http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$work/bridge.out"); [[ -n $bport ]] && break; sleep 0.05; done
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$bport/readyz" > /dev/null && break; sleep 0.05; done
mosquitto_pub -p "$mport" -q 1 -t sensors/b1/temperature -m '{"value": 21.5, "seq": 1, "unit": "Cel"}'
burl="http://127.0.0.1:$bport/api/v1/sensors/b1/temperature/latest"
for _ in $(seq 100); do curl -sf "$burl" > /dev/null && break; sleep 0.05; done
btag=$(curl -si "$burl" | tr -d '\r' | sed -n 's/^ETag: //Ip')

# nginx: 2 workers (the bridge has 2 I/O threads), a ~100-byte JSON file, default ETag.
nport=$(free_port)
mkdir -p "$work/www" "$work/nginx"
curl -s "$burl" > "$work/www/latest.json"
chmod -R a+rX "$work/www"
cat > "$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$nport; root $work/www; default_type application/json; }
}
CONF
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
nurl="http://127.0.0.1:$nport/latest.json"
for _ in $(seq 100); do curl -sf "$nurl" > /dev/null && break; sleep 0.05; done
ntag=$(curl -si "$nurl" | tr -d '\r' | sed -n 's/^ETag: //Ip')

check_304() {
  local code; code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $2" "$1")
  [[ $code == 304 ]] || { echo "expected 304 from $1, got $code" >&2; exit 1; }
}
check_304 "$burl" "$btag"; check_304 "$nurl" "$ntag"

run_wrk() {  # url tag -> requests/s (fails if any answer is not 2xx/3xx)
  local out; out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -H "If-None-Match: $2" "$1")
  if grep -q "Non-2xx or 3xx" <<< "$out"; then echo "wrk saw errors: $out" >&2; exit 1; fi
  sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' <<< "$out"
}
metric() { curl -s "http://127.0.0.1:$bport/metrics" | sed -n "s/^$1 \([0-9]*\)$/\1/p"; }

before=$(metric telemetry_http_not_modified_total)
b=(); n=()
for r in $(seq "$ROUNDS"); do
  n+=("$(run_wrk "$nurl" "$ntag")")
  b+=("$(run_wrk "$burl" "$btag")")
  echo "round $r: nginx ${n[-1]} req/s, bridge ${b[-1]} req/s" >&2
done
after=$(metric telemetry_http_not_modified_total)
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
bm=$(median "${b[@]}"); nm=$(median "${n[@]}")
echo
echo "304 benchmark: wrk -t1 -c$CONNECTIONS -d$DURATION, If-None-Match, $ROUNDS rounds, 2 server threads each, 2-core machine"
echo "  nginx 1.22 static file:  ${n[*]}  median $nm req/s"
echo "  broker-bridge /latest:   ${b[*]}  median $bm req/s (304s counted by the bridge: $((after - before)))"
echo "  ratio bridge/nginx: $(python3 -c "print(round($bm/$nm, 2))")"
