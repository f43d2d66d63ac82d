#!/usr/bin/env bash
# Memory per connection and per parked request, from the server's VmRSS (/proc/<pid>/status):
#   idle       N keep-alive connections opened by bench/http_load, one request answered on each,
#              then all held open: (RSS held - RSS before) / N.  squall's examples/hello (HTTP
#              layer), bench/web_bench /plaintext (web layer) and nginx (one process) side by
#              side.  Target for squall: <= 128 bytes per connection (it was 256 before the
#              second performance round; h2o holds 194, nginx about 500).
#   suspended  N requests parked at once in bench/web_bench /sleep?s=S (a handler that sleeps
#              on its coroutine, the shape of long polling): RSS once every request is in,
#              minus RSS before, / N; then every request must be answered 200 when it wakes.
#              Target: <= 8 KiB per parked request (it was 16 KiB before the second performance
#              round), all answered.
#   after      the same server once those requests were answered and their connections
#              closed: RSS right then, and again TRIM_WAIT seconds later, past the server's
#              memory_trim_delay (SQ_BENCH_TRIM_DELAY, 2 s here instead of the default 10), after
#              which it frees what it pooled for the burst and trims the heap.
# Only user-space memory is in RSS; the kernel's side (socket buffers, the epoll item) is the
# same for every server and is not counted.  RSS is in KiB pages, hence the large N.
# Writes $SQ_BENCH_RESULTS/mem.md (default bench/results).
# Usage: bench/http_mem.sh BUILD_DIR [N] [SLEEP_SECONDS]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "BUILD_DIR [N] [SLEEP_SECONDS]" "$@"
n=${2:-10000}
sleep_s=${3:-6}
# close the write end of a holder's fifo (fd 4) before killing the rest
trap 'exec 4>&- 2>/dev/null || true; bench_cleanup' EXIT
bench_fit_fds n 200 "lowering N to"
load=$build/bench/http_load

# hold KEY PID PORT PATH: start a holder with N connections; RSS figures in BYTES[KEY].
declare -A BYTES OKS NOTE
PEAK_KIB="" CLOSED_KIB="" TRIMMED_KIB=""
hold() {
  local key=$1 pid=$2 port=$3 path=$4
  # warm-up: pools, coroutine stacks (the sleeping route without the sleep)
  "$load" count "$port" "${path%%\?*}$([ "$key" = suspended ] && echo '?s=0')" 200 10 > /dev/null
  sleep 0.3
  local before after
  before=$(rss_kib "$pid")
  mkfifo "$tmp/$key.in"
  "$load" hold "$port" "$path" "$n" < "$tmp/$key.in" > "$tmp/$key.out" 2> "$tmp/$key.err" &
  local hp=$!
  pids+=("$hp")
  exec 4> "$tmp/$key.in"
  if [ "$key" = suspended ]; then
    # every request written; the server reads them within a moment and parks them all
    if wait_line "$tmp/$key.out" '^sent ' 120; then
      sleep 1
      after=$(rss_kib "$pid")
    fi
    wait_line "$tmp/$key.out" '^answered ' $((sleep_s + 120)) || true
  else
    wait_line "$tmp/$key.out" '^answered ' 120 && sleep 0.5 && after=$(rss_kib "$pid")
  fi
  OKS[$key]=$(sed -n 's/^answered \([0-9]*\) ok=\([0-9]*\) bad=\([0-9]*\) in \(.*\) s$/\2 of \1 answered 200 in \4 s/p' "$tmp/$key.out")
  if [ -n "${after:-}" ]; then
    BYTES[$key]=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN {printf "%.0f", (a - b) * 1024 / n}')
  fi
  exec 4>&-
  wait "$hp" 2>/dev/null || true
  if [ "$key" = suspended ] && [ -n "${after:-}" ]; then
    PEAK_KIB=$after
    rss_after_burst "$pid"
  fi
  if [ -s "$tmp/$key.err" ]; then NOTE[$key]="$(sort "$tmp/$key.err" | uniq -c | head -3 | tr '\n' ' ')"; fi
}

