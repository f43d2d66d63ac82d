#!/usr/bin/env bash
# A small template behind keep-alive wrk: bench/web_bench's /page (sq_render of
# bench/templates/page.html, its context built per request) beside its /plaintext (the same
# layer, route lookup and handler object, a constant body), each on a server of its own, both
# loaded at the same time (lib.sh's bench_pair_wrk), three times: the two halves of a pair see
# the same state of a machine whose speed drifts between runs.  Servers pinned to CPU 0, one
# wrk each on CPU 1; server CPU µs per request from /proc/<pid>/stat.
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
bench_start_listening web2 "$build/bench/web_bench" 0
[ -n "$PID" ] || exit 1
pid2=$PID port2=$PORT
wait_http "$port2" /plaintext 15 "$pid2" || { echo "/plaintext does not answer" >&2; exit 1; }
bytes=$(curl -s "http://127.0.0.1:$port/page" | wc -c)
# warm-up: both routes once
$pin_load wrk -t1 -c100 -d1s "http://127.0.0.1:$port/page" > /dev/null
$pin_load wrk -t1 -c100 -d1s "http://127.0.0.1:$port2/plaintext" > /dev/null
# three pairs: /page on one server and /plaintext on the other, loaded at the same time
# (lib.sh's bench_pair_wrk; /plaintext's load first in even rounds; bench_quiet runs a pair
# again while other processes took more than noise_max % of a core)
page=() plain=() rpage=() rplain=() rs=() noise=()
for r in 1 2 3; do
  bench_quiet "round $r" bench_pair_wrk "$pid" "http://127.0.0.1:$port/page" \
    "$pid2" "http://127.0.0.1:$port2/plaintext" $((1 - r % 2)) "$secs"
  page+=("$US_A") plain+=("$US_B") rpage+=("$RPS_A") rplain+=("$RPS_B") noise+=("$NOISE_PCT")
  rs+=("$(ratio3 "$US_A" "$US_B")")
done
r=$(median "${rs[@]}")
{
  echo "### A small template per request ($(bench_stamp))"
  echo
  echo "bench/web_bench under keep-alive wrk (-t1 -c100, ${secs} s per run): /page on one server and /plaintext on another, both loaded at the same time, three such pairs, medians (\`bench/page_compare.sh BUILD $secs\`):"
  echo
  echo "| route | requests/s | server CPU µs/request | per round |"
  echo "|---|---|---|---|"
  echo "| /plaintext (13 bytes, constant) | $(median "${rplain[@]}") | $(median "${plain[@]}") | $(IFS=/; echo "${plain[*]}") |"
  echo "| /page (sq_render, $bytes bytes) | $(median "${rpage[@]}") | $(median "${page[@]}") | $(IFS=/; echo "${page[*]}") |"
  echo
  echo "/page / /plaintext: $r (rounds $(IFS=/; echo "${rs[*]}"); target <= 1.5: $(verdict "$r" '<=' 1.5))"
  echo
  echo "noise: CPU other processes (and the hypervisor's steal) took during each pair, in % of one core: $(IFS=/; echo "${noise[*]}") (a pair above $noise_max % is run again, at most $max_tries tries)"
} | tee "$results/page.md"
