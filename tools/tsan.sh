#!/usr/bin/env bash
# ThreadSanitizer over the unit tests of the concurrent parts: the hub (live fan-out, subscriber
# registry), the committer (ingest journal and SQLite commits on their own thread) and the I/O
# shards. Built in build-tsan/ (only those test binaries). Not part of CI; fuzz/README.md gives
# its time. Boost.Asio is header-only and so instrumented; Paho, OpenSSL,
# SQLite and Boost.JSON are uninstrumented system libraries, whose internal races TSan cannot see
# and whose calls are suppressed (tools/tsan.supp).
#
#   tools/tsan.sh                          # build, then run the three test binaries
#   tools/tsan.sh -tc='hub - *'            # extra arguments go to each binary (doctest options)
set -euo pipefail
cd "$(dirname "$0")/.."
CXX=${CXX:-g++}
cmake -S . -B build-tsan -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_CXX_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" -DTELEMETRY_BUILD_BENCH=OFF >/dev/null
start=$SECONDS
nice cmake --build build-tsan -j "$(nproc)" --target hub_test committer_test io_shards_test
echo "tsan: build took $((SECONDS - start)) s"
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}:suppressions=$PWD/tools/tsan.supp
start=$SECONDS
status=0
for t in hub_test committer_test io_shards_test; do
  nice "build-tsan/tests/$t" "$@" || status=1
done
echo "tsan: tests took $((SECONDS - start)) s"
exit "$status"
