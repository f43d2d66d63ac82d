#!/usr/bin/env bash
# Runs squall's benchmarks from a release build and writes bench/results/latest.md (every
# table), beside the tables each script writes there: http.md + http.png (throughput and CPU
# per request against nginx, h2o, Node.js, Tornado), floor.md (hello against the floor and the
# web layer against hello, two servers loaded at a time: bench/floor_compare.sh), https.md (HTTPS against nginx: CPU per
# keep-alive request and per handshake, bytes per idle TLS connection), h2.md (HTTP/2 over TLS
# and h2c against nginx and h2o: CPU per request under h2load, bytes per idle connection),
# callgrind.md (instructions per request), fetch_callgrind.md (instructions per HTTP client
# fetch: libcurl alone against sq_fetch, split by library), syscalls.md (strace counts per request), mem.md
# (bytes per idle connection and per parked request), template.md and page.md (template
# rendering against Jinja2 and Tornado; a small template per request against plain text), c10k.md (10,000 connections under wrk),
# and with SQ_BENCH_BASELINE=OLD_BUILD_DIR transport.md (plain HTTP CPU per request of this
# build against that one, bench/transport_compare.sh).  SQ_BENCH_RESULTS overrides the directory.
# --quick runs each part briefly (about 70 s in all on the 2-core development machine) to check
# that everything works; `make bench-quick` runs that.
# Usage: bench/run.sh BUILD_DIR [--quick]
# Servers and load generators are pinned (taskset) when the machine has two cores or more.
set -euo pipefail
build=${1:?usage: bench/run.sh BUILD_DIR [--quick]}
quick=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
results=${SQ_BENCH_RESULTS:-$here/results}
mkdir -p "$results"
out="$results/latest.md"
pin=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin="taskset -c 0"; fi

{
  echo "# squall micro-benchmarks"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -m), command: make bench$([ -n "$quick" ] && echo -quick)"
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
    "$here/http_compare.sh" "$build" "$([ -n "$quick" ] && echo 2 || echo 10)"
  else
    echo
    echo "(wrk or nginx missing: the HTTP comparison was skipped)"
  fi
  if command -v wrk >/dev/null; then
    echo
    "$here/floor_compare.sh" "$build" "$([ -n "$quick" ] && echo 1 || echo 5)" \
      "$([ -n "$quick" ] && echo 1 || echo 5)"
  fi
  if command -v wrk >/dev/null && command -v nginx >/dev/null && [ -x "$build/bench/http_load" ]; then
    echo
    if [ -n "$quick" ]; then
      "$here/https_compare.sh" "$build" 2 1 2000
    else
      "$here/https_compare.sh" "$build" 10 3 10000
    fi
  else
    echo
    echo "(wrk, nginx or bench/http_load missing: the HTTPS comparison was skipped)"
  fi
  if [ -n "${SQ_BENCH_BASELINE:-}" ]; then
    echo
    "$here/transport_compare.sh" "$SQ_BENCH_BASELINE" "$build" \
      "$([ -n "$quick" ] && echo 2 || echo 10)" "$([ -n "$quick" ] && echo 1 || echo 5)"
  fi
  if command -v nginx >/dev/null; then
    echo
    "$here/fetch_compare.sh" "$build" "$([ -n "$quick" ] && echo 3 || echo 10)"
  fi
  echo
  "$here/ws_compare.sh" "$build" "$([ -n "$quick" ] && echo 3 || echo 10)"
  echo
  "$here/template_compare.sh" "$build" "$([ -n "$quick" ] && echo 50 || echo 500)"
  echo
  "$here/page_compare.sh" "$build" "$([ -n "$quick" ] && echo 1 || echo 10)"
  echo
  "$here/chat_redis.sh" "$build" "$([ -n "$quick" ] && echo 3 || echo 10)" 1000 100
  if command -v h2load >/dev/null && command -v nginx >/dev/null; then
    echo
    "$here/h2_compare.sh" "$build" "$([ -n "$quick" ] && echo 1 || echo 5)" \
      "$([ -n "$quick" ] && echo 1 || echo 3)" "$([ -n "$quick" ] && echo 200 || echo 1000)"
  else
    echo
    echo "(h2load or nginx missing: the HTTP/2 comparison was skipped)"
  fi
  if [ -x "$build/bench/http_load" ]; then
    echo
    "$here/http_callgrind.sh" "$build" "$([ -n "$quick" ] && echo 5000 || echo 20000)"
    echo
    "$here/fetch_callgrind.sh" "$build" "$([ -n "$quick" ] && echo 1 || echo 2)" \
      "$([ -n "$quick" ] && echo 2 || echo 6)"
    echo
    "$here/http_syscalls.sh" "$build" "$([ -n "$quick" ] && echo 5000 || echo 20000)"
    echo
    "$here/http_mem.sh" "$build" 10000 "$([ -n "$quick" ] && echo 3 || echo 6)"
    echo
    "$here/http_c10k.sh" "$build" "$([ -n "$quick" ] && echo 3 || echo 10)" 10000
  else
    echo
    echo "(bench/http_load not built: callgrind, syscalls, memory and C10K were skipped)"
  fi
} | tee "$out"
echo "written to $out"
