#!/usr/bin/env bash
# Smoke test for bench/fetch_compare.sh: a 1 s run per client against nginx with this build's
# bench/fetch_load (ASan-instrumented in the test build, which is fine here).  Skipped (exit
# 0) when nginx is missing; Tornado or Node.js missing only blanks their rows.  Results go to
# a temporary directory, not bench/results.
set -euo pipefail
build=${SQ_BUILD_DIR:?SQ_BUILD_DIR not set}
src=${SQ_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
if ! command -v nginx >/dev/null || ! command -v curl >/dev/null; then
  echo "skipped: nginx or curl not installed"
  exit 0
fi
if [ ! -x "$build/bench/fetch_load" ]; then
  echo "skipped: bench/fetch_load not built (SQ_BUILD_BENCH=OFF)"
  exit 0
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rc=0
SQ_BENCH_RESULTS=$out "$src/bench/fetch_compare.sh" "$build" 1 > "$out/stdout" 2> "$out/stderr" || rc=$?
cat "$out/stdout"
if [ "$rc" -ne 0 ]; then
  echo "FAIL: bench/fetch_compare.sh exited $rc"; cat "$out/stderr"; exit 1
fi
grep -q '^| client | requests/s |' "$out/stdout" || { echo "FAIL: no table header"; exit 1; }
grep -Eq '^\| squall sq_fetch \(libcurl multi\) \| [0-9]+(\.[0-9]+)? \| [0-9]+\.[0-9]+ \| [0-9]+ \| 0 \|' "$out/stdout" \
  || { echo "FAIL: no squall row with numbers and no errors"; exit 1; }
grep -q '^summary:' "$out/stdout" || { echo "FAIL: no summary line"; exit 1; }
[ -s "$out/fetch.md" ] || { echo "FAIL: fetch.md not written"; exit 1; }
echo "OK"
