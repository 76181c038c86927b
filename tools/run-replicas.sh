#!/usr/bin/env bash
# Runs several bridge replicas on one machine, in the foreground, the way docs/api.md section 14
# describes a deployment: a PostgreSQL 15 cluster (initdb'd on first use in its data folder),
# Mosquitto from conf/, REPLICAS bridges on PostgreSQL with one MQTT shared subscription (each
# its own client id and HTTP port), and simulated sensors. Each replica serves every reading under
# the same id: point a client at any of them, and resume its cursor on another.
#
# Prints each replica's URL once all answer /readyz; if something does not start, says which,
# shows the end of its log, stops the rest and exits 1. Ctrl-C stops everything (sensors, then
# the replicas, then the broker, then PostgreSQL). Stop a replica for good and its share of the
# readings waits in Mosquitto for its client id (docs/api.md section 14).
#
# Environment, all optional:
#   REPLICAS=3                 how many bridges
#   REPLICAS_HTTP_PORT=8081    replica i listens on 127.0.0.1:(this + i)
#   REPLICAS_MQTT_PORT=18831   the broker's port on 127.0.0.1
#   REPLICAS_PG_PORT=54329     PostgreSQL's port on 127.0.0.1
#   REPLICAS_DATA_DIR=data/replicas   PostgreSQL's cluster, the broker's persistence, the replicas'
#                              journals, logs
#   REPLICAS_SENSORS=20        simulated sensors at 1 Hz (0: none)
#   DEMO_BUILD_DIR=build       where the binaries are (tools/build.sh builds into build/)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${REPLICAS:-3}
http_port=${REPLICAS_HTTP_PORT:-8081}
mqtt_port=${REPLICAS_MQTT_PORT:-18831}
pg_port=${REPLICAS_PG_PORT:-54329}
data=${REPLICAS_DATA_DIR:-data/replicas}
sensors=${REPLICAS_SENSORS:-20}
bin=${DEMO_BUILD_DIR:-build}
pg_bin=/usr/lib/postgresql/15/bin
for b in "$bin/broker-bridge/broker-bridge" "$bin/sensor-sim/sensor-sim" "$pg_bin/initdb"; do
  [[ -x $b ]] || { echo "run-replicas: missing $b (tools/install-deps.sh, then tools/build.sh)" >&2; exit 1; }
done
mkdir -p "$data/mosquitto"
data=$(realpath "$data")

