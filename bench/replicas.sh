#!/usr/bin/env bash
# Replicas on PostgreSQL (docs/api.md section 14) against the single SQLite bridge: how fast a
# QoS 1 backlog is stored, and how soon every replica serves all of it.
#
# One Mosquitto (queues large enough for the whole backlog) and one PostgreSQL 15 cluster
# (initdb into the work directory, fsync and synchronous_commit on: the bridge's journal drops
# what a commit returned, so the database must keep it) are started by the script. Per round and
# setup (SETUPS, alternating in every round): the bridges register their sessions (setup
# `sqlite`: one bridge on SQLite; `pgN`: N replicas on a fresh PostgreSQL database with
# `[mqtt] shared_group`, each its own client id) and stop; sensor-sim publishes N readings at QoS 1
# (--count, exactly N / SENSORS per sensor; Mosquitto holds them for the sessions, round robin
# over the group's members); the bridges start again and drain it. Reported:
#   store rate  readings stored between the first poll (every 20 ms) that saw one stored and
#               the Nth, over that time, summed over the replicas' telemetry_readings_stored_total;
#   all served  time from the Nth stored until every replica's /api/v1/updates reaches the
#               newest id (each replica reads what the others stored from the table);
#   CPU         user + system of the bridges and of PostgreSQL, per reading stored;
#   id lock     how long a batch held PostgreSQL's id lock, on average (telemetry_storage_id_lock_
#               seconds_total over the commits): the serialised part, the ceiling of all replicas.
#
# Usage: bench/replicas.sh [BUILD_DIR]
# Environment: N=100000 ROUNDS=3 SENSORS=10 SETUPS="sqlite pg1 pg2 pg3" PUBLISH_S=8 DRAIN_TIMEOUT_S=120
# Runtime: about 1 minute per round and setup at the defaults; hard limit 15 minutes.
set -euo pipefail
build=$(realpath "${1:-${BUILD_DIR:-$(dirname "$0")/../build}}")
N=${N:-100000}
ROUNDS=${ROUNDS:-3}
SENSORS=${SENSORS:-10}
SETUPS=${SETUPS:-sqlite pg1 pg2 pg3}
PUBLISH_S=${PUBLISH_S:-8}
DRAIN_TIMEOUT_S=${DRAIN_TIMEOUT_S:-120}
LIMIT_S=900
per_sensor=$((N / SENSORS))
N=$((per_sensor * SENSORS))
bridge_bin=$build/broker-bridge/broker-bridge
sim_bin=$build/sensor-sim/sensor-sim
for b in "$bridge_bin" "$sim_bin"; do
  [[ -x $b ]] || { echo "missing $b (build first)" >&2; exit 1; }
done
BENCH_NAME=replicas-bench
source "$(dirname "$0")/common.sh"
clk=$(getconf CLK_TCK)
ulimit -n 65536 2>/dev/null || true
start_postgres

start_mosquitto
sed -i 's/^max_queued_messages .*/max_queued_messages 10000000/' "$work/mosquitto.conf"
stop_pid "$mpid"
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
mpid=$!; pids+=("$mpid")
wait_tcp "$mport" || { echo "mosquitto did not restart" >&2; exit 1; }

