#!/usr/bin/env bash
# Ingest benchmark: sustained QoS 1 ingest into broker-bridge (each reading journaled/committed
# before Paho sends its PUBACK) against the broker's own ceiling measured in the same run: the
# same backlog drained by bench/mqtt_discard.cpp, a subscriber built like the bridge's ingest
# (Paho C++ async_client, MQTT v5, persistent session, message callback) that only counts.
#
# Backlog part, ROUNDS rounds alternating discard / bridge, each with a fresh Mosquitto and a
# fresh database: the consumer registers its persistent session and goes away; sensor-sim
# publishes the backlog at QoS 1 with `--count` (exactly N / SENSORS readings per sensor, none
# skipped, so every round has the same N; a round whose acked count differs fails); the consumer
# comes back and drains it. Rates are timed from the first reading consumed to the Nth (discard: its own
# clock; bridge: telemetry_readings_stored_total polled every 20 ms over one keep-alive HTTP
# connection). Live part (LIVE=1): the consumer stays connected while sensor-sim publishes at
# LIVE_RATE readings/s in total for LIVE_S seconds; reports the received rate, the backlog when
# the publisher stops and how long it takes to clear. Every consumer's CPU time is reported per
# reading (microseconds of user + system CPU over the readings it consumed), with medians and the
# bridge/discard ratio in the summary.
#
# Power-loss durability (SYNC_COMPARE=1): no discard rounds and no live part; instead ROUNDS
# pairs of bridge rounds alternating ingest.sync = false / true on the same backlog, reporting
# both medians and their ratio (the database and journal are in a mktemp -d under /tmp; its file
# system is printed).
#
# MQTT republish (REPUBLISH_COMPARE=1): likewise ROUNDS pairs of bridge rounds, alternating
# without [mqtt_out] and with `[mqtt_out] prefix = "republished"` (to the same broker, with a
# mosquitto_sub reading it at QoS 1, so the broker delivers every republished message), reporting
# both medians, their ratio, and how much the republisher had published and had acknowledged when
# the last reading was stored.
#
# Usage: bench/ingest.sh [BUILD_DIR]   (or BUILD_DIR=...; default: this repository's build/)
# Environment: N=200000 (rounded down to a multiple of SENSORS) ROUNDS=3 SENSORS=10 PUBLISH_S=10 LIVE=1 LIVE_RATE=15000 LIVE_S=10
#   LIVE_ROUNDS=1 (pairs of live rounds, alternating discard / bridge; medians of their CPU per reading)
#   BRIDGE_TOML=FILE (passed to the bridge as --config; flags still set broker, HTTP and db)
#   SYNC_COMPARE=0 REPUBLISH_COMPARE=0 DRAIN_TIMEOUT_S=120 (a bridge round fails when the backlog is not stored by then)
#   PERF_DIR=DIR (perf record -g of the bridge during each backlog drain: DIR/bridge-1.data, ...;
#   and during the live part: DIR/bridge-live.data); PERF_ARGS="--call-graph dwarf" instead of -g)
# Runtime: about 3-5 minutes; hard limit 9.5 minutes.
set -euo pipefail
build=$(realpath "${1:-${BUILD_DIR:-$(dirname "$0")/../build}}")
N=${N:-200000}
ROUNDS=${ROUNDS:-3}
SENSORS=${SENSORS:-10}
PUBLISH_S=${PUBLISH_S:-10}
LIVE=${LIVE:-1}
LIVE_RATE=${LIVE_RATE:-15000}
LIVE_S=${LIVE_S:-10}
LIVE_ROUNDS=${LIVE_ROUNDS:-1}
BRIDGE_TOML=${BRIDGE_TOML:-}
SYNC_COMPARE=${SYNC_COMPARE:-0}
REPUBLISH_COMPARE=${REPUBLISH_COMPARE:-0}
DRAIN_TIMEOUT_S=${DRAIN_TIMEOUT_S:-120}
PERF_DIR=${PERF_DIR:-}  # set: perf record of the bridge during each backlog drain, bridge-N.data there
perf_n=0
[[ -z $BRIDGE_TOML || -r $BRIDGE_TOML ]] || { echo "BRIDGE_TOML=$BRIDGE_TOML is not readable" >&2; exit 1; }
[[ -n $BRIDGE_TOML ]] && BRIDGE_TOML=$(realpath "$BRIDGE_TOML")
LIMIT_S=570
per_sensor=$((N / SENSORS))
(( per_sensor >= 100 )) || { echo "N=$N is too small: at least 100 readings per sensor (N >= $((100 * SENSORS)))" >&2; exit 1; }
N=$((per_sensor * SENSORS))
bridge_bin=$build/broker-bridge/broker-bridge
sim_bin=$build/sensor-sim/sensor-sim
discard_bin=$build/bench/mqtt-discard
for b in "$bridge_bin" "$sim_bin" "$discard_bin"; do
  [[ -x $b ]] || { echo "missing $b (build first: cmake --build $build)" >&2; exit 1; }
