#!/usr/bin/env bash
# Smoke test for the comparison scripts not run by the other bench smoke tests, each for
# about a second against this build: bench/https_compare.sh (HTTPS against nginx),
# bench/h2_compare.sh (HTTP/2 against nginx and h2o, with its paired lines) and
# bench/transport_compare.sh (this build against itself).  Each must exit 0 and write its
# table with a summary line; a script whose tools are missing is skipped.  Results go to a
# temporary directory, not bench/results.
set -euo pipefail
. "$(dirname "$0")/../bench_smoke_lib.sh"
if [ ! -x "$build/bench/http_load" ]; then
  echo "skipped: bench/http_load not built"
  exit 0
fi
fail=0
SMOKE_HEADING=1
# check NAME FILE SCRIPT ARGS...: run bench/SCRIPT, then look for its table and summary.
check() {
  local name=$1 file=$2
  shift 2
  smoke_run "$name" "$@" || { fail=1; return; }
  if ! grep -q '^| ' "$out/$file" 2>/dev/null || ! grep -q '^summary: ' "$out/$file"; then
    echo "FAIL: $name: no table or summary in $file"
    cat "$out/$name.stderr"
    fail=1
  fi
}
have() { command -v "$1" >/dev/null; }
if have wrk && have nginx && have openssl; then
  check https https.md https_compare.sh "$build" 1 1 200
else
  echo "https skipped: wrk, nginx or openssl not installed"
fi
if have h2load && have nginx; then
  check h2 h2.md h2_compare.sh "$build" 1 1 200
  grep -Eq '^paired \(squall.*nginx TLS [0-9.]+ ' "$out/h2.md" || { echo "FAIL: h2: no paired line"; fail=1; }
  grep -Eq '^new connections .*nginx TLS [0-9.]+ ' "$out/h2.md" || { echo "FAIL: h2: no new-connections line"; fail=1; }
else
  echo "h2 skipped: h2load or nginx not installed"
fi
if have wrk; then
  check transport transport.md transport_compare.sh "$build" "$build" 1 1
else
  echo "transport skipped: wrk not installed"
fi
[ "$fail" -eq 0 ] && echo "OK"
exit "$fail"
