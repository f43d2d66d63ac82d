#!/usr/bin/env bash
# Smoke test for bench/fetch_compare.sh: a 1 s run per client against nginx with this build's
# bench/fetch_load (ASan-instrumented in the test build, which is fine here).  Skipped (exit
# 0) when nginx is missing; Tornado or Node.js missing only blanks their rows.  Results go to
# a temporary directory, not bench/results.
set -euo pipefail
. "$(dirname "$0")/../bench_smoke_lib.sh"
smoke_skip_unless nginx curl
if [ ! -x "$build/bench/fetch_load" ] || [ ! -x "$build/bench/fetch_curl" ]; then
  echo "skipped: bench/fetch_load or bench/fetch_curl not built (SQ_BUILD_BENCH=OFF)"
  exit 0
fi
smoke_run fetch fetch_compare.sh "$build" 1 || exit 1
expect_line "$out/fetch.stdout" '^\| client \| requests/s \|' "no table header"
expect_line "$out/fetch.stdout" \
  '^\| floor \(bench/floor_client[^|]*\| [0-9]+(\.[0-9]+)? \| [0-9]+\.[0-9]+ \| 1\.00 \| [0-9]+ \| 0 \|' \
  "no floor row with numbers, ratio 1.00 and no errors"
expect_line "$out/fetch.stdout" \
  '^\| libcurl [0-9.]+ alone \(bench/fetch_curl[^|]*\| [0-9]+(\.[0-9]+)? \| [0-9]+\.[0-9]+ \| [0-9]+\.[0-9]+ \| [0-9]+ \| 0 \|' \
  "no libcurl-alone row with numbers, a ratio to the floor and no errors"
expect_line "$out/fetch.stdout" '^summary: .*x libcurl alone \(squall.s own share [-+][0-9]+\.[0-9]+ µs; median of [0-9./]+, ' \
  "no comparison with libcurl alone in the summary"
expect_line "$out/fetch.stdout" \
  '^\| squall sq_fetch \(libcurl multi\) \| [0-9]+(\.[0-9]+)? \| [0-9]+\.[0-9]+ \| [0-9]+\.[0-9]+ \| [0-9]+ \| 0 \|' \
  "no squall row with numbers, a ratio to the floor and no errors"
expect_line "$out/fetch.stdout" '^summary:' "no summary line"
[ -s "$out/fetch.md" ] || { echo "FAIL: fetch.md not written"; exit 1; }
echo "OK"
