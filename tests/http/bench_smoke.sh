#!/usr/bin/env bash
# Smoke test for bench/http_compare.sh: a 1 s run against this build's examples/hello and
# examples/demo (ASan-instrumented in the test build, which is fine here).  Skipped (exit 0)
# when wrk or nginx is missing.  Results go to a temporary directory, not bench/results.
set -euo pipefail
. "$(dirname "$0")/../bench_smoke_lib.sh"
smoke_skip_unless wrk nginx
smoke_run http http_compare.sh "$build" 1 || exit 1
expect_line "$out/http.stdout" '^\| server \| requests/s \|' "no table header"
expect_line "$out/http.stdout" '^\| squall hello \| [0-9]+(\.[0-9]+)? \| [0-9]+\.[0-9]+ \|' \
  "no squall hello row with numbers"
expect_line "$out/http.stdout" '^\| floor \(bench/floor_http[^|]*\| [0-9]+(\.[0-9]+)? \| [0-9]+\.[0-9]+ \| 1\.00 \|' \
  "no floor row with numbers"
expect_line "$out/http.stdout" '^summary: ' "no summary line"
expect_line "$out/http.stdout" '^paired medians: squall ÷ nginx keep-alive [0-9]+\.[0-9]{3}, pipelined x16 [0-9]+\.[0-9]{3} ' \
  "no paired squall ÷ nginx ratios"
expect_line "$out/http.stdout" '^floor: squall hello / floor CPU per request: keep-alive [0-9]+\.[0-9]+x' "no floor line"
[ -s "$out/http.md" ] || { echo "FAIL: http.md not written"; exit 1; }
echo "OK"
