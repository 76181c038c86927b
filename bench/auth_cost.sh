#!/usr/bin/env bash
# The cost of authentication on the hottest path: 304 Not Modified answers per second on
# /api/v1/sensors/b1/temperature/latest (If-None-Match with the current ETag) from a bridge with
# authentication on, each request carrying a bearer token (a static token, or an HS256 JWT), against
# the same binary with authentication off, in one run, alternating, with the same load tool
# (wrk -t1) and the same server threads. Also the bridge's CPU per 304 in each case.
#
# Usage: bench/auth_cost.sh [BUILD_DIR]   (default: this repository's build/)
# Environment: ROUNDS=3 DURATION=10 CONNECTIONS=50 HTTP_THREADS=2
# Runtime: about 3*ROUNDS*DURATION + 10 s.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(realpath "${1:-${BUILD_DIR:-$here/../build}}")
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
LIMIT_S=$((3 * ROUNDS * (DURATION + 5) + 60))
bridge_bin=$build/broker-bridge/broker-bridge
[[ -x $bridge_bin ]] || { echo "missing $bridge_bin (build first)" >&2; exit 1; }
for t in wrk mosquitto mosquitto_pub curl python3; do command -v "$t" > /dev/null || { echo "missing $t" >&2; exit 1; }; done
BENCH_NAME=auth-cost-bench
source "$here/common.sh"
clk=$(getconf CLK_TCK)

key=bench-jwt-key-0123456789abcdef0123456789
token=bench-static-token-0123456789
jwt=$(python3 -c '
import base64, hashlib, hmac, json, sys, time
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
h = b(b"{\"alg\":\"HS256\",\"typ\":\"JWT\"}"); p = b(json.dumps({"exp": int(time.time()) + 3600, "topics": ["#"]}).encode())
print(h + "." + p + "." + b(hmac.new(sys.argv[1].encode(), (h + "." + p).encode(), hashlib.sha256).digest()))' "$key")

start_mosquitto
launch_bridge "$bridge_bin" "$work/open" 1000
open_pid=$bpid open_port=$bport
launch_bridge "$bridge_bin" "$work/auth" 1000 "[auth]
jwt_hs256_keys = [\"$key\"]
[[auth.tokens]]
token = \"$token\"
topics = [\"#\"]"
auth_pid=$bpid auth_port=$bport
timeout 10 mosquitto_pub -p "$mport" -q 1 -t sensors/b1/temperature -m '{"value":21.5,"seq":1}'

path=/api/v1/sensors/b1/temperature/latest
tag_of() {  # PORT [HEADER]: the ETag of /latest once the reading is there
  local t=''
  for _ in $(seq 100); do
    t=$(curl -si --noproxy '*' ${2:+-H "$2"} "http://127.0.0.1:$1$path" | tr -d '\r' | sed -n 's/^ETag: //Ip')
    [[ -n $t ]] && break; sleep 0.05
  done
  [[ -n $t ]] || { echo "no reading on port $1" >&2; exit 1; }
  echo "$t"
}
open_tag=$(tag_of "$open_port")
auth_tag=$(tag_of "$auth_port" "Authorization: Bearer $token")
[[ $(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "http://127.0.0.1:$auth_port$path") == 401 ]] ||
  { echo "the auth bridge answered without a token" >&2; exit 1; }

declare -A rps cpu
run() {  # LABEL PORT PID TAG [AUTH HEADER]
  local out c0 c1 r
  c0=$(cpu_ticks "$3")
  out=$(timeout $((DURATION + 30)) wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "If-None-Match: $4" ${5:+-H "$5"} "http://127.0.0.1:$2$path")
  c1=$(cpu_ticks "$3")
  if grep -q "Non-2xx or 3xx" <<< "$out"; then echo "$1: wrk saw other answers than 304:" >&2; echo "$out" >&2; exit 1; fi
  r=$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' <<< "$out"); r=${r%.*}
  rps[$1]+="$r "
  cpu[$1]+="$(python3 -c "print(f'{($c1-$c0)/$clk/($r*$DURATION)*1e6:.2f}')") "
  echo "  $1: $r req/s, bridge cpu $(python3 -c "print(f'{($c1-$c0)/$clk:.1f}')") s" >&2
}
for r in $(seq "$ROUNDS"); do
  check_time
  echo "round $r" >&2
  run off "$open_port" "$open_pid" "$open_tag"
  run static "$auth_port" "$auth_pid" "$auth_tag" "Authorization: Bearer $token"
  run jwt "$auth_port" "$auth_pid" "$auth_tag" "Authorization: Bearer $jwt"
done
echo
echo "=== cost of authentication on 304s ($(date -u +%F), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)) ==="
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s -H 'If-None-Match: <tag>' [-H 'Authorization: Bearer ...'] on $path, $ROUNDS rounds alternating"
off=$(median ${rps[off]})
for k in off static jwt; do
  # shellcheck disable=SC2086
  m=$(median ${rps[$k]}); c=$(median ${cpu[$k]})
  echo "  $k: ${rps[$k]} req/s, median $m; bridge CPU per 304 median ${c} us; ratio to off $(python3 -c "print(f'{$m/$off:.2f}')")"
done
