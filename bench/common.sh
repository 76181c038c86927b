# Shared by the benchmark scripts. Source it after `set -euo pipefail` with BENCH_NAME (used for
# the work directory and messages) and LIMIT_S (the script's hard limit in seconds) set. It gives
# a work directory `$work`, a list `pids` of what the script started (stopped, by PID, at exit,
# with the work directory removed), and small helpers.

# Everything runs on loopback: keep any HTTP proxy of the environment out of it.
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY
export no_proxy='*' NO_PROXY='*'

work=$(mktemp -d "/tmp/${BENCH_NAME}-XXXXXX")
pids=()
bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

remaining() { echo $(( LIMIT_S - SECONDS )); }
check_time() { (( SECONDS < LIMIT_S )) || { echo "$BENCH_NAME: over the ${LIMIT_S}s limit, giving up" >&2; exit 1; }; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_tcp() { for _ in $(seq 200); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
# CPU ticks (utime + stime) of the given processes together.
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Stops one process the script started (TERM, then KILL after 20 s) and forgets it.
stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  timeout 20 tail --pid="$1" -f /dev/null || kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=() p
  for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}
