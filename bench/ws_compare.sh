#!/usr/bin/env bash
# WebSocket echo: squall (bench/ws_echo.c) beside its floor (bench/floor_ws.c, a do-nothing
# epoll echo: every row is also given as a ratio to it), Node.js (npm ws, bench/ws_echo_node.js)
# and Tornado 6 (bench/ws_echo_tornado.py), none compressing.  bench/ws_load.c opens 100
# connections; each sends a 64-byte text message, waits for the echo and sends the next,
# for SECONDS.  Servers are pinned to CPU 0, the load generator to CPU 1; server CPU per
# message is utime+stime from /proc/<pid>/stat over the run divided by the round trips.
# Then squall and the floor, and squall and Node, loaded at the same time (lib.sh's
# bench_pair), 3 runs of SECONDS/2 each: the ratios of the summary are those pairs' medians.
# Then the idle figure: IDLE_CONNS (default 10,000) idle WebSocket connections held open to a
# fresh squall ws_echo, and its VmRSS growth per connection (after a warm-up of 200
# connections opened and dropped, so that pools sized by concurrency are not counted), and
# after they closed: its RSS at once and past the trim after a burst (memory_trim_delay
# shortened to lib.sh's trim_delay).
# Peers that are not installed get a "not installed" row.  Writes the report to
# $SQ_BENCH_RESULTS/ws.md (default bench/results).
# Usage: bench/ws_compare.sh BUILD_DIR [SECONDS] [IDLE_CONNS]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "BUILD_DIR [SECONDS] [IDLE_CONNS]" "$@"
secs=${2:-10}
idle_n=${3:-10000}
conns=100
size=64
load="$build/bench/ws_load"
echo_bin="$build/bench/ws_echo"
if [ ! -x "$load" ] || [ ! -x "$echo_bin" ]; then
  echo "(bench/ws_load or bench/ws_echo not built in $build: the WebSocket comparison was skipped)"
  exit 0
fi

# trips OUT N: field N of ws_load's "round_trips N seconds S rate R errors E" line in OUT
trips() { echo "$1" | awk -v f="$2" '/^round_trips/ {print $f}'; }

declare -A US RATE
# row KEY NAME PID PORT: one load run; prints a table row.
row() {
  local key=$1 name=$2 pid=$3 port=$4
  if [ -z "$pid" ]; then
    printf '| %s | - | - | - | %s |\n' "$name" "${SKIP[$key]:-failed to start}"
    return 0
  fi
  local before after out rt rate errs us
  before=$(cpu_ticks "$pid")
  out=$($pin_load "$load" -p "$port" -c "$conns" -s "$size" -d "$secs" 2>&1) || true
  after=$(cpu_ticks "$pid")
  rt=$(trips "$out" 2) rate=$(trips "$out" 6) errs=$(trips "$out" 8)
  if [ -z "$rt" ]; then
    printf '| %s | - | - | - | load failed: %s |\n' "$name" "$(echo "$out" | tail -1)"
    return 0
  fi
  us=$(cpu_us_per $((after - before)) "$rt")
  US[$key]=$us
  RATE[$key]=$rate
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$rate" "$us" "$(ratio "$us" "${US[floor]:-}")" "$errs"
}

declare -A SKIP
squall_pid="" node_pid="" tornado_pid="" squall_port="" node_port="" tornado_port=""
bench_start_listening squall "$echo_bin" 0
squall_pid=$PID squall_port=$PORT
floor_pid="" floor_port=""
if [ -x "$build/bench/floor_ws" ]; then
  bench_start_listening floor "$build/bench/floor_ws" 0
  floor_pid=$PID floor_port=$PORT
else
  SKIP[floor]="bench/floor_ws not built"
fi

node_ws="$src/tests/node/node_modules/ws"
if command -v node >/dev/null; then
  if [ ! -d "$node_ws" ] && command -v npm >/dev/null; then
    (cd "$src/tests/node" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund) \
      > "$tmp/npm.log" 2>&1 || true
  fi
  if [ -d "$node_ws" ]; then
    bench_start_listening node node "$here/ws_echo_node.js" 0
    node_pid=$PID node_port=$PORT
    node_name="Node.js $(node --version) ws $(node -p "require('$node_ws/package.json').version")"
  else
    SKIP[node]="npm ws not installed (cd tests/node && npm ci)"
  fi
else
  SKIP[node]="not installed"
fi
node_name=${node_name:-Node.js ws}

if has_tornado6; then
  bench_start_listening tornado "$python" "$here/ws_echo_tornado.py" 0
  tornado_pid=$PID tornado_port=$PORT
  tornado_name="Tornado $("$python" -c 'import tornado; print(tornado.version)') (1 process)"
else
  SKIP[tornado]="not installed (python3-tornado 6)"
fi
tornado_name=${tornado_name:-Tornado}

