#!/usr/bin/env bash
# The demo's chat shared through Redis (issue 15): CONNS WebSocket clients (default 1,000)
# spread over two demo processes that share one redis-server, RATE messages per second
# (default 100) published with POST /chat/send alternately to each, so CONNS x RATE
# deliveries per second.  bench/chat_fanout.c measures publish-to-delivery latency (p50,
# p90, p99, max) and counts every delivery per connection and message (lost: never
# arrived).  Servers (both demos and redis-server) are pinned to CPU 0, the load generator
# to CPU 1; server CPU per delivery is their utime+stime over the run divided by the
# deliveries.  Writes the report to $SQ_BENCH_RESULTS/chat.md (default bench/results).
# Usage: bench/chat_redis.sh BUILD_DIR [SECONDS] [CONNS] [RATE]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "BUILD_DIR [SECONDS] [CONNS] [RATE]" "$@"
secs=${2:-10}
conns=${3:-1000}
rate=${4:-100}
load="$build/bench/chat_fanout"
demo="$build/examples/demo"
if ! command -v redis-server >/dev/null || [ ! -x "$load" ] || [ ! -x "$demo" ]; then
  echo "(redis-server, bench/chat_fanout or examples/demo missing: the chat fan-out bench was skipped)"
  exit 0
fi
bench_fit_fds conns 100

rport=$(free_port)
$pin_server redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$tmp" --logfile "$tmp/redis.log" > /dev/null 2>&1 &
rpid=$!
pids+=("$rpid")
for _ in $(seq 100); do
  redis-cli -p "$rport" ping 2>/dev/null | grep -q PONG && break
  [ -n "$(command -v redis-cli)" ] || { sleep 0.5; break; }
  sleep 0.1
done

export SQUALL_DEMO_REDIS="redis://127.0.0.1:$rport/0" SQUALL_DEMO_HTTPS_PORT=off
declare -a dpid dport
for i in 0 1; do
  bench_start_listening "demo$i" "$demo" 0 "$src/examples/demo/static"
  if [ -z "$PID" ]; then
    echo "demo $i did not start: the chat fan-out bench was skipped" >&2
    exit 1
  fi
  dpid[$i]=$PID dport[$i]=$PORT
done
wait_line "$tmp/demo0.err" 'subscriber connected' 15 "${dpid[0]}" || true
wait_line "$tmp/demo1.err" 'subscriber connected' 15 "${dpid[1]}" || true

ticks() { echo $(( $(cpu_ticks "${dpid[0]}") + $(cpu_ticks "${dpid[1]}") + $(cpu_ticks "$rpid") )); }
before=$(ticks)
out=$($pin_load "$load" -p "${dport[0]},${dport[1]}" -c "$conns" -r "$rate" -d "$secs" 2>&1) || {
  echo "chat_fanout failed: $out" >&2
  exit 1
}
after=$(ticks)
line=$(echo "$out" | grep '^published')
field() { echo "$line" | awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}'; }
deliv=$(field deliveries) lost=$(field lost) drate=$(field rate)
p50=$(field p50_ms) p90=$(field p90_ms) p99=$(field p99_ms) max=$(field max_ms)
us=$(cpu_us_per $((after - before)) "$deliv")
{
  echo "### Chat across processes through Redis ($(bench_stamp))"
  echo
  echo "$conns WebSocket clients over 2 demo processes sharing one redis-server, $rate messages/s"
  echo "published for $secs s (\`bench/chat_redis.sh BUILD $secs $conns $rate\`); servers on CPU 0,"
  echo "the load generator (bench/chat_fanout) on CPU 1."
  echo
  echo "| deliveries/s | lost | p50 ms | p90 ms | p99 ms | max ms | server CPU µs/delivery |"
  echo "|---|---|---|---|---|---|---|"
  echo "| $drate | $lost of $(field expected) | $p50 | $p90 | $p99 | $max | $us |"
  echo
  echo "target: p99 <= 10 ms: $(verdict "$p99" '<=' 10); no message lost: $([ "$lost" = 0 ] && echo met || echo MISSED)"
} | tee "$results/chat.md"
