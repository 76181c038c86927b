#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite through CTest; then the
# robustness checks (fuzz/README.md): every fuzz target briefly (tools/fuzz.sh, FUZZ_SECONDS per
# target, 20 by default) and the whole suite again under ASan + UBSan (tools/sanitize.sh).
# ROBUSTNESS=0 skips those two (the normal suite only).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
t0=$SECONDS
tools/build.sh
# Tests talk to servers on 127.0.0.1 only: keep any HTTP proxy of the environment out of it.
export no_proxy='*' NO_PROXY='*'
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY
(cd build && ctest --output-on-failure --timeout 600 -j 2)
t1=$SECONDS
echo "run-tests: build and suite took $((t1 - t0)) s"
if [[ ${ROBUSTNESS:-1} == 0 ]]; then exit 0; fi
tools/fuzz.sh "${FUZZ_SECONDS:-20}"
t2=$SECONDS
tools/sanitize.sh
t3=$SECONDS
echo "run-tests: build and suite $((t1 - t0)) s, fuzzing $((t2 - t1)) s, sanitized suite $((t3 - t2)) s"