{
  echo "WebSocket echo, no compression: $conns connections, $size-byte text messages, one in"
  echo "flight per connection, ${secs} s each; bench/ws_load on CPU 1, server on CPU 0"
  echo
  echo '| server | round trips/s | server CPU µs/message | × floor | errors |'
  echo '|---|---|---|---|---|'
  row floor "floor (bench/floor_ws: epoll, one read and one write per event)" "$floor_pid" "$floor_port"
  row squall "squall" "$squall_pid" "$squall_port"
  row node "$node_name" "$node_pid" "$node_port"
  row tornado "$tornado_name" "$tornado_pid" "$tornado_port"
  echo
  # The rows are seconds to minutes apart, and this machine's state can change between two of
  # them; squall loaded at the same time as the floor, then as Node (bench_pair: one ws_load
  # each, both servers on CPU 0), sees the same state as its peer.  The targets use the
  # medians of 3 such runs of half the rows' length; the rows' ratios are given beside them.
  node_r=$(ratio "${US[squall]:-}" "${US[node]:-}") floor_r=$(ratio "${US[squall]:-}" "${US[floor]:-}")
  half=$(((secs + 1) / 2))
  for peer in floor node; do
    pidv=${peer}_pid portv=${peer}_port
    [ -n "$squall_pid" ] && [ -n "${!pidv}" ] || continue
    rs=()
    for r in 1 2 3; do
      bench_quiet "squall and $peer, round $r" bench_pair "${!pidv}" "$squall_pid" $((1 - r % 2)) \
        $pin_load "$load" -p "${!portv}" -c "$conns" -s "$size" -d "$half" -- \
        $pin_load "$load" -p "$squall_port" -c "$conns" -s "$size" -d "$half"
      a=$(trips "$OUT_A" 2) b=$(trips "$OUT_B" 2)
      rs+=("$(ratio3 "$(cpu_us_per3 "$TICKS_B" "${b:-0}")" "$(cpu_us_per3 "$TICKS_A" "${a:-0}")")")
    done
    m=$(median "${rs[@]}")
    if [ "$peer" = node ]; then label=Node rowr=$node_r; else label=floor rowr=$floor_r; fi
    echo "paired: squall ÷ $label CPU per message $m (runs: ${rs[*]}; the rows above: $rowr)"
    if [ "$peer" = node ]; then node_r=$m; else floor_r=$m; fi
  done
  echo
  if [ -n "${US[squall]:-}" ] && [ -n "${US[node]:-}" ]; then
    awk -v r="$node_r" -v s="${US[squall]}" -v t="${US[tornado]:-}" 'BEGIN {
      printf "summary: squall CPU per message = %s x Node ws (target <= 0.5)", r
      if (t + 0 > 0) printf ", %.2f x Tornado", s / t
      printf "\n" }'
  else
    echo "summary: squall ${US[squall]:-?} µs/message (no Node.js figure to compare with)"
  fi
  echo "floor: squall CPU per message = $floor_r x the floor (target <= 1.1: $(verdict "$floor_r" '<=' 1.1))"

  # Idle connections: a fresh squall server, so that the echo run's buffers do not count.
  for p in "$squall_pid" "$node_pid" "$tornado_pid" "$floor_pid"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
  SQ_BENCH_TRIM_DELAY=$trim_delay bench_start_listening squall_idle "$echo_bin" 0
  if [ -n "$PID" ]; then
    idle_pid=$PID idle_port=$PORT
    $pin_load "$load" -p "$idle_port" -i 200 -d 0.2 > /dev/null 2>&1 || true
    sleep 0.5
    base_kib=$(rss_kib "$idle_pid")
    $pin_load "$load" -p "$idle_port" -i "$idle_n" -d 600 > "$tmp/idle.out" 2> "$tmp/idle.err" &
    load_pid=$!
    pids+=("$load_pid")
    if wait_line "$tmp/idle.out" '^ready' 90 "$load_pid"; then
      sleep 1
      held_kib=$(rss_kib "$idle_pid")
      awk -v n="$idle_n" -v a="$base_kib" -v b="$held_kib" 'BEGIN {
        per = (b - a) * 1024 / n
        printf "idle: %d idle WebSocket connections to squall (no compression): VmRSS %d KiB -> %d KiB, %.0f bytes per connection (target <= 1024)\n", n, a, b, per }'
      # after the burst: the connections closed, and past the trim (memory_trim_delay
      # shortened to trim_delay s; the server trims after bursts of 256 or more)
      kill "$load_pid" 2>/dev/null || true
      wait "$load_pid" 2>/dev/null || true
      rss_after_burst "$idle_pid"
      echo "idle: RSS with the $idle_n held > once they closed > $trim_wait s later (memory_trim_delay $trim_delay s): $(mib "$held_kib") > $(mib "$CLOSED_KIB") > $(mib "$TRIMMED_KIB")"
    else
      echo "idle: the $idle_n connections did not open: $(tail -2 "$tmp/idle.err")"
    fi
    kill "$load_pid" 2>/dev/null || true
  else
    echo "idle: squall ws_echo did not start"
  fi
} > "$tmp/report"

{
  echo "## WebSocket"
  echo
  echo "$(bench_stamp); command: bench/ws_compare.sh $build $secs $idle_n"
  echo
  cat "$tmp/report"
} > "$results/ws.md"
cat "$tmp/report"
