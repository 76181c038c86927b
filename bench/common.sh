# Shared by the benchmark scripts. Source it after `set -euo pipefail` with BENCH_NAME (used for
# the work directory and messages) and LIMIT_S (the script's hard limit in seconds) set. It gives
# a work directory `$work`, a list `pids` of what the script started (stopped, by PID, at exit,
# with the work directory removed), small helpers, and starters for a private Mosquitto and a
# bridge set up for the streaming benchmarks (stream.sh, fanout_narrow.sh).

# Everything runs on loopback: keep any HTTP proxy of the environment out of it.
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY
export no_proxy='*' NO_PROXY='*'

work=$(mktemp -d "/tmp/${BENCH_NAME}-XXXXXX")
pids=()
bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# require_build BUILD_DIR TARGET...: each target's binary is built (broker-bridge ->
# BUILD_DIR/broker-bridge/broker-bridge, stream-bench -> BUILD_DIR/bench/stream-bench), and
# Mosquitto is installed; otherwise says what to do and exits 1.
require_build() {
  local build=$1 t bin; shift
  for t in "$@"; do
    case $t in broker-bridge) bin=$build/broker-bridge/broker-bridge ;; *) bin=$build/bench/$t ;; esac
    [[ -x $bin ]] || { echo "missing $bin (build first: cmake --build $build --target $*)" >&2; exit 1; }
  done
  command -v mosquitto >/dev/null || { echo "mosquitto not installed" >&2; exit 1; }
}
remaining() { echo $(( LIMIT_S - SECONDS )); }
check_time() { (( SECONDS < LIMIT_S )) || { echo "$BENCH_NAME: over the ${LIMIT_S}s limit, giving up" >&2; exit 1; }; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_tcp() { for _ in $(seq 200); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
# CPU ticks (utime + stime) of the given processes together.
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Stops one process the script started (TERM, then KILL after 20 s) and forgets it.
stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  timeout 20 tail --pid="$1" -f /dev/null || kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=() p
  for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}

# A private Mosquitto on a free loopback port: no persistence, TCP_NODELAY, queues large enough
# that a burst is never dropped. Sets `mport` and `mpid`.
start_mosquitto() {
  mport=$(free_port)
  {
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n' "$mport"
    printf 'max_queued_messages 1000000\nmax_queued_bytes 0\npersistence false\n'
    # Mosquitto drops privileges to `mosquitto` when started as root unless told otherwise.
    if [[ $(id -u) -eq 0 ]]; then echo "user root"; fi
  } > "$work/mosquitto.conf"
  mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
  mpid=$!; pids+=("$mpid")
  wait_tcp "$mport" || { echo "mosquitto did not start:" >&2; cat "$work/mosquitto.log" >&2; exit 1; }
}

# A private PostgreSQL 15 cluster (initdb into $work/pg, fsync and synchronous_commit on: the
# bridge's journal drops what a commit returned, so the database must keep it) on a free loopback
# port. PostgreSQL refuses to run as root: as root, initdb and the server run as the postgres
# user. Sets `pgport` and `pgdir`; psql_do DB SQL runs SQL in database DB, pg_pids lists the
# server's processes (the postmaster and its children: backends, WAL writer, checkpointer).
pg_bin=/usr/lib/postgresql/15/bin
as_postgres() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
start_postgres() {
  local b
  for b in initdb postgres pg_isready psql; do
    [[ -x $pg_bin/$b ]] || { echo "missing $pg_bin/$b (apt-get install postgresql-15)" >&2; exit 1; }
  done
  pgdir=$work/pg
  mkdir -p "$pgdir/sock"
  [[ $(id -u) -eq 0 ]] && chown -R postgres: "$work" && chmod 755 "$work"
  as_postgres "$pg_bin/initdb" -D "$pgdir/data" -U postgres --auth=trust --no-locale -E UTF8 > "$work/initdb.log" 2>&1 ||
    { cat "$work/initdb.log" >&2; exit 1; }
  pgport=$(free_port)
  as_postgres "$pg_bin/postgres" -D "$pgdir/data" -p "$pgport" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories="$pgdir/sock" -c max_connections=100 > "$work/postgres.log" 2>&1 &
  pids+=("$!")
  wait_tcp "$pgport" || { echo "postgres did not start:" >&2; cat "$work/postgres.log" >&2; exit 1; }
  for _ in $(seq 100); do "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pgport" && break; sleep 0.1; done
}
psql_do() { "$pg_bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d "postgresql://postgres@127.0.0.1:$pgport/$1" -c "$2"; }
pg_pids() { local pm; pm=$(head -1 "$pgdir/data/postmaster.pid"); echo "$pm" $(pgrep -P "$pm" || true); }

# Starts the bridge binary $1 with its own config and database in the new directory $2, reading
# from the Mosquitto of start_mosquitto, with `[http] threads = HTTP_THREADS` (default 2) and
# `max_connections = $3` (also per client address: every bench client is 127.0.0.1) and the
# optional TOML $4 appended (e.g. an [auth] section) and the optional lines $5 added to its
# [http] section (e.g. tls_cert and tls_key), and BRIDGE_MQTT_EXTRA's lines to its [mqtt]; waits for /readyz. Sets `bpid`, `bport` and
# `bscheme` (http or https, as the bridge prints them); with https, `BENCH_CA` (a CA file) is
# what curl verifies the bridge's certificate against.
launch_bridge() {
  local bin=$1 dir=$2 max_connections=$3 extra=${4:-} http_extra=${5:-} per_address=''
  mkdir -p "$dir"
  # Builds before the per-address limit existed refuse the key: give it only to those that know it.
  if "$bin" --help 2>/dev/null | grep -q -- --allow-public-without-auth; then
    per_address="max_connections_per_address = $max_connections"
  fi
  cat > "$dir/bridge.toml" <<EOF
log_level = "warn"
[mqtt]
url = "tcp://127.0.0.1:$mport"
client_id = "$BENCH_NAME-$(basename "$dir")"
session_expiry_s = 5
${BRIDGE_MQTT_EXTRA:-}
[http]
listen = "127.0.0.1:0"
threads = ${HTTP_THREADS:-2}
max_connections = $max_connections
$per_address
$http_extra
[storage]
db_path = "$dir/telemetry.db"
$extra
EOF
  : > "$dir/out.log"  # exists before the poll below reads it, however late the child opens it
  "$bin" --config "$dir/bridge.toml" > "$dir/out.log" 2> "$dir/err.log" &
  bpid=$!; pids+=("$bpid")
  bport='' bscheme=http
  for _ in $(seq 200); do
    bport=$(sed -n 's#^broker-bridge: serving https\{0,1\}://127.0.0.1:\([0-9]*\).*#\1#p' "$dir/out.log")
    # The scheme is also known from the config: bridges up to 23579f1 print http:// for HTTPS too.
    [[ -n $bport ]] && { grep -q '^broker-bridge: serving https:' "$dir/out.log" && bscheme=https; break; }
    kill -0 "$bpid" 2>/dev/null || break
    sleep 0.05
  done
  [[ -n $bport ]] || { echo "bridge did not start:" >&2; cat "$dir/err.log" >&2; exit 1; }
  [[ $http_extra =~ (^|$'\n')[[:space:]]*tls_cert[[:space:]]*= ]] && bscheme=https
  for _ in $(seq 100); do
    [[ $(bridge_curl "$bport" /readyz -o /dev/null -w '%{http_code}') == 200 ]] && return 0
    sleep 0.1
  done
  echo "bridge not ready:" >&2; cat "$dir/err.log" >&2; exit 1
}

# bridge_curl PORT PATH [CURL OPTIONS]: GET from the bridge of launch_bridge (its `bscheme`).
bridge_curl() {
  local port=$1 path=$2; shift 2
  if [[ ${bscheme:-http} == https ]]; then
    curl --noproxy '*' -s --max-time 5 ${BENCH_CA:+--cacert "$BENCH_CA"} "$@" "https://127.0.0.1:$port$path"
  else
    curl --noproxy '*' -s --max-time 5 "$@" "http://127.0.0.1:$port$path"
  fi
}
metric() {  # metric PORT NAME-WITH-LABELS: one value from the bridge's /metrics
  bridge_curl "$1" /metrics | awk -v n="$2" '$1 == n {print $2}'
}
bridge_stream_metrics() {  # of the bridge on `bport`
  echo "  bridge /metrics: sse_connections=$(metric "$bport" 'telemetry_stream_connections{transport="sse"}')" \
       "ws_connections=$(metric "$bport" 'telemetry_stream_connections{transport="websocket"}')" \
       "grpc_streams=$(metric "$bport" 'telemetry_stream_connections{transport="grpc"}')" \
       "longpoll_parked=$(metric "$bport" telemetry_longpoll_parked)" \
       "readings_sent_total=$(metric "$bport" telemetry_stream_readings_sent_total)" \
       "slow_disconnects_total=$(metric "$bport" telemetry_stream_slow_disconnects_total)" \
       "readings_stored_total=$(metric "$bport" telemetry_readings_stored_total)" \
       "rejected_connections=$(metric "$bport" telemetry_http_connections_rejected_total)"
}
