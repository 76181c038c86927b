#!/usr/bin/env bash
# Ingest benchmark: how fast the bridge drains a QoS 1 backlog with ack-after-commit (every
# reading committed to SQLite before its PUBACK), against the broker's own ceiling measured in the
# same run: the same backlog drained by a subscriber built like the bridge's ingest that discards.
#
# Each round: a fresh Mosquitto and database; the consumer registers its persistent session and
# goes away; sensor-sim publishes N readings at QoS 1 into the queue; the consumer comes back and
# drains it. Rounds alternate discard / bridge. Usage: bench/ingest.sh [BUILD_DIR] (N=200000, ROUNDS=3)
set -euo pipefail
build=$(realpath "${1:-build}")
N=${N:-200000}
ROUNDS=${ROUNDS:-3}
sensors=10
rate=$((N / sensors / 10))  # 10 s of publishing
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY
work=$(mktemp -d /tmp/ingest-bench-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_broker() {
  port=$(free_port)
  cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_queued_messages 10000000
max_queued_bytes 0
max_inflight_messages 100
CONF
  [[ $(id -u) -eq 0 ]] && echo "user root" >> "$work/mosquitto.conf"
  mosquitto -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
  broker_pid=$!; pids+=("$broker_pid")
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && return; sleep 0.05; done
  echo "mosquitto did not start" >&2; exit 1
}
stop_pid() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

publish_backlog() {
  local out
  out=$("$build/sensor-sim/sensor-sim" --mqtt "tcp://127.0.0.1:$port" --sensors $sensors --rate $rate \
        --duration 10 --qos 1 --quiet --id-prefix "bench-" --seed 5 | tail -1)
  acked=$(sed -n 's/.*acked=\([0-9]*\).*/\1/p' <<< "$out")
  echo "    published: $out" >&2
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

discard_round() {
  start_broker
  # Readings only (not the retained status topics), as counted on the bridge's side.
  "$build/bench/discard-subscriber" --mqtt "tcp://127.0.0.1:$port" --topic 'sensors/+/temperature' --register
  publish_backlog
  local out
  out=$("$build/bench/discard-subscriber" --mqtt "tcp://127.0.0.1:$port" --topic 'sensors/+/temperature' --expect "$acked")
  echo "    discard: $out" >&2
  stop_pid "$broker_pid"
  sed -n 's/.*rate_hz=\([0-9]*\).*/\1/p' <<< "$out"
}

bridge_round() {
  start_broker
  rm -f "$work"/bridge.db*
  local args=(--mqtt "tcp://127.0.0.1:$port" --http 127.0.0.1:0 --db "$work/bridge.db")
  "$build/broker-bridge/broker-bridge" "${args[@]}" > "$work/bridge.out" 2> "$work/bridge.err" &
  local bp=$!; pids+=("$bp")
  local hp=""
  for _ in $(seq 200); do hp=$(sed -n 's/.*serving http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$work/bridge.out"); [[ -n $hp ]] && break; sleep 0.05; done
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$hp/readyz" > /dev/null && break; sleep 0.05; done
  stop_pid "$bp"   # the session now exists; the broker queues for it
  publish_backlog
  "$build/broker-bridge/broker-bridge" "${args[@]}" > "$work/bridge.out" 2> "$work/bridge.err" &
  bp=$!; pids+=("$bp")
  hp=""
  for _ in $(seq 200); do hp=$(sed -n 's/.*serving http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$work/bridge.out"); [[ -n $hp ]] && break; sleep 0.01; done
  local t_first="" stored=0 t_now cpu0 cpu1
  cpu0=$(cpu_ticks "$bp")
  # Timed like the discard subscriber: from the first stored reading to the last.
  while (( stored < acked )); do
    stored=$(curl -s "http://127.0.0.1:$hp/metrics" | sed -n 's/^telemetry_readings_stored_total \([0-9]*\)$/\1/p')
    stored=${stored:-0}
    t_now=$(date +%s.%N)
    if [[ -z $t_first && $stored -gt 0 ]]; then t_first=$t_now; first_count=$stored; fi
    sleep 0.02
  done
  cpu1=$(cpu_ticks "$bp")
  local commit
  commit=$(curl -s "http://127.0.0.1:$hp/metrics" | awk '/^telemetry_commit_duration_seconds_sum/ {s=$2} /^telemetry_commit_duration_seconds_count/ {c=$2} END {printf "%.1f", s/c*1e6}')
  local rows
  rows=$(sqlite3 "$work/bridge.db" "select count(*) from readings")
  local rate_hz
  rate_hz=$(python3 -c "print(round(($stored - $first_count) / ($t_now - $t_first)))")
  echo "    bridge: stored=$stored rows_in_db=$rows rate_hz=$rate_hz cpu_s=$(python3 -c "print(($cpu1-$cpu0)/$(getconf CLK_TCK))") mean_commit_us=$commit" >&2
  stop_pid "$bp"
  stop_pid "$broker_pid"
  echo "$rate_hz"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

discard_rates=(); bridge_rates=()
for r in $(seq "$ROUNDS"); do
  echo "round $r" >&2
  discard_rates+=("$(discard_round)")
  bridge_rates+=("$(bridge_round)")
done
d=$(median "${discard_rates[@]}"); b=$(median "${bridge_rates[@]}")
echo
echo "ingest benchmark: backlog of $N QoS 1 readings ($sensors sensors), $ROUNDS rounds, 2-core machine"
echo "  discard subscriber (broker ceiling) msg/s: ${discard_rates[*]}  median $d"
echo "  broker-bridge (commit before ack)   msg/s: ${bridge_rates[*]}  median $b"
echo "  ratio bridge/ceiling: $(python3 -c "print(round($b/$d, 2))")"
