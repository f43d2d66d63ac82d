#!/usr/bin/env bash
# Smoke test for bench/chat_redis.sh: 1 s, 100 WebSocket clients, 50 messages/s, against this
# build's demo (ASan-instrumented here, which is fine for a smoke test).  Skipped (exit 0)
# when redis-server is missing.
set -euo pipefail
. "$(dirname "$0")/../bench_smoke_lib.sh"
smoke_skip_unless redis-server
smoke_run chat chat_redis.sh "$build" 1 100 50 || exit 1
expect_line "$out/chat.stdout" '^\| deliveries/s \| lost \|' "no table header"
expect_line "$out/chat.stdout" '^\| [0-9]+ \| 0 of [0-9]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|' \
  "no row with numbers and nothing lost"
[ -s "$out/chat.md" ] || { echo "FAIL: chat.md not written"; exit 1; }
echo "OK"