pids=()
stop_all() {
  trap - INT TERM
  echo "run-replicas: stopping"
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  exit "${1:-0}"
}
trap 'echo; stop_all 0' INT TERM
fail() {
  echo "run-replicas: FAILED: $1; log: $2" >&2
  if [[ -s $2 ]]; then tail -n 5 "$2" | sed 's/^/  | /' >&2; fi
  stop_all 1
}
alive() { kill -0 "$1" 2>/dev/null; }
listening() { (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# PostgreSQL refuses to run as root: then the cluster belongs to, and runs as, the postgres user.
as_postgres() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pgdata=$data/postgresql
if [[ ! -f $pgdata/PG_VERSION ]]; then
  mkdir -p "$pgdata"
  [[ $(id -u) -eq 0 ]] && chown postgres: "$pgdata" && chmod 700 "$pgdata"
  as_postgres "$pg_bin/initdb" -D "$pgdata" -U postgres --auth=trust --no-locale -E UTF8 \
    > "$data/initdb.log" 2>&1 || fail "initdb failed" "$data/initdb.log"
fi
listening "$pg_port" && fail "127.0.0.1:$pg_port is taken; choose REPLICAS_PG_PORT" /dev/null
touch "$data/postgresql.log"
[[ $(id -u) -eq 0 ]] && chown postgres: "$data/postgresql.log"
# runuser passes SIGTERM on to the server (a smart shutdown, after the replicas have gone).
setsid $([[ $(id -u) -eq 0 ]] && echo runuser -u postgres --) "$pg_bin/postgres" -D "$pgdata" -p "$pg_port" \
  -c listen_addresses=127.0.0.1 -c unix_socket_directories= >> "$data/postgresql.log" 2>&1 &
pids+=($!)
for ((i = 0; ; i++)); do
  "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break
  alive "${pids[-1]}" || fail "PostgreSQL did not start on 127.0.0.1:$pg_port" "$data/postgresql.log"
  ((i < 150)) || fail "PostgreSQL is not ready after 15 s" "$data/postgresql.log"
  sleep 0.1
done
url="postgresql://postgres@127.0.0.1:$pg_port/telemetry"
if ! "$pg_bin/psql" -X -q -A -t -d "postgresql://postgres@127.0.0.1:$pg_port/postgres" \
     -c "SELECT 1 FROM pg_database WHERE datname = 'telemetry'" | grep -q 1; then
  "$pg_bin/psql" -X -q -d "postgresql://postgres@127.0.0.1:$pg_port/postgres" -c "CREATE DATABASE telemetry" ||
    fail "cannot create the database" "$data/postgresql.log"
fi

run_conf=$data/mosquitto.run.conf
sed "s/^listener 18830 /listener $mqtt_port /" conf/mosquitto.conf > "$run_conf"
echo "persistence_location $data/mosquitto/" >> "$run_conf"
if [[ $(id -u) -eq 0 ]]; then echo "user root" >> "$run_conf"; fi
setsid mosquitto -c "$run_conf" 2> "$data/mosquitto.log" &
broker=$!
pids+=("$broker")
for ((i = 0; ; i++)); do
  alive "$broker" || fail "Mosquitto did not start on 127.0.0.1:$mqtt_port" "$data/mosquitto.log"
  ((i >= 5)) && listening "$mqtt_port" && break
  ((i < 50)) || fail "Mosquitto does not listen on 127.0.0.1:$mqtt_port after 5 s" "$data/mosquitto.log"
  sleep 0.1
done

urls=()
for ((r = 1; r <= n; r++)); do
  dir=$data/replica-$r
  mkdir -p "$dir"
  # The shipped configuration, with what makes this process one replica of several.
  cat > "$dir/replica.toml" <<EOF
$(sed -e '/^\[mqtt\]/,$d' conf/broker-bridge.toml)
[mqtt]
client_id = "bridge-$r"
shared_group = "bridges"
[storage]
engine = "postgresql"
url = "$url"
retention_days = 0
EOF
  setsid "$bin/broker-bridge/broker-bridge" --config "$dir/replica.toml" --http "127.0.0.1:$((http_port + r - 1))" \
    --mqtt "tcp://127.0.0.1:$mqtt_port" --db "$dir/telemetry.db" > "$dir/bridge.out" 2> "$dir/bridge.log" &
  pids+=($!)
  urls+=("http://127.0.0.1:$((http_port + r - 1))")
done
deadline=$((SECONDS + 30))
for ((r = 1; r <= n; r++)); do
  until curl -fs --noproxy '*' --max-time 2 -o /dev/null "${urls[r - 1]}/readyz"; do
    alive "${pids[-$((n - r + 1))]}" || fail "replica $r did not start" "$data/replica-$r/bridge.log"
    ((SECONDS < deadline)) || fail "replica $r is not ready after 30 s" "$data/replica-$r/bridge.log"
    sleep 0.2
  done
done

if ((sensors > 0)); then
  setsid "$bin/sensor-sim/sensor-sim" --config conf/sensor-sim.toml --mqtt "tcp://127.0.0.1:$mqtt_port" \
    --sensors "$sensors" --rate 1 --report-interval 60 &
  pids+=($!)
fi

for ((r = 1; r <= n; r++)); do echo "run-replicas: replica $r: ${urls[r - 1]}"; done
echo "run-replicas: PostgreSQL $url, MQTT tcp://127.0.0.1:$mqtt_port; logs in $data; Ctrl-C stops everything"
wait
