#!/usr/bin/env bash
# The whole test suite built with AddressSanitizer and UndefinedBehaviorSanitizer (and LeakSanitizer)
# in build-asan/: every test binary, and the broker-bridge, sensor-sim and bridge-cli that the
# integration, WebSocket, auth and browser tests start. Any report fails the test that produced it
# (halt_on_error, UBSan without recovery; a leak makes the process exit non-zero at its end).
#
#   tools/sanitize.sh                  # build, then ctest (labels excluded below)
#   tools/sanitize.sh -R auth_test     # extra arguments go to ctest
#
# Compiler: the system g++ (CXX to choose another; clang++-14 works too). Boost, Paho, OpenSSL and
# SQLite are the uninstrumented system libraries: ASan still sees their heap through its malloc.
set -euo pipefail
cd "$(dirname "$0")/.."
CXX=${CXX:-g++}
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# -O1 -g without NDEBUG: readable reports, assertions on, a tolerable slow-down.
cmake -S . -B build-asan -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_CXX_FLAGS="$sanitize" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DTELEMETRY_BUILD_BENCH=OFF >/dev/null
nice cmake --build build-asan -j "$(nproc)"

export no_proxy='*' NO_PROXY='*'
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY
# Child processes (the bridge the tests start) inherit these. abort_on_error: a report is a crash
# the test sees. Every report also goes to a file under build-asan/sanitizer-reports/, checked
# below: some harnesses (the Python ones) do not look at the bridge's exit status or stderr.
reports=$PWD/build-asan/sanitizer-reports
rm -rf "$reports" && mkdir -p "$reports"
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1}:log_path=$reports/asan
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}:log_path=$reports/ubsan
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tools/lsan.supp:print_suppressions=0}
cd build-asan
start=$SECONDS
status=0
nice ctest --output-on-failure --timeout 600 -j 2 "$@" || status=$?
echo "sanitize: ctest took $((SECONDS - start)) s"
if compgen -G "$reports/*" >/dev/null; then
  echo "sanitize: sanitizer reports (build-asan/sanitizer-reports/):" >&2
  for f in "$reports"/*; do echo "== $f" >&2; head -60 "$f" >&2; done
  status=1
fi
exit "$status"
