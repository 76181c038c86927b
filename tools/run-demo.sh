#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole system in the foreground: Mosquitto from
# conf/, the bridge storing into data/telemetry.db, and 20 simulated sensors at 1 Hz. Ctrl-C stops
# everything cleanly (simulator, then bridge, then broker).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh >/dev/null

mkdir -p data/mosquitto
# The shipped Mosquitto config plus what depends on this machine: where to persist, and (as root)
# not dropping privileges, or it could not write that folder.
run_conf=data/mosquitto.run.conf
cp conf/mosquitto.conf "$run_conf"
echo "persistence_location $(pwd)/data/mosquitto/" >> "$run_conf"
if [[ $(id -u) -eq 0 ]]; then echo "user root" >> "$run_conf"; fi

pids=()
stop_all() {
  trap - INT TERM
  echo
  echo "run-demo: stopping"
  # Reverse order: sensors first (they publish offline), then the bridge (it commits what it has),
  # then the broker (it saves the bridge's session).
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  exit 0
}
trap stop_all INT TERM

# Each in its own session (setsid): Ctrl-C reaches only this script, which then stops them in order.
setsid mosquitto -c "$run_conf" 2> data/mosquitto.log &
pids+=($!)
for _ in $(seq 50); do
  (echo > /dev/tcp/127.0.0.1/18830) 2>/dev/null && break
  sleep 0.1
done

setsid build/broker-bridge/broker-bridge --config conf/broker-bridge.toml 2> data/broker-bridge.log &
pids+=($!)
sleep 0.5
setsid build/sensor-sim/sensor-sim --config conf/sensor-sim.toml --mqtt tcp://127.0.0.1:18830 \
  --sensors 20 --rate 1 --report-interval 60 &
pids+=($!)

echo "run-demo: open http://127.0.0.1:8080 (API: http://127.0.0.1:8080/api/v1/sensors)"
echo "run-demo: logs in data/*.log; Ctrl-C stops everything"
wait
