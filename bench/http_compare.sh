#!/usr/bin/env bash
# squall's examples/hello beside nginx (1 worker, `return 200`) on keep-alive plaintext and
# 16-deep pipelining.  Each server is pinned to CPU 0 and wrk to CPU 1; server CPU time per
# request comes from utime+stime in /proc/<pid>/stat over the run.
# Usage: bench/http_compare.sh BUILD_DIR [SECONDS]
set -euo pipefail
build=${1:?usage: bench/http_compare.sh BUILD_DIR [SECONDS]}
secs=${2:-10}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
tck=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME PID PORT [wrk args...]: one wrk run; prints a table row.
run() {
  local name=$1 pid=$2 port=$3; shift 3
  local before after out
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c100 -d"${secs}s" --latency "$@" "http://127.0.0.1:$port/")
  after=$(cpu_ticks "$pid")
  local reqs rps p50 p99 errs
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  errs=$(echo "$out" | awk '/Socket errors|Non-2xx/ {printf "%s ", $0}')
  local us
  us=$(awk -v t=$((after - before)) -v hz="$tck" -v n="$reqs" 'BEGIN {printf "%.2f", t / hz / n * 1e6}')
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$rps" "$us" "$p50" "$p99" "${errs:-none}"
}

# nginx: one worker, the same body and Content-Type as hello.
cat > "$tmp/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:18081 reuseport backlog=4096;
    location / { default_type text/plain; return 200 "Hello, World!"; }
  }
}
CONF
taskset -c 0 nginx -c "$tmp/nginx.conf" -p "$tmp" &
pids+=($!)
taskset -c 0 "$build/examples/hello" 18082 > "$tmp/hello.out" &
pids+=($!)
sleep 1
nginx_pid=$(cat "$tmp/nginx.pid")
# nginx's master only forks; the worker is the child that serves.
nginx_worker=$(pgrep -P "$nginx_pid" | head -1)
hello_pid=${pids[1]}

echo "plaintext keep-alive, 100 connections, ${secs} s each; wrk on CPU 1, server on CPU 0"
echo
echo '| server | requests/s | server CPU µs/request | p50 | p99 | errors |'
echo '|---|---|---|---|---|---|'
run "nginx (1 worker)" "$nginx_worker" 18081
run "squall hello" "$hello_pid" 18082
run "nginx, pipelined x16" "$nginx_worker" 18081 -s "$here/pipeline.lua"
run "squall, pipelined x16" "$hello_pid" 18082 -s "$here/pipeline.lua"
