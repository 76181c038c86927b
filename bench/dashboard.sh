#!/usr/bin/env bash
# Dashboard smoothness: SENSORS simulated sensors at 1 Hz each (default 200), the dashboard open in
# headless Chromium (1600 x HEIGHT, default 1000: about 48 cards on screen) on the default transport, and for DURATION seconds (default 20)
# the page's frame intervals (requestAnimationFrame), long tasks (PerformanceObserver) and
# main-thread busy share (how late a chain of 0 ms timers runs). Prints median / p99 frame
# interval and busy %. Headless Chromium, the bridge, Mosquitto and the simulator share this
# machine's 2 cores, so figures are an upper bound on what a desktop browser sees.
#
# Usage: bench/dashboard.sh [BUILD_DIR]   (or BUILD_DIR=...; default build)
# Environment: SENSORS=200 DURATION=20 HEIGHT=1000 (HEIGHT=5200: all 200 cards on screen). Runtime: about DURATION + 30 s; hard limit 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "${1:-${BUILD_DIR:-build}}")
[[ -x $build/broker-bridge/broker-bridge && -d $build/web/node_modules/playwright-core ]] ||
  { echo "build first (tools/build.sh): missing the bridge or $build/web/node_modules" >&2; exit 1; }
# Loopback only: keep any proxy of the environment out of it.
export no_proxy='*' NO_PROXY='*'
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY
SENSORS=${SENSORS:-200} DURATION=${DURATION:-20} HEIGHT=${HEIGHT:-1000} \
  timeout 300 node tests/browser/dashboard_test.mjs "$build" smoothness
