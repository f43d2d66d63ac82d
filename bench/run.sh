#!/usr/bin/env bash
# Runs squall's benchmarks from a release build and writes bench/results/latest.md.
# Usage: bench/run.sh BUILD_DIR [--quick]
# Servers and load generators are pinned (taskset) when the machine has two cores or more.
set -euo pipefail
build=${1:?usage: bench/run.sh BUILD_DIR [--quick]}
quick=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
out="$here/results/latest.md"
pin=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin="taskset -c 0"; fi

{
  echo "# squall micro-benchmarks"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -m), command: make bench"
  echo
  echo '```'
  for b in coro_switch timers coro_rss http_parse; do
    if [ -x "$build/bench/$b" ]; then
      $pin "$build/bench/$b" $quick
    else
      echo "$b: not built"
    fi
  done
  echo '```'
  if command -v wrk >/dev/null && command -v nginx >/dev/null; then
    echo
    "$here/http_compare.sh" "$build" "$([ -n "$quick" ] && echo 3 || echo 10)"
  else
    echo
    echo "(wrk or nginx missing: the HTTP comparison was skipped)"
  fi
  if command -v nginx >/dev/null; then
    echo
    "$here/fetch_compare.sh" "$build" "$([ -n "$quick" ] && echo 3 || echo 10)"
  fi
} | tee "$out"
echo "written to $out"