done
BENCH_NAME=ingest-bench
source "$(dirname "$0")/common.sh"
clk=$(getconf CLK_TCK)
ticks_to_s() { python3 -c "print(f'{$1/$clk:.2f}')"; }

# Polls the bridge's /metrics over one keep-alive connection every 20 ms; prints
# "<unix_s> <readings_stored_total>" samples until the count reaches STOP_AT (0: never), or
# stays unchanged for IDLE_S after a first reading, or TIMEOUT_S passes.
cat > "$work/poll.py" <<'PY'
import http.client, sys, time
port, stop_at, idle_s, timeout_s = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
t_end = time.time() + timeout_s
conn = None
last, last_change = -1, time.time()
while time.time() < t_end:
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    except Exception:
        conn = None
        time.sleep(0.02)
        continue
    now = time.time()
    n = 0
    for line in body.splitlines():
        if line.startswith("telemetry_readings_stored_total "):
            n = int(float(line.split()[1]))
    print(f"{now:.3f} {n}", flush=True)
    if n != last:
        last, last_change = n, now
    if stop_at and n >= stop_at:
        break
    if idle_s and n > 0 and now - last_change >= idle_s:
        break
    time.sleep(0.02)
PY

start_broker() {
  for _ in 1 2 3; do
    port=$(free_port)
    cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_queued_messages 10000000
max_queued_bytes 0
max_inflight_messages 100
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
CONF
    [[ $(id -u) -eq 0 ]] && echo "user root" >> "$work/mosquitto.conf"
    mosquitto -c "$work/mosquitto.conf" 2> "$work/mosquitto.log" &
    broker_pid=$!; pids+=("$broker_pid")
    for _ in $(seq 100); do
      (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
      kill -0 "$broker_pid" 2>/dev/null || break
      sleep 0.05
    done
    stop_pid "$broker_pid"
  done
  echo "mosquitto did not start: $(cat "$work/mosquitto.log")" >&2; exit 1
}

# sensor-sim: exactly COUNT readings per sensor spread over about S seconds (late slots are
# published late, never skipped); sets acked (checked: SENSORS x COUNT), pub_rate, sim_cpu.
publish() {
  local count=$1 secs=$2 out want=$(($1 * SENSORS))
  out=$(/usr/bin/time -f 'cpu %U %S' -o "$work/sim.time" timeout $((secs + 60)) \
        "$sim_bin" --mqtt "tcp://127.0.0.1:$port" --sensors "$SENSORS" --count "$count" \
        --rate "$(python3 -c "print($count / $secs)")" --duration 0 \
        --qos 1 --quiet --id-prefix bench- --seed 5 --drain-timeout 30 | tail -1)
  acked=$(sed -n 's/.*acked=\([0-9]*\).*/\1/p' <<< "$out")
  pub_rate=$(sed -n 's/.*rate_hz=\([0-9.]*\).*/\1/p' <<< "$out")
  sim_cpu=$(awk '/^cpu/ {printf "%.2f", $2 + $3}' "$work/sim.time")
  echo "    sensor-sim: $out (cpu_s=$sim_cpu)" >&2
  [[ ${acked:-0} == "$want" ]] || { echo "sensor-sim had ${acked:-0} of $want readings acknowledged: rounds would differ" >&2; exit 1; }
}
# per_reading CPU_S COUNT: microseconds of CPU per reading.
per_reading() { python3 -c "print(f'{$1 * 1e6 / $2:.1f}')"; }

# perf_start NAME: with PERF_DIR, perf record of the bridge into PERF_DIR/bridge-NAME.data until
# perf_stop (its messages in perf-NAME.err).
perf_pid=""
perf_start() {
  [[ -n $PERF_DIR ]] || return 0
  perf record -F 999 ${PERF_ARGS:--g} -p "$bridge_pid" -o "$PERF_DIR/bridge-$1.data" 2> "$PERF_DIR/perf-$1.err" &
  perf_pid=$!
}
perf_stop() {
  [[ -n $perf_pid ]] || return 0
  kill -INT "$perf_pid" 2> /dev/null || true
  wait "$perf_pid" || true
  perf_pid=""
}

start_bridge() {  # on $hport (picked free beforehand, so a poller can wait for it); sets bridge_pid
  local conf=()
  [[ -n $bridge_toml ]] && conf=(--config "$bridge_toml")
  "$bridge_bin" "${conf[@]}" --mqtt "tcp://127.0.0.1:$port" --http "127.0.0.1:$hport" --db "$work/bridge.db" \
    > "$work/bridge.out" 2>> "$work/bridge.err" &
  bridge_pid=$!; pids+=("$bridge_pid")
  for _ in $(seq 1000); do
    grep -q "serving http://127.0.0.1:$hport" "$work/bridge.out" && return 0
    kill -0 "$bridge_pid" 2>/dev/null || break
    sleep 0.01
  done
  echo "bridge did not start: $(tail -5 "$work/bridge.err")" >&2; exit 1
}
wait_ready() {
  for _ in $(seq 300); do
    [[ $(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hport/readyz") == 200 ]] && return 0
    sleep 0.05
  done
  echo "bridge never ready" >&2; exit 1
}
metric() { curl -s --noproxy '*' "http://127.0.0.1:$hport/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
fresh_db() { rm -f "$work"/bridge.db*; : > "$work/bridge.err"; }

# ---------------------------------------------------------------- backlog drains
# Each sets round_rate (no command substitution: started PIDs must reach the EXIT trap).
discard_round() {
  start_broker
  local url="tcp://127.0.0.1:$port"
  "$discard_bin" --mqtt "$url" --register > /dev/null
  publish "$per_sensor" "$PUBLISH_S"
  local b0 out b1
  b0=$(cpu_ticks "$broker_pid")
  # Both consumers also get each sensor's retained online/offline status (2 per sensor).
  out=$("$discard_bin" --mqtt "$url" --expect $((acked + 2 * SENSORS)) --timeout 120)
  b1=$(cpu_ticks "$broker_pid")
  echo "    discard: $out mosquitto_cpu_s=$(ticks_to_s $((b1 - b0)))" >&2
  grep -q " timeout" <<< "$out" && { echo "discard subscriber timed out" >&2; exit 1; }
  stop_pid "$broker_pid"
  round_rate=$(sed -n 's/.*rate_hz=\([0-9]*\).*/\1/p' <<< "$out")
  round_cpu_us=$(per_reading "$(sed -n 's/.*cpu_s=\([0-9.]*\).*/\1/p' <<< "$out")" "$acked")
  echo "    discard: cpu_us_per_reading=$round_cpu_us" >&2
}

bridge_round() {
  start_broker
  fresh_db
  hport=$(free_port)
  start_bridge; wait_ready; stop_pid "$bridge_pid"   # the persistent session now exists
  if [[ ${OUT_SUB:-0} == 1 ]]; then  # a reader of the republished stream, so the broker delivers it
    mosquitto_sub -p "$port" -q 1 -t 'republished/#' > /dev/null &
    out_sub_pid=$!; pids+=("$out_sub_pid")
  fi
  publish "$per_sensor" "$PUBLISH_S"
  local t_launch b0 c0 b1 c1
  # The poller starts first and retries until the bridge listens: it sees the first commit.
  python3 "$work/poll.py" "$hport" "$acked" 0 "$DRAIN_TIMEOUT_S" > "$work/samples" &
  local pp=$!; pids+=("$pp")
  sleep 0.3
  b0=$(cpu_ticks "$broker_pid")
  t_launch=$(date +%s.%N)
  start_bridge
  c0=$(cpu_ticks "$bridge_pid")
  perf_n=$((perf_n + 1)); perf_start "$perf_n"  # a profile of the bridge while it drains
  wait "$pp" || true
  c1=$(cpu_ticks "$bridge_pid"); b1=$(cpu_ticks "$broker_pid")
  perf_stop
  local res
  # The first-to-last rate needs two samples that differ; otherwise (a tiny N stored in one
  # commit before the first poll) only the rate from launch is meaningful.
  res=$(awk -v n="$acked" -v t0="$t_launch" '
    $2 > 0 && !f { f = 1; tf = $1; cf = $2 }
    { tl = $1; cl = $2 }
    END { if (cl < n) { print "incomplete " cl; exit }
          r = (tl > tf && cl > cf) ? sprintf("%d", (cl - cf) / (tl - tf)) : "n/a"
          printf "%s %.3f %d %.3f %d\n", r, tl - tf, cf, tl - t0, (tl > t0) ? n / (tl - t0) : 0 }' "$work/samples")
  [[ $res == incomplete* ]] && { echo "bridge stored only ${res#incomplete } of $acked in $DRAIN_TIMEOUT_S s" >&2; exit 1; }
  read -r rate span first_batch from_launch rate_launch <<< "$res"
  local commit_us batches rows syncs
  commit_us=$(curl -s --noproxy '*' "http://127.0.0.1:$hport/metrics" | awk '
    /^telemetry_commit_duration_seconds_sum/ {s=$2} /^telemetry_commit_duration_seconds_count/ {c=$2}
    END {if (c) printf "%.0f", s/c*1e6; else print "?"}')
  batches=$(metric telemetry_commit_duration_seconds_count)
  syncs=$(metric telemetry_journal_syncs_total)
  local republished=""
  if [[ -n $(metric telemetry_mqtt_out_acked_id) ]]; then
    # How far the republished stream trailed when the last reading was stored, and how long it
    # took from then to have every reading acknowledged by the broker.
    local at_end t_end=$(date +%s.%N) caught="not within 60 s"
    at_end=$(metric telemetry_mqtt_out_acked_id)
    for _ in $(seq 3000); do
      if [[ $(metric telemetry_mqtt_out_acked_id) == "$(metric telemetry_newest_id)" ]]; then
        caught="$(python3 -c "import time; print(f'{time.time() - $t_end:.2f}')") s later"; break
      fi
      sleep 0.02
    done
    republished=" | republished: acked_id=$at_end of newest $(metric telemetry_newest_id) when stored; all acknowledged $caught;"
    republished+=" bridge CPU from launch to then $(per_reading "$(ticks_to_s $(($(cpu_ticks "$bridge_pid") - c0)))" "$acked") us/reading"
  fi
  stop_pid "$bridge_pid"
  rows=$(sqlite3 "$work/bridge.db" 'select count(*) from readings' 2>/dev/null || echo '?')
  [[ $rows == "$acked" ]] || { echo "bridge: $rows rows in the database, $acked published" >&2; exit 1; }
  round_cpu_us=$(per_reading "$(ticks_to_s $((c1 - c0)))" "$acked")
  echo "    bridge: stored=$acked rows_in_db=$rows cpu_us_per_reading=$round_cpu_us first_to_last_s=$span (first sample $first_batch) rate_hz=$rate" \
       "| from launch ${from_launch}s = ${rate_launch}/s | commits=$batches mean_commit_us=$commit_us journal_syncs=$syncs" \
       "cpu_s=$(ticks_to_s $((c1 - c0))) mosquitto_cpu_s=$(ticks_to_s $((b1 - b0)))$republished" >&2
  [[ -n ${out_sub_pid:-} ]] && { stop_pid "$out_sub_pid"; out_sub_pid=""; }
  stop_pid "$broker_pid"
  if [[ $rate == n/a ]]; then
    echo "    bridge: every reading was stored before the first sample: this N is too small to time" \
         "first to last; the rate from launch stands in (not comparable with the discard's)" >&2
    rate=$rate_launch untimed=1
  fi
  round_rate=$rate
}

# ---------------------------------------------------------------- live: consumer connected
live_discard() {
  start_broker
  local url="tcp://127.0.0.1:$port"
  "$discard_bin" --mqtt "$url" --register > /dev/null
  "$discard_bin" --mqtt "$url" --idle 5 --progress-ms 20 --timeout $((LIVE_S + 60)) > "$work/live.out" &
  local dp=$!; pids+=("$dp")
  sleep 0.5
  local b0 b1 t_end
  b0=$(cpu_ticks "$broker_pid")
  publish $((LIVE_RATE * LIVE_S / SENSORS)) "$LIVE_S"
  t_end=$(date +%s.%N)
  wait "$dp" || true
  b1=$(cpu_ticks "$broker_pid")
  live_cpu_us[discard]=$(per_reading "$(sed -n 's/.*cpu_s=\([0-9.]*\).*/\1/p' "$work/live.out")" "$acked")
  live_report discard "$(grep '^progress' "$work/live.out" | cut -d' ' -f2- | awk -v s=$((2 * SENSORS)) '{print $1, ($2 > s ? $2 - s : 0)}')" "$t_end" \
    "$(grep '^received' "$work/live.out") cpu_us_per_reading=${live_cpu_us[discard]} mosquitto_cpu_s=$(ticks_to_s $((b1 - b0)))"
  stop_pid "$broker_pid"
}

live_bridge() {
  start_broker
  fresh_db
  hport=$(free_port)
  start_bridge; wait_ready
  python3 "$work/poll.py" "$hport" 0 5 $((LIVE_S + 60)) > "$work/samples" &
  local pp=$!; pids+=("$pp")
  local b0 c0 b1 c1 t_end
  b0=$(cpu_ticks "$broker_pid"); c0=$(cpu_ticks "$bridge_pid")
  perf_start live
  publish $((LIVE_RATE * LIVE_S / SENSORS)) "$LIVE_S"
  t_end=$(date +%s.%N)
  wait "$pp" || true
  b1=$(cpu_ticks "$broker_pid"); c1=$(cpu_ticks "$bridge_pid")
  perf_stop
  live_cpu_us[bridge]=$(per_reading "$(ticks_to_s $((c1 - c0)))" "$acked")
  live_report bridge "$(cat "$work/samples")" "$t_end" \
    "cpu_s=$(ticks_to_s $((c1 - c0))) cpu_us_per_reading=${live_cpu_us[bridge]} mosquitto_cpu_s=$(ticks_to_s $((b1 - b0)))"
  stop_pid "$bridge_pid"
  stop_pid "$broker_pid"
}

# live_report NAME "SAMPLES(unix_s count)" SIM_EXIT EXTRA: the consumer's rate from its first
# reading to the last, against the publisher's; what was still missing when sensor-sim exited
# (it exits after its last PUBACK and DISCONNECT); when the last reading arrived relative to that.
live_report() {
  local line
  line=$(awk -v n="$acked" -v te="$3" '
    $2 > 0 && !f { f = 1; tf = $1; cf = $2 }
    $1 <= te { ce = $2 }
    $2 >= n && !d { d = 1; td = $1 }
    { cl = $2 }
    END { if (!d) { printf "received=%d of %d: NOT ALL IN", cl, n; exit }
          printf "received=%d of %d, consumer rate first-to-last %.0f/s over %.2fs, missing at sensor-sim exit %d, last in %+.2fs from sensor-sim exit",
          cl, n, (td > tf) ? (n - cf) / (td - tf) : 0, td - tf, n - ce, td - te }' <<< "$2")
  echo "    live $1: published $acked at ${pub_rate}/s; $line; $4" >&2
  live_lines+=("$1: published $acked at ${pub_rate}/s; $line; CPU ${live_cpu_us[$1]} us/reading")
}

echo "ingest benchmark: build=$build N=$N ROUNDS=$ROUNDS SENSORS=$SENSORS, $(nproc) cores" >&2
bridge_toml=$BRIDGE_TOML

if [[ $SYNC_COMPARE == 1 ]]; then
  fs_line=$(df -T "$work" | awk 'NR == 2 {print $1, $2, $7}')
  echo "database and journal in $work: $fs_line" >&2
  printf '[ingest]\nsync = false\n' > "$work/sync-off.toml"
  printf '[ingest]\nsync = true\n' > "$work/sync-on.toml"
  off_rates=(); on_rates=()
  for r in $(seq "$ROUNDS"); do
    check_time; echo "round $r: bridge, ingest.sync = false" >&2
    bridge_toml=$work/sync-off.toml; bridge_round; off_rates+=("$round_rate")
    check_time; echo "round $r: bridge, ingest.sync = true" >&2
    bridge_toml=$work/sync-on.toml; bridge_round; on_rates+=("$round_rate")
  done
  off=$(median "${off_rates[@]}"); on=$(median "${on_rates[@]}")
  echo
  echo "=== ingest.sync summary ($(date -u +%F), $(nproc) cores, ${SECONDS}s; $fs_line) ==="
  echo "backlog of $N QoS 1 readings (every round) from $SENSORS sensors, drained; first reading to last"
  echo "  ingest.sync = false /s: ${off_rates[*]}  median $off"
  echo "  ingest.sync = true  /s: ${on_rates[*]}  median $on"
  echo "  ratio on/off: $(python3 -c "print(f'{$on/$off:.3f}')")"
  exit 0
fi
if [[ $REPUBLISH_COMPARE == 1 ]]; then
  printf '' > "$work/out-off.toml"
  printf '[mqtt_out]\nprefix = "republished"\n' > "$work/out-on.toml"
  off_rates=(); on_rates=()
  for r in $(seq "$ROUNDS"); do
    check_time; echo "round $r: bridge, republish off" >&2
    bridge_toml=$work/out-off.toml; OUT_SUB=0; bridge_round; off_rates+=("$round_rate")
    check_time; echo "round $r: bridge, republish on" >&2
    bridge_toml=$work/out-on.toml; OUT_SUB=1; bridge_round; on_rates+=("$round_rate")
  done
  off=$(median "${off_rates[@]}"); on=$(median "${on_rates[@]}")
  echo
  echo "=== MQTT republish summary ($(date -u +%F), $(nproc) cores, ${SECONDS}s) ==="
  echo "backlog of $N QoS 1 readings from $SENSORS sensors, drained; first reading to last"
  echo "  republish off /s: ${off_rates[*]}  median $off"
  echo "  republish on  /s: ${on_rates[*]}  median $on"
  echo "  ratio on/off: $(python3 -c "print(f'{$on/$off:.3f}')")  (aim >= 0.8)"
  exit 0
fi
discard_rates=(); bridge_rates=(); discard_cpu=(); bridge_cpu=(); live_lines=(); declare -A live_cpu_us
for r in $(seq "$ROUNDS"); do
  check_time; echo "round $r: discard" >&2
  discard_round; discard_rates+=("$round_rate"); discard_cpu+=("$round_cpu_us")
  check_time; echo "round $r: bridge" >&2
  bridge_round; bridge_rates+=("$round_rate"); bridge_cpu+=("$round_cpu_us")
done
live_discard_cpu=(); live_bridge_cpu=()
if [[ $LIVE == 1 ]]; then
  for r in $(seq "$LIVE_ROUNDS"); do
    check_time; echo "live $r: discard (${LIVE_RATE}/s for ${LIVE_S}s)" >&2
    live_discard; live_discard_cpu+=("${live_cpu_us[discard]}")
    check_time; echo "live $r: bridge (${LIVE_RATE}/s for ${LIVE_S}s)" >&2
    live_bridge; live_bridge_cpu+=("${live_cpu_us[bridge]}")
  done
fi
d=$(median "${discard_rates[@]}"); b=$(median "${bridge_rates[@]}")
echo
echo "=== ingest summary ($(date -u +%F), $(nproc) cores, ${SECONDS}s) ==="
dc=$(median "${discard_cpu[@]}"); bc=$(median "${bridge_cpu[@]}")
echo "backlog of $N QoS 1 readings (every round) from $SENSORS sensors, drained; first reading to last"
echo "  mqtt-discard (broker ceiling) msg/s: ${discard_rates[*]}  median $d"
echo "  broker-bridge (commit-before-ack) /s: ${bridge_rates[*]}  median $b"
echo "  ratio bridge/ceiling: $(python3 -c "print(f'{$b/$d:.2f}')")  (aim >= 0.9)"
echo "  CPU us per reading: mqtt-discard ${discard_cpu[*]} median $dc; broker-bridge ${bridge_cpu[*]} median $bc;" \
     "ratio $(python3 -c "print(f'{$bc/$dc:.2f}')")"
if [[ ${untimed:-0} == 1 ]]; then
  echo "  WARNING: some bridge rounds stored everything before the first sample; their rate is from"
  echo "  launch and not comparable with the discard's: use a larger N"
fi
if [[ $LIVE == 1 ]]; then
  echo "live, ${LIVE_RATE}/s for ${LIVE_S}s with the consumer connected ($LIVE_ROUNDS rounds each, alternating):"
  printf '  %s\n' "${live_lines[@]}"
  ldc=$(median "${live_discard_cpu[@]}"); lbc=$(median "${live_bridge_cpu[@]}")
  echo "  CPU us per reading: mqtt-discard ${live_discard_cpu[*]} median $ldc; broker-bridge ${live_bridge_cpu[*]}" \
       "median $lbc; ratio $(python3 -c "print(f'{$lbc/$ldc:.2f}')")  (aim <= 2)"
fi
