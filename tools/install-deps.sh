#!/usr/bin/env bash
# Installs the Debian 12 packages the project needs to build, run and test; skips apt-get when
# everything is already there. Needs root (apt-get).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev libboost-system1.81-dev
  libpaho-mqttpp-dev libpaho-mqtt-dev libmosquitto-dev libssl-dev
  libsqlite3-dev sqlite3 zlib1g-dev
  libpq-dev postgresql-15   # storage/postgresql and its tests (a throwaway cluster per test)
  libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev
  doctest-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc  # the gRPC API (proto/)
  mosquitto mosquitto-clients
  curl procps
  python3 python3-websockets python3-grpcio python3-protobuf
  python3-paho-mqtt   # tests/integration/mqtt_out_test.py: a Paho client of the republished stream
  chromium
  systemd dpkg-dev file   # the install tests: systemd-analyze, dpkg-shlibdeps for the .deb, file
  clang-14 libclang-rt-14-dev llvm-14  # tools/fuzz.sh (libFuzzer; llvm-symbolizer for reports)
)
# The dashboard's build runs npm ci (uPlot, playwright-core); keep a Node.js that is already there
# (playwright-core wants Node 20 or later), else take Debian's.
if ! command -v npm >/dev/null; then packages+=(nodejs npm); fi
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages and not root; run as root or install them yourself" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