# Ephemeral ports: squall's servers get port 0 and print theirs, nginx a free_port.
bench_start_listening hello "$build/examples/hello" 0
hello_pid=$PID hello_port=$PORT
[ -n "$hello_pid" ] || { echo "examples/hello did not start" >&2; exit 1; }
bench_start_listening web "$build/bench/web_bench" 0
web_pid=$PID web_port=$PORT
[ -n "$web_pid" ] || { echo "bench/web_bench did not start" >&2; exit 1; }
SQ_BENCH_TRIM_DELAY=$trim_delay bench_start_listening web2 "$build/bench/web_bench" 0
sleep_pid=$PID sleep_port=$PORT
[ -n "$sleep_pid" ] || { echo "bench/web_bench did not start" >&2; exit 1; }
# start_nginx PORT: nginx as one process on PORT.
start_nginx() {
  bench_nginx_conf "$1 backlog=4096" $((n + 1000)) \
    "master_process off; worker_rlimit_nofile $((n + 1000));" "keepalive_timeout 120s;"
  bench_nginx_start
}
nginx_pid="" nginx_port=""
if command -v nginx >/dev/null && bench_start_free start_nginx /; then
  nginx_pid=$PID nginx_port=$PORT
fi
wait_http "$hello_port" / || { echo "examples/hello did not start" >&2; exit 1; }
wait_http "$web_port" /plaintext || { echo "bench/web_bench did not start" >&2; exit 1; }
wait_http "$sleep_port" /plaintext || { echo "bench/web_bench did not start" >&2; exit 1; }

hold hello "$hello_pid" "$hello_port" /
hold web "$web_pid" "$web_port" /plaintext
[ -z "$nginx_pid" ] || hold nginx "$nginx_pid" "$nginx_port" /
hold suspended "$sleep_pid" "$sleep_port" "/sleep?s=$sleep_s"

all_ok() { case "${OKS[$1]:-}" in "$n of $n answered"*) echo yes ;; *) echo no ;; esac; }
{
  echo "memory: growth of the server's RSS with $n connections held open by bench/http_load"
  echo
  echo '| scenario | server | bytes per connection | target | result | responses |'
  echo '|---|---|---|---|---|---|'
  [ -z "$nginx_pid" ] || printf '| idle keep-alive | nginx (1 process) | %s | - | - | %s |\n' \
    "${BYTES[nginx]:-failed}" "${OKS[nginx]:-}"
  printf '| idle keep-alive | squall hello | %s | <= 128 | %s | %s |\n' "${BYTES[hello]:-failed}" \
    "$(verdict "${BYTES[hello]:-}" "<=" 128)" "${OKS[hello]:-}"
  printf '| idle keep-alive | squall web /plaintext | %s | <= 128 | %s | %s |\n' "${BYTES[web]:-failed}" \
    "$(verdict "${BYTES[web]:-}" "<=" 128)" "${OKS[web]:-}"
  s_ok=$(verdict "${BYTES[suspended]:-}" "<=" 8192)
  [ "$(all_ok suspended)" = yes ] || s_ok="MISSED (not all answered 200)"
  printf '| %s parked in sq_sleep(%s s) | squall web /sleep | %s | <= 8192 | %s | %s |\n' "$n" "$sleep_s" \
    "${BYTES[suspended]:-failed}" "$s_ok" "${OKS[suspended]:-} ${NOTE[suspended]:-}"
  printf '| after the %s parked requests: RSS with all parked, once answered and closed, %s s later | squall web /sleep (memory_trim_delay %s s) | %s, %s, %s | - | - | - |\n' \
    "$n" "$trim_wait" "$trim_delay" "$(mib "$PEAK_KIB")" "$(mib "$CLOSED_KIB")" "$(mib "$TRIMMED_KIB")"
  echo
  echo "summary: idle keep-alive connection: squall hello ${BYTES[hello]:-n/a} B, web ${BYTES[web]:-n/a} B" \
    "(target <= 128) $(verdict "${BYTES[hello]:-}" "<=" 128), nginx ${BYTES[nginx]:-n/a} B;" \
    "parked request: ${BYTES[suspended]:-n/a} B (target <= 8192) $s_ok;" \
    "RSS after the burst $(mib "$CLOSED_KIB"), trimmed $(mib "$TRIMMED_KIB")"
} | tee "$results/mem.md"
