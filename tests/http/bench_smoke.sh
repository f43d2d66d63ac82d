#!/usr/bin/env bash
# Smoke test for bench/http_compare.sh: a 1 s run against this build's examples/hello and
# examples/demo (ASan-instrumented in the test build, which is fine here).  Skipped (exit 0)
# when wrk or nginx is missing.  Results go to a temporary directory, not bench/results.
set -euo pipefail
build=${SQ_BUILD_DIR:?SQ_BUILD_DIR not set}
src=${SQ_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  echo "skipped: wrk or nginx not installed"
  exit 0
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rc=0
SQ_BENCH_RESULTS=$out "$src/bench/http_compare.sh" "$build" 1 > "$out/stdout" 2> "$out/stderr" || rc=$?
cat "$out/stdout"
if [ "$rc" -ne 0 ]; then
  echo "FAIL: bench/http_compare.sh exited $rc"; cat "$out/stderr"; exit 1
fi
grep -q '^| server | requests/s |' "$out/stdout" || { echo "FAIL: no table header"; exit 1; }
grep -Eq '^\| squall hello \| [0-9]+(\.[0-9]+)? \| [0-9]+\.[0-9]+ \|' "$out/stdout" \
  || { echo "FAIL: no squall hello row with numbers"; exit 1; }
grep -q '^summary: ' "$out/stdout" || { echo "FAIL: no summary line"; exit 1; }
[ -s "$out/http.md" ] || { echo "FAIL: http.md not written"; exit 1; }
echo "OK"
