#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole system in the foreground: Mosquitto from
# conf/, the bridge storing into data/telemetry.db, and 20 simulated sensors at 1 Hz. The URL is
# printed once the bridge answers /readyz (at most 20 s); if the broker or the bridge does not start,
# it says which, shows the end of its log, stops the rest and exits 1. Ctrl-C stops everything
# cleanly (simulator, then bridge, then broker).
#
# Environment, all optional (paths relative to the repository root):
#   DEMO_HTTP_PORT=8080    the bridge's port on 127.0.0.1
#   DEMO_MQTT_PORT=18830   the broker's port on 127.0.0.1
#   DEMO_DATA_DIR=data     database, broker persistence and logs
#   DEMO_BUILD_DIR=build   where the binaries are (tools/build.sh builds into build/)
#   DEMO_SKIP_BUILD=1      run what DEMO_BUILD_DIR holds: no tools/install-deps.sh, no tools/build.sh
#                          (the tests run the script this way, without apt-get or network)
set -euo pipefail
cd "$(dirname "$0")/.."
http_port=${DEMO_HTTP_PORT:-8080}
mqtt_port=${DEMO_MQTT_PORT:-18830}
data=${DEMO_DATA_DIR:-data}
bin=${DEMO_BUILD_DIR:-build}
if [[ ${DEMO_SKIP_BUILD:-} != 1 ]]; then
  tools/install-deps.sh
  tools/build.sh >/dev/null
fi

mkdir -p "$data/mosquitto"
# The shipped Mosquitto config plus what depends on this machine: the port, where to persist, and
# (as root) not dropping privileges, or it could not write that folder.
run_conf=$data/mosquitto.run.conf
sed "s/^listener 18830 /listener $mqtt_port /" conf/mosquitto.conf > "$run_conf"
echo "persistence_location $(realpath "$data")/mosquitto/" >> "$run_conf"
if [[ $(id -u) -eq 0 ]]; then echo "user root" >> "$run_conf"; fi

pids=()
stop_all() {
  trap - INT TERM
  echo "run-demo: stopping"
  # Reverse order: sensors first (they publish offline), then the bridge (it commits what it has),
  # then the broker (it saves the bridge's session).
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  exit "${1:-0}"
}
trap 'echo; stop_all 0' INT TERM

# fail WHAT LOG: says what did not start and where its log is, shows the log's end, stops what did
# start, exits 1.
fail() {
  echo "run-demo: FAILED: $1; log: $2" >&2
  if [[ -s $2 ]]; then tail -n 5 "$2" | sed 's/^/  | /' >&2; fi
  if grep -qi 'address already in use' "$2" 2>/dev/null; then
    echo "run-demo: a port is taken; stop what uses it, or choose others:" \
         "DEMO_HTTP_PORT=<port> DEMO_MQTT_PORT=<port> tools/run-demo.sh" >&2
  fi
  stop_all 1
}
alive() { kill -0 "$1" 2>/dev/null; }

# Each in its own session (setsid): Ctrl-C reaches only this script, which then stops them in order.
setsid mosquitto -c "$run_conf" 2> "$data/mosquitto.log" &
broker=$!
pids+=("$broker")
# Up means listening, and still running after half a second: when the port is taken it exits at
# once, and what listens there is something else.
for ((i = 0; ; i++)); do
  alive "$broker" || fail "Mosquitto did not start on 127.0.0.1:$mqtt_port" "$data/mosquitto.log"
  ((i >= 5)) && (echo > "/dev/tcp/127.0.0.1/$mqtt_port") 2>/dev/null && break
  ((i < 50)) || fail "Mosquitto does not listen on 127.0.0.1:$mqtt_port after 5 s" "$data/mosquitto.log"
  sleep 0.1
done

setsid "$bin/broker-bridge/broker-bridge" --config conf/broker-bridge.toml --http "127.0.0.1:$http_port" \
  --mqtt "tcp://127.0.0.1:$mqtt_port" --db "$data/telemetry.db" \
  > "$data/broker-bridge.out" 2> "$data/broker-bridge.log" &
bridge=$!
pids+=("$bridge")
# Ready means listening (the address it prints), storage open and the broker's subscription
# acknowledged. Both processes are watched meanwhile: something else answering on either port
# must not pass for them.
url=
deadline=$((SECONDS + 20))
until [[ -n $url ]] && curl -fs --noproxy '*' --max-time 2 -o /dev/null "$url/readyz"; do
  alive "$bridge" || fail "the bridge did not start" "$data/broker-bridge.log"
  alive "$broker" || fail "Mosquitto stopped" "$data/mosquitto.log"
  ((SECONDS < deadline)) ||
    fail "the bridge is not ready after 20 s (${url:-not listening})" "$data/broker-bridge.log"
  [[ -n $url ]] || url=$(sed -n 's/^broker-bridge: serving //p' "$data/broker-bridge.out" 2>/dev/null || true)
  sleep 0.2
done

setsid "$bin/sensor-sim/sensor-sim" --config conf/sensor-sim.toml --mqtt "tcp://127.0.0.1:$mqtt_port" \
  --sensors 20 --rate 1 --report-interval 60 &
pids+=($!)

echo "run-demo: open $url (API: $url/api/v1/sensors)"
echo "run-demo: logs in $data/*.log; Ctrl-C stops everything"
wait
