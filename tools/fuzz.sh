#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang-14 into build-fuzz/ and runs each for a bounded
# time on its seed corpus (fuzz/corpus/<target>/, read only; inputs the run discovers go to
# build-fuzz/corpus/<target>/). A crash, sanitizer report, failed property, leak or timeout stops
# that target and leaves its input in build-fuzz/artifacts/; the script runs the other targets
# and exits 1 listing them. Reproduce one with: build-fuzz/fuzz/<target> <artifact file>.
#
#   tools/fuzz.sh                    # 20 s per target (what CI runs)
#   tools/fuzz.sh 600                # a longer local run: 10 minutes per target
#   tools/fuzz.sh 60 fuzz_query      # only the named targets
#
# FUZZ_JOBS (default 1) runs that many fuzzing processes per target (libFuzzer -fork).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
all_targets=(fuzz_payload fuzz_topic fuzz_conditional fuzz_ws_message fuzz_config fuzz_auth fuzz_query)
if [[ $# -gt 0 ]]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

CXX=${FUZZ_CXX:-clang++-14}
if ! command -v "$CXX" >/dev/null; then
  echo "fuzz: $CXX not found (tools/install-deps.sh installs clang-14 and libclang-rt-14-dev)" >&2
  exit 1
fi

# Assertions stay on (-O1 -g, no NDEBUG): a failed assert is a finding too.
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DTELEMETRY_FUZZ=ON -DTELEMETRY_BUILD_TESTS=OFF >/dev/null
echo "fuzz: building ${targets[*]} (log: build-fuzz/build.log)"
if ! nice cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]}" >build-fuzz/build.log 2>&1; then
  tail -40 build-fuzz/build.log >&2
  exit 1
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
mkdir -p build-fuzz/artifacts build-fuzz/tmp
export TMPDIR=$PWD/build-fuzz/tmp  # fuzz_query's SQLite database
failed=()
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  echo "fuzz: $t for ${seconds}s"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192
        -artifact_prefix="build-fuzz/artifacts/$t-" -print_final_stats=1)
  if [[ -f fuzz/dict/$t.dict ]]; then args+=(-dict="fuzz/dict/$t.dict"); fi
  if [[ ${FUZZ_JOBS:-1} -gt 1 ]]; then args+=(-fork="$FUZZ_JOBS" -ignore_crashes=0); fi
  if ! nice "build-fuzz/fuzz/$t" "${args[@]}" "build-fuzz/corpus/$t" "fuzz/corpus/$t" \
       >"build-fuzz/$t.log" 2>&1; then
    failed+=("$t")
    echo "fuzz: $t FAILED; its report: build-fuzz/$t.log" >&2
    grep -E "^(==[0-9]+==ERROR|SUMMARY|.*runtime error|.*property failed)" "build-fuzz/$t.log" | head -5 >&2 || true
  else
    grep -E "^stat::number_of_executed_units|^stat::new_units_added" "build-fuzz/$t.log" | tr '\n' ' '
    echo
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: failed: ${failed[*]}; inputs in build-fuzz/artifacts/" >&2
  ls build-fuzz/artifacts >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s without a finding"
