#!/usr/bin/env bash
# Smoke test for the bench scripts beside bench/http_compare.sh, each for about a second
# against this build: bench/http_syscalls.sh (strace counts), bench/http_mem.sh (idle and
# parked connections, a few hundred), bench/http_c10k.sh (a few hundred connections),
# bench/floor_compare.sh (one round of 1 s runs), and bench/http_callgrind.sh,
# bench/page_touch.sh and bench/fetch_callgrind.sh (skipped for sanitizer builds: valgrind
# cannot run them).  Each must exit 0 and write its table with a summary line.  A script
# whose tool or peer is missing (strace, wrk, valgrind, nginx) skips itself; this test then
# only checks that it said so.  Results go to a temporary directory, not bench/results.
set -euo pipefail
. "$(dirname "$0")/../bench_smoke_lib.sh"
if [ ! -x "$build/bench/http_load" ] || [ ! -x "$build/bench/web_bench" ]; then
  echo "skipped: bench/http_load or bench/web_bench not built"
  exit 0
fi
fail=0
SMOKE_HEADING=1
# check NAME FILE SCRIPT ARGS...: run bench/SCRIPT, then look for its table (or its skip note).
check() {
  local name=$1 file=$2; shift 2
  smoke_run "$name" "$@" || { fail=1; return; }
  if grep -q '^(.*skipped' "$out/$file" 2>/dev/null; then return; fi
  if ! grep -q '^| ' "$out/$file" 2>/dev/null || ! grep -q '^summary: ' "$out/$file"; then
    echo "FAIL: $name: no table or summary in $file"; cat "$out/$name.stderr"; fail=1
  elif grep -q '| failed |' "$out/$file"; then
    echo "FAIL: $name: a measurement failed"; cat "$out/$name.stderr"; fail=1
  fi
}
check syscalls syscalls.md http_syscalls.sh "$build" 300
check mem mem.md http_mem.sh "$build" 300 1
if command -v wrk >/dev/null; then
  check c10k c10k.md http_c10k.sh "$build" 1 300
  check floor floor.md floor_compare.sh "$build" 1 1
  if ! grep -Eq '^\| hello ÷ floor, keep-alive \| [0-9]+\.[0-9]{3} \|' "$out/floor.md" 2>/dev/null; then
    echo "FAIL: floor: no hello ÷ floor ratio"; fail=1
  fi
else
  echo "c10k and floor skipped: wrk not installed"
fi
if grep -q '^SQ_SANITIZE:[A-Z]*=..*' "$build/CMakeCache.txt" 2>/dev/null; then
  echo "callgrind skipped: sanitizer build"
else
  check callgrind callgrind.md http_callgrind.sh "$build" 300
  check page_touch page_touch.md page_touch.sh "$build" 20
  if [ -x "$build/bench/fetch_curl" ] && [ -x "$build/bench/fetch_load" ]; then
    check fetch_callgrind fetch_callgrind.md fetch_callgrind.sh "$build" 1 2
  fi
fi
[ "$fail" -eq 0 ] && echo "OK"
exit "$fail"