# start_replicas SETUP ROUND: starts the setup's bridges (none running) on fixed free ports, so
# that the poller can start at once; sets bridge_pids and ports. wait_replicas waits for /readyz.
start_replicas() {
  local setup=$1 round=$2 n i dir
  bridge_pids=(); ports=()
  if [[ $setup == sqlite ]]; then n=1; else n=${setup#pg}; fi
  for ((i = 0; i < n; i++)); do
    dir=$work/$setup-$round/r$i
    mkdir -p "$dir"
    if [[ ! -f $dir/bridge.toml ]]; then
      {
        printf '[mqtt]\nclient_id = "bench-%s-%s-r%s"\n' "$setup" "$round" "$i"
        # Its own group per setup and round: a member that never returns keeps its share.
        [[ $setup == sqlite ]] || printf 'shared_group = "bench-%s-%s"\n' "$setup" "$round"
        printf '[storage]\nretention_days = 0\n'
        [[ $setup == sqlite ]] || printf 'engine = "postgresql"\nurl = "%s"\n' "$url"
        printf '[ingest]\nmax_ts_past_s = 8640000000\n'
      } > "$dir/bridge.toml"
    fi
    ports+=("$(free_port)")
    "$bridge_bin" --config "$dir/bridge.toml" --mqtt "tcp://127.0.0.1:$mport" --http "127.0.0.1:${ports[-1]}" \
      --db "$dir/t.db" --log-level warn > "$dir/out" 2> "$dir/err" &
    bridge_pids+=($!); pids+=($!)
  done
}
wait_replicas() {
  local p i=0
  for p in "${ports[@]}"; do
    for _ in $(seq 400); do curl -sf "http://127.0.0.1:$p/readyz" > /dev/null && break; sleep 0.05; done
    curl -sf "http://127.0.0.1:$p/readyz" > /dev/null || { echo "bridge on $p not ready: $(cat "$work"/*/r$i/err)" >&2; exit 1; }
    i=$((i + 1))
  done
}
stop_replicas() { local p; for p in "${bridge_pids[@]}"; do stop_pid "$p"; done; }

# Polls every replica's stored count (summed) and newest served id every 20 ms until all N are
# stored and served; prints "stored_s served_s" (from the first reading stored).
cat > "$work/poll.py" <<'PY'
import http.client, json, sys, time
n, timeout_s, ports = int(sys.argv[1]), float(sys.argv[2]), [int(p) for p in sys.argv[3:]]
conns = {p: http.client.HTTPConnection("127.0.0.1", p, timeout=5) for p in ports}
def get(p, path):
    try:
        conns[p].request("GET", path)
        return conns[p].getresponse().read().decode()
    except Exception:
        conns[p] = http.client.HTTPConnection("127.0.0.1", p, timeout=5)
        return ""
end = time.time() + timeout_s
first = stored_at = None
first_count = 0
while time.time() < end:
    stored = 0
    for p in ports:
        for line in get(p, "/metrics").splitlines():
            if line.startswith("telemetry_readings_stored_total "):
                stored += int(float(line.split()[1]))
    now = time.time()
    if stored and first is None:
        first, first_count = now, stored
    if stored >= n and stored_at is None:
        stored_at = now
    if stored_at is not None:
        newest = []
        for p in ports:
            body = get(p, "/api/v1/updates?timeout=0&limit=1&after=999999999999")
            newest.append(int(str(json.loads(body)["cursor"]).split("@")[0]) if body else 0)
        if min(newest) >= n:
            lock_s = commits = 0.0
            for p in ports:
                for line in get(p, "/metrics").splitlines():
                    if line.startswith("telemetry_storage_id_lock_seconds_total "):
                        lock_s += float(line.split()[1])
                    elif line.startswith("telemetry_commit_duration_seconds_count "):
                        commits += float(line.split()[1])
            # Timed from the first poll that saw a reading stored: the rate counts what was
            # stored after it.
            print(f"{stored_at - first:.3f} {time.time() - first:.3f} {stored} {stored - first_count} "
                  f"{lock_s * 1000 / max(commits, 1):.2f} {stored / max(commits, 1):.0f}")
            sys.exit(0)
    time.sleep(0.02)
print(f"timeout stored={stored}", file=sys.stderr)
sys.exit(1)
PY

declare -A rates served cpu_bridge cpu_pg locks
db_seq=0
echo "replicas-bench: N=$N SENSORS=$SENSORS ROUNDS=$ROUNDS SETUPS=\"$SETUPS\" (PostgreSQL on port $pgport, fsync on)"
for ((round = 1; round <= ROUNDS; round++)); do
  for setup in $SETUPS; do
    check_time
    if [[ $setup != sqlite ]]; then
      db_seq=$((db_seq + 1)); psql_do postgres "CREATE DATABASE bench_$db_seq"
      url="postgresql://postgres@127.0.0.1:$pgport/bench_$db_seq"
    fi
    start_replicas "$setup" "$round"  # registers the sessions (and creates the schema)
    wait_replicas
    stop_replicas
    timeout $((PUBLISH_S + 90)) "$sim_bin" --mqtt "tcp://127.0.0.1:$mport" --sensors "$SENSORS" --count "$per_sensor" \
      --rate "$(python3 -c "print($per_sensor / $PUBLISH_S)")" --duration 0 --qos 1 --quiet \
      --id-prefix "bench-$setup-$round-" --seed 5 --drain-timeout 30 > "$work/sim.out" 2>&1
    acked=$(sed -n 's/.*acked=\([0-9]*\).*/\1/p' "$work/sim.out" | tail -1)
    [[ ${acked:-0} == "$N" ]] || { echo "sensor-sim had ${acked:-0} of $N acknowledged: $(tail -2 "$work/sim.out")" >&2; exit 1; }
    start_replicas "$setup" "$round"
    b0=$(cpu_ticks "${bridge_pids[@]}"); p0=$(cpu_ticks $(pg_pids))
    res=$(python3 "$work/poll.py" "$N" "$DRAIN_TIMEOUT_S" "${ports[@]}") ||
      { echo "round $round $setup: not everything stored and served in ${DRAIN_TIMEOUT_S}s" >&2; exit 1; }
    b1=$(cpu_ticks "${bridge_pids[@]}"); p1=$(cpu_ticks $(pg_pids))
    read -r stored_s served_s stored timed lock_ms per_batch <<< "$res"
    [[ $stored == "$N" ]] || { echo "round $round $setup: $stored stored, $N published (a duplicate or a loss)" >&2; exit 1; }
    if [[ $setup != sqlite ]]; then
      rows=$(psql_do "bench_$db_seq" "SELECT count(*) FROM readings")
      [[ $rows == "$N" ]] || { echo "round $round $setup: $rows rows in PostgreSQL, $N published" >&2; exit 1; }
    fi
    # A backlog stored within one 20 ms poll cannot be timed: N too small.
    rate=$(python3 -c "print(round($timed / $stored_s) if $stored_s >= 0.1 else 'untimed')")
    bus=$(python3 -c "print(f'{($b1 - $b0) / $clk * 1e6 / $N:.1f}')")
    pus=$(python3 -c "print(f'{($p1 - $p0) / $clk * 1e6 / $N:.1f}')")
    lag=$(python3 -c "print(f'{($served_s - $stored_s) * 1000:.0f}')")
    echo "RESULT round=$round setup=$setup store_rate_hz=$rate all_served_after_ms=$lag bridge_cpu_us_per_reading=$bus postgres_cpu_us_per_reading=$pus id_lock_ms_per_batch=$lock_ms readings_per_batch=$per_batch"
    rates[$setup]+="$rate "; served[$setup]+="$lag "; cpu_bridge[$setup]+="$bus "; cpu_pg[$setup]+="$pus "
    locks[$setup]+="$lock_ms "
    stop_replicas
  done
done

echo
echo "| setup | store rate (readings/s), median | all replicas served, ms after the last stored | bridge CPU us/reading | PostgreSQL CPU us/reading | id lock held per batch, ms |"
echo "|---|---|---|---|---|---|"
for setup in $SETUPS; do
  # shellcheck disable=SC2086
  echo "| $setup | $(median ${rates[$setup]}) (${rates[$setup]% }) | $(median ${served[$setup]}) | $(median ${cpu_bridge[$setup]}) | $(median ${cpu_pg[$setup]}) | $(median ${locks[$setup]}) |"
done
