#!/usr/bin/env bash
# Smoke test for bench/template_compare.sh (20 renders of the 1,000-row table per engine) and
# bench/page_compare.sh (three 1 s pairs of /page and /plaintext, each on a server of its own).
set -euo pipefail
. "$(dirname "$0")/../bench_smoke_lib.sh"
smoke_run template template_compare.sh "$build" 20 || exit 1
expect_line "$out/template.stdout" '^\| squall \| [0-9]+\.[0-9] \| 1\.00 \|' "no squall row with a number"
[ -s "$out/template.md" ] || { echo "FAIL: template.md not written"; exit 1; }
if command -v wrk >/dev/null; then
  smoke_run page page_compare.sh "$build" 1 || exit 1
  expect_line "$out/page.stdout" '^\| /page \(sq_render, [0-9]+ bytes\) \| [0-9.]+ \| [0-9.]+ \|' "no /page row with numbers"
fi
echo "OK"
