#!/usr/bin/env bash
# C10K: wrk with 10,000 concurrent keep-alive connections (one thread, on CPU 1) against
# squall's examples/hello and nginx (one worker, worker_connections 12000), each on CPU 0.
# Target for squall: zero socket errors (connect, read, write, timeout), every response a 200,
# p99 reported beside nginx's.  The fd limit is raised to the hard limit for both sides.
# Writes $SQ_BENCH_RESULTS/c10k.md (default bench/results).
# Usage: bench/http_c10k.sh BUILD_DIR [SECONDS] [CONNECTIONS]
set -euo pipefail
build=${1:?usage: bench/http_c10k.sh BUILD_DIR [SECONDS] [CONNECTIONS]}
secs=${2:-10}
conns=${3:-10000}
here=$(cd "$(dirname "$0")" && pwd)
results=${SQ_BENCH_RESULTS:-$here/results}
mkdir -p "$results"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt $((conns + 100)) ]; then
  echo "fd limit $(ulimit -n) too low for $conns connections: using $(($(ulimit -n) - 100))" >&2
  conns=$(($(ulimit -n) - 100))
fi
if ! command -v wrk >/dev/null; then
  echo "(wrk missing: C10K skipped)" | tee "$results/c10k.md"
  exit 0
fi

wait_http() {
  local i
  for i in $(seq 150); do
    curl -sf -o /dev/null "http://127.0.0.1:$1$2" && return 0
    sleep 0.1
  done
  return 1
}

declare -A ERRS
# run KEY NAME PORT: one wrk run, a table row.
run() {
  local key=$1 name=$2 port=$3 out
  out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --timeout 10s --latency "http://127.0.0.1:$port/" 2>&1)
  echo "$out" > "$tmp/$key.wrk"
  local rps p50 p99 sock non2xx reqs
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  sock=$(echo "$out" | sed -n 's/^ *Socket errors: //p')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  local errs="${sock:+socket errors: $sock}${non2xx:+ non-2xx: $non2xx}"
  ERRS[$key]=${errs:-none}
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$conns" "${reqs:-0}" "${rps:--}" \
    "${p50:--}" "${p99:--}" "${errs:-none}"
}

taskset -c 0 "$build/examples/hello" 18141 > "$tmp/hello.out" 2>&1 &
pids+=($!)
nginx_ok=""
if command -v nginx >/dev/null; then
  cat > "$tmp/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $((conns + 2000));
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections $((conns + 2000)); }
http {
  access_log off;
  server {
    listen 127.0.0.1:18142 backlog=4096;
    location / { default_type text/plain; return 200 "Hello, World!"; }
  }
}
CONF
  taskset -c 0 nginx -c "$tmp/nginx.conf" -p "$tmp" &
  pids+=($!)
  nginx_ok=1
fi
wait_http 18141 / || { echo "examples/hello did not start" >&2; exit 1; }
[ -z "$nginx_ok" ] || wait_http 18142 / || nginx_ok=""

{
  echo "C10K: wrk -t1 -c$conns -d${secs}s, keep-alive, server on CPU 0, wrk on CPU 1"
  echo
  echo '| server | connections | requests | requests/s | p50 | p99 | errors |'
  echo '|---|---|---|---|---|---|---|'
  [ -z "$nginx_ok" ] || run nginx "nginx (1 worker)" 18142
  run hello "squall hello" 18141
  echo
  v=MISSED
  [ "${ERRS[hello]:-}" = none ] && v=met
  echo "summary: C10K squall: ${ERRS[hello]:-n/a} (target: no socket errors, all 200) $v"
} | tee "$results/c10k.md"
