#!/usr/bin/env bash
# Smoke test for bench/ws_compare.sh: 1 s per server and 300 idle connections against this
# build's bench/ws_echo and bench/ws_load (ASan-instrumented in the test build, which is fine
# here: only the shape of the report is checked, never a number's size).  Node.js or
# Tornado missing just gives their "not installed" rows.  Results go to a temporary
# directory, not bench/results.
set -euo pipefail
. "$(dirname "$0")/../bench_smoke_lib.sh"
smoke_run ws ws_compare.sh "$build" 1 300 || exit 1
report=$out/ws.stdout
expect_line "$report" '^\| server \| round trips/s \| server CPU µs/message \| × floor \| errors \|' \
  "no table header"
expect_line "$report" '^\| floor \(bench/floor_ws[^|]*\| [0-9]+ \| [0-9]+\.[0-9]+ \| 1\.00 \| 0 \|' \
  "no floor row with numbers and no errors"
expect_line "$report" '^\| squall \| [0-9]+ \| [0-9]+\.[0-9]+ \| [0-9]+\.[0-9]+ \| 0 \|' \
  "no squall row with numbers and no errors"
if command -v node >/dev/null && [ -d "$src/tests/node/node_modules/ws" ]; then
  expect_line "$report" '^\| Node\.js .* \| [0-9]+ \| [0-9]+\.[0-9]+ \| [0-9.]+ \| 0 \|' "no Node.js row with numbers"
fi
expect_line "$report" '^paired: squall ÷ floor CPU per message [0-9]+\.[0-9]{3} ' "no paired ratio to the floor"
expect_line "$report" '^summary: ' "no summary line"
expect_line "$report" '^floor: squall CPU per message = [0-9]+\.[0-9]+ x the floor' "no floor line"
expect_line "$report" '^idle: 300 idle WebSocket connections .* -?[0-9]+ bytes per connection' \
  "no idle figure"
[ -s "$out/ws.md" ] || { echo "FAIL: ws.md not written"; exit 1; }
echo "OK"
