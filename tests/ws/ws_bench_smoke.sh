#!/usr/bin/env bash
# Smoke test for bench/ws_compare.sh: 1 s per server and 300 idle connections against this
# build's bench/ws_echo and bench/ws_load (ASan-instrumented in the test build, which is fine
# here: only the shape of the report is checked, never a number's size).  Node.js or
# Tornado missing just gives their "not installed" rows.  Results go to a temporary
# directory, not bench/results.
set -euo pipefail
build=${SQ_BUILD_DIR:?SQ_BUILD_DIR not set}
src=${SQ_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rc=0
SQ_BENCH_RESULTS=$out "$src/bench/ws_compare.sh" "$build" 1 300 > "$out/stdout" 2> "$out/stderr" || rc=$?
cat "$out/stdout"
if [ "$rc" -ne 0 ]; then
  echo "FAIL: bench/ws_compare.sh exited $rc"; cat "$out/stderr"; exit 1
fi
grep -q '^| server | round trips/s | server CPU µs/message | errors |' "$out/stdout" \
  || { echo "FAIL: no table header"; exit 1; }
grep -Eq '^\| squall \| [0-9]+ \| [0-9]+\.[0-9]+ \| 0 \|' "$out/stdout" \
  || { echo "FAIL: no squall row with numbers and no errors"; exit 1; }
if command -v node >/dev/null && [ -d "$src/tests/node/node_modules/ws" ]; then
  grep -Eq '^\| Node\.js .* \| [0-9]+ \| [0-9]+\.[0-9]+ \| 0 \|' "$out/stdout" \
    || { echo "FAIL: no Node.js row with numbers"; exit 1; }
fi
grep -q '^summary: ' "$out/stdout" || { echo "FAIL: no summary line"; exit 1; }
grep -Eq '^idle: 300 idle WebSocket connections .* -?[0-9]+ bytes per connection' "$out/stdout" \
  || { echo "FAIL: no idle figure"; exit 1; }
[ -s "$out/ws.md" ] || { echo "FAIL: ws.md not written"; exit 1; }
echo "OK"
