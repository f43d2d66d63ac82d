#!/usr/bin/env bash
# A small template behind keep-alive wrk: bench/web_bench's /page (sq_render of
# bench/templates/page.html, its context built per request) beside its /plaintext (the same
# layer, route lookup and handler object, a constant body), one after the other in one run.
# Server pinned to CPU 0, wrk to CPU 1; server CPU µs per request from /proc/<pid>/stat.
# Target: /page <= 1.5x /plaintext.  Writes $SQ_BENCH_RESULTS/page.md (default bench/results).
# Usage: bench/page_compare.sh BUILD_DIR [SECONDS]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "BUILD_DIR [SECONDS]" "$@"
secs=${2:-10}
command -v wrk >/dev/null || { echo "(wrk not installed: the page bench was skipped)"; exit 0; }
bench_start_listening web "$build/bench/web_bench" 0
[ -n "$PID" ] || exit 1
pid=$PID port=$PORT
wait_http "$port" /page 15 "$pid" || { echo "/page does not answer" >&2; exit 1; }
bytes=$(curl -s "http://127.0.0.1:$port/page" | wc -c)
declare -A US RPS
for path in /plaintext /page /plaintext /page; do
  $pin_load wrk -t1 -c50 -d1s "http://127.0.0.1:$port$path" > /dev/null # warm
  before=$(cpu_ticks "$pid")
  out=$($pin_load wrk -t1 -c50 -d"${secs}s" "http://127.0.0.1:$port$path")
  after=$(cpu_ticks "$pid")
  wrk_parse "$out"
  us=$(cpu_us_per $((after - before)) "$WRK_REQS")
  # two rounds each, interleaved: the better of the two (this machine is noisy)
  if [ -z "${US[$path]:-}" ] || awk -v a="$us" -v b="${US[$path]}" 'BEGIN {exit !(a < b)}'; then
    US[$path]=$us RPS[$path]=$WRK_RPS
  fi
done
r=$(ratio "${US[/page]}" "${US[/plaintext]}")
{
  echo "### A small template per request ($(bench_stamp))"
  echo
  echo "bench/web_bench under keep-alive wrk (-t1 -c50, ${secs} s per run, the better of two runs each; \`bench/page_compare.sh BUILD $secs\`):"
  echo
  echo "| route | requests/s | server CPU µs/request |"
  echo "|---|---|---|"
  echo "| /plaintext (13 bytes, constant) | ${RPS[/plaintext]} | ${US[/plaintext]} |"
  echo "| /page (sq_render, $bytes bytes) | ${RPS[/page]} | ${US[/page]} |"
  echo
  echo "/page / /plaintext: $r (target <= 1.5: $(verdict "$r" '<=' 1.5))"
} | tee "$results/page.md"
