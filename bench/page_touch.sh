#!/usr/bin/env bash
# Pages a keep-alive request touches between system calls, squall against the floor: the
# floor (bench/floor_http), examples/hello and bench/web_bench /plaintext run in turn under
# valgrind's lackey (every instruction and memory access traced, and the system calls), N
# warm-up requests and then N measured ones from bench/http_load over 4 connections.
# bench/page_touch.py cuts the trace at each system call and counts the distinct 4 KiB pages
# of code and of data in each piece: on a kernel with page-table isolation and no PCID every
# system call empties the TLB, so each of those pages is a page walk.  Not part of `make
# bench` (lackey runs each server about 100 times slower); it answers "did this change spread
# the request path over more pages" (SQ__HOT, in src/internal.h) and how far squall is from
# the floor in pages rather than in time.
# Writes $SQ_BENCH_RESULTS/page_touch.md (default bench/results).
# Usage: bench/page_touch.sh BUILD_DIR [N]   (N: 300 by default; a Release build with -g
# gives the same counts as one without)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "BUILD_DIR [N]" "$@"
n=${2:-300}
out_md=$results/page_touch.md
bench_require "$out_md" "page counts" valgrind
for p in bench/floor_http examples/hello bench/web_bench bench/http_load; do
  [ -x "$build/$p" ] || { echo "$build/$p not built" >&2; exit 1; }
done

rows=()
# measure NAME LABEL PATH PROG...: one server under lackey, one row labelled LABEL.
measure() {
  local name=$1 label=$2 path=$3
  shift 3
  local log=$tmp/$name.log
  bench_start_listening "$name" valgrind --tool=lackey --trace-mem=yes --trace-syscalls=yes \
    --log-file="$log" "$@" 0
  [ -n "$PID" ] || { echo "$name did not start" >&2; exit 1; }
  "$build/bench/http_load" count "$PORT" "$path" "$n" 4 >/dev/null
  cat "/proc/$PID/maps" > "$tmp/$name.maps"
  sleep 0.5 # the warm-up's last lines reach the log
  local off
  off=$(stat -c %s "$log")
  "$build/bench/http_load" count "$PORT" "$path" "$n" 4 >/dev/null
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  rows+=("$($python "$here/page_touch.py" "$label" "$log" "$off" "$tmp/$name.maps" "$n")")
  rm -f "$log"
}

measure floor floor / "$build/bench/floor_http"
measure hello "squall hello" / "$build/examples/hello"
measure web "squall web /plaintext" /plaintext "$build/bench/web_bench"

{
  echo "Pages touched per keep-alive request between system calls ($(bench_stamp); valgrind lackey, $n requests over 4 connections after $n to warm up; bench/page_touch.sh)"
  echo
  echo "| server | instructions | code pages: own | libc | other | data pages | all pages | pieces |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  printf '%s\n' "${rows[@]}" | awk -F'|' '
    {gsub(/^ +| +$/, "", $2); name[NR] = $2; pages[NR] = $8 + 0; ins[NR] = $3 + 0}
    END {printf "summary: pages per request: floor %.1f, %s %.1f (%.2f x), %s %.1f (%.2f x); instructions %d, %d, %d\n",
      pages[1], name[2], pages[2], pages[2] / pages[1], name[3], pages[3], pages[3] / pages[1], ins[1], ins[2], ins[3]}'
} | tee "$out_md"
