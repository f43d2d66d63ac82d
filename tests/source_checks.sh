#!/usr/bin/env bash
# Structural rules of the tree, checked on the sources (not on behaviour):
#  - one accept loop: accept()/accept4() only in the stream layer's TCP server
#    (src/stream/tcp.c), which the HTTP server uses through sq_tcp_server.
set -u
src="${SQ_SOURCE_DIR:?}/src"
fail=0
hits=$(grep -rnE '\baccept4?\s*\(' "$src" --include='*.c' | grep -v "^$src/stream/tcp.c:" || true)
if [ -n "$hits" ]; then
  echo "FAIL accept outside src/stream/tcp.c (one accept loop in the project):"
  echo "$hits"
  fail=1
else
  echo "ok   one accept loop: accept4 only in src/stream/tcp.c"
fi
[ $fail -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $fail
