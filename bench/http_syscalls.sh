#!/usr/bin/env bash
# System calls per request, counted by `strace -c -f -p` attached to the serving process while
# bench/http_load sends an exact number of requests (wrk cannot stop at a count): N keep-alive
# requests over 50 connections with one request in flight on each, and N requests pipelined 16
# deep over 50 connections.  Every syscall the server makes while attached counts (epoll_wait,
# reads, writes, timers if any), divided by N.  strace slows the server, which lets more events
# gather per epoll_wait; the same holds for nginx (one process, access_log off), measured the
# same way beside it.  Targets: <= 2.2 syscalls per keep-alive request, <= 0.3 pipelined.
# Writes $SQ_BENCH_RESULTS/syscalls.md (default bench/results).
# Usage: bench/http_syscalls.sh BUILD_DIR [N]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "BUILD_DIR [N]" "$@"
n=${2:-20000}
load=$build/bench/http_load
conns=50

bench_require "$results/syscalls.md" "syscall counts" strace
# strace -p needs ptrace rights over the server: fine for our own children unless
# kernel.yama.ptrace_scope is 2 or more (then only root may attach).
if [ "$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo 0)" -ge 2 ] && [ "$(id -u)" -ne 0 ]; then
  echo "(ptrace_scope forbids strace -p: syscall counts skipped)" | tee "$results/syscalls.md"
  exit 0
fi

declare -A PER DETAIL
# count KEY PID PORT PATH DEPTH: syscalls per request over N requests.
count() {
  local key=$1 pid=$2 port=$3 path=$4 depth=$5
  "$load" count "$port" "$path" 2000 "$conns" "$depth" > /dev/null # warm-up
  strace -c -f -p "$pid" -o "$tmp/$key.strace" 2> "$tmp/$key.strace.err" &
  local sp=$!
  # strace prints nothing when attached: give it a moment
  sleep 0.5
  "$load" count "$port" "$path" "$n" "$conns" "$depth" > "$tmp/$key.load"
  kill -INT "$sp" 2>/dev/null || true
  wait "$sp" 2>/dev/null || true
  local total
  total=$(awk '$NF == "total" {print $4}' "$tmp/$key.strace")
  if grep -q "ok=$n " "$tmp/$key.load" && [ -n "$total" ]; then
    PER[$key]=$(awk -v t="$total" -v n="$n" 'BEGIN {printf "%.3f", t / n}')
    # the calls of each syscall, per request: "read 1.00, sendto 1.00, epoll_wait 0.12"
    DETAIL[$key]=$(awk -v n="$n" '$1 ~ /^[0-9.]+$/ && NF >= 5 {
        if ($NF != "total" && $4 / n >= 0.005) { printf "%s%s %.2f", sep, $NF, $4 / n; sep = ", " } }' \
      "$tmp/$key.strace")
  fi
}

# Ephemeral ports: squall's servers get port 0 and print theirs, nginx a free_port.
bench_start_listening hello "$build/examples/hello" 0
hello_pid=$PID hello_port=$PORT
[ -n "$hello_pid" ] || { echo "examples/hello did not start" >&2; exit 1; }
bench_start_listening web "$build/bench/web_bench" 0
web_pid=$PID web_port=$PORT
[ -n "$web_pid" ] || { echo "bench/web_bench did not start" >&2; exit 1; }
# start_nginx PORT: nginx as one process on PORT.
start_nginx() {
  bench_nginx_conf "$1" 1024 "master_process off;"
  bench_nginx_start
}
nginx_pid="" nginx_port=""
if command -v nginx >/dev/null && bench_start_free start_nginx /; then
  nginx_pid=$PID nginx_port=$PORT
fi
wait_http "$hello_port" / || { echo "examples/hello did not start" >&2; exit 1; }
wait_http "$web_port" /plaintext || { echo "bench/web_bench did not start" >&2; exit 1; }

[ -z "$nginx_pid" ] || count nginx "$nginx_pid" "$nginx_port" / 1
[ -z "$nginx_pid" ] || count nginx_pipe "$nginx_pid" "$nginx_port" / 16
count hello "$hello_pid" "$hello_port" / 1
count hello_pipe "$hello_pid" "$hello_port" / 16
count web "$web_pid" "$web_port" /plaintext 1

{
  echo "system calls per request (strace -c -f -p on the server, $n requests from bench/http_load, $conns connections)"
  echo
  echo '| server | mode | syscalls/request | target | result | breakdown per request |'
  echo '|---|---|---|---|---|---|'
  row() { # KEY NAME MODE TARGET
    local v=${PER[$1]:-}
    printf '| %s | %s | %s | %s | %s | %s |\n' "$2" "$3" "${v:-failed}" "$4" \
      "$([ "$4" = "-" ] && echo "-" || verdict "$v" "<=" "${4#<= }")" "${DETAIL[$1]:-}"
  }
  [ -z "$nginx_pid" ] || row nginx "nginx (1 process)" keep-alive "-"
  [ -z "$nginx_pid" ] || row nginx_pipe "nginx (1 process)" "pipelined x16" "-"
  row hello "squall hello" keep-alive "<= 2.2"
  row hello_pipe "squall hello" "pipelined x16" "<= 0.3"
  row web "squall web /plaintext" keep-alive "-"
  echo
  echo "summary: squall syscalls/request: keep-alive ${PER[hello]:-n/a} (target <= 2.2) $(verdict "${PER[hello]:-}" "<=" 2.2)," \
    "pipelined ${PER[hello_pipe]:-n/a} (target <= 0.3) $(verdict "${PER[hello_pipe]:-}" "<=" 0.3);" \
    "nginx ${PER[nginx]:-n/a} and ${PER[nginx_pipe]:-n/a}"
} | tee "$results/syscalls.md"
