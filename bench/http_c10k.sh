#!/usr/bin/env bash
# C10K: wrk with 10,000 concurrent keep-alive connections (one thread, on CPU 1) against
# squall's examples/hello and nginx (one worker, worker_connections 12000), each on CPU 0.
# Target for squall: zero socket errors (connect, read, write, timeout), every response a 200,
# p99 reported beside nginx's.  The fd limit is raised to the hard limit for both sides.
# Writes $SQ_BENCH_RESULTS/c10k.md (default bench/results).
# Usage: bench/http_c10k.sh BUILD_DIR [SECONDS] [CONNECTIONS]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "BUILD_DIR [SECONDS] [CONNECTIONS]" "$@"
secs=${2:-10}
conns=${3:-10000}
bench_fit_fds conns 100
bench_require "$results/c10k.md" C10K wrk

declare -A ERRS
# run KEY NAME PORT: one wrk run, a table row.
run() {
  local key=$1 name=$2 port=$3 out
  out=$($pin_load wrk -t1 -c"$conns" -d"${secs}s" --timeout 10s --latency "http://127.0.0.1:$port/" 2>&1)
  echo "$out" > "$tmp/$key.wrk"
  wrk_parse "$out"
  local sock non2xx
  sock=$(echo "$out" | sed -n 's/^ *Socket errors: //p')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  local errs="${sock:+socket errors: $sock}${non2xx:+ non-2xx: $non2xx}"
  ERRS[$key]=${errs:-none}
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$conns" "${WRK_REQS:-0}" "${WRK_RPS:--}" \
    "${WRK_P50:--}" "${WRK_P99:--}" "${errs:-none}"
}

# Ephemeral ports: hello gets port 0 and prints its own, nginx a free_port.
bench_start_listening hello "$build/examples/hello" 0
hello_port=$PORT
[ -n "$PID" ] || { echo "examples/hello did not start" >&2; exit 1; }
# start_nginx PORT: nginx (one worker) on PORT.
start_nginx() {
  bench_nginx_conf "$1 backlog=4096" $((conns + 2000)) "worker_rlimit_nofile $((conns + 2000));"
  bench_nginx_start
}
nginx_ok="" nginx_port=""
if command -v nginx >/dev/null && bench_start_free start_nginx /; then
  nginx_ok=1 nginx_port=$PORT
fi
wait_http "$hello_port" / || { echo "examples/hello did not start" >&2; exit 1; }

{
  echo "C10K: wrk -t1 -c$conns -d${secs}s, keep-alive, server on CPU 0, wrk on CPU 1"
  echo
  echo '| server | connections | requests | requests/s | p50 | p99 | errors |'
  echo '|---|---|---|---|---|---|---|'
  [ -z "$nginx_ok" ] || run nginx "nginx (1 worker)" "$nginx_port"
  run hello "squall hello" "$hello_port"
  echo
  v=MISSED
  [ "${ERRS[hello]:-}" = none ] && v=met
  echo "summary: C10K squall: ${ERRS[hello]:-n/a} (target: no socket errors, all 200) $v"
} | tee "$results/c10k.md"
