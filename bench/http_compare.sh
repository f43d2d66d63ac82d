#!/usr/bin/env bash
# squall's examples/hello beside its floor (bench/floor_http.c: a do-nothing epoll server that
# writes canned responses; every row is also given as a ratio to it), nginx (1 worker, `return 200`), h2o (1 thread, a static
# hello.txt), Node.js (http.createServer) and Tornado 6 (one process), all answering
# "Hello, World!" as text/plain, on keep-alive plaintext; squall's web layer (bench/web_bench,
# access log off like nginx's) on /plaintext and on /json, which writes
# {"message":"Hello, World!"} with sq_write_jsonf for every request; nginx and squall on 16-deep
# pipelining.  The json target compares /json with the web layer's own /plaintext (same layer,
# same route lookup and handler object); the ratio to the HTTP-layer hello is shown as well.  Each server is pinned to CPU 0 and
# wrk to CPU 1; server CPU time per request comes from utime+stime in /proc/<pid>/stat of the
# process that serves (nginx's worker, not its master) over the run.  Servers that are not
# installed get a "not installed" row.  Then squall's hello and nginx are loaded at the same
# time (lib.sh's bench_pair, one wrk each), 3 runs of half the rows' length, keep-alive and
# pipelined: the squall ÷ nginx ratios of the summary come from these pairs, which see the
# same state of a noisy machine, rather than from rows that may not.
# Writes the table to $SQ_BENCH_RESULTS/http.md (default bench/results) and, when gnuplot
# is installed, a bar chart of plaintext server CPU µs/request to http.png there.
# Usage: bench/http_compare.sh BUILD_DIR [SECONDS]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "BUILD_DIR [SECONDS]" "$@"
secs=${2:-10}

# Results by key, for the summary and the chart.
declare -A RPS US

# run KEY NAME PID PORT PATH [wrk args...]: one wrk run; prints a table row.
run() {
  local key=$1 name=$2 pid=$3 port=$4 path=$5; shift 5
  if [ -z "$pid" ]; then
    printf '| %s | - | - | - | - | - | %s |\n' "$name" "${SKIP[$key]:-not running}"
    return 0
  fi
  local before after out
  before=$(cpu_ticks "$pid")
  out=$($pin_load wrk -t1 -c100 -d"${secs}s" --latency "$@" "http://127.0.0.1:$port$path")
  after=$(cpu_ticks "$pid")
  wrk_parse "$out"
  local rps=$WRK_RPS p50=$WRK_P50 p99=$WRK_P99 errs us
  errs=$(echo "$out" | awk '/Socket errors|Non-2xx/ {printf "%s ", $0}')
  # wrk times a batch only when its script is static; pipeline.lua returns its 16-request batch
  # from request(), and wrk's percentiles then come out broken (a 99% of 0.00us): not shown.
  case $key in *_pipe) p50="n/a (1)" p99="n/a (1)" ;; esac
  us=$(cpu_us_per $((after - before)) "$WRK_REQS")
  RPS[$key]=$rps
  US[$key]=$us
  # every row also as a ratio to the floor's CPU per request (pipelined rows: the pipelined floor)
  local floor=${US[floor]:-}
  case $key in *_pipe) floor=${US[floor_pipe]:-} ;; esac
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$rps" "$us" "$(ratio "$us" "$floor")" "$p50" "$p99" "${errs:-none}"
}

declare -A SKIP
nginx_worker="" hello_pid="" demo_pid="" h2o_pid="" node_pid="" tornado_pid=""
hello_port="" web_port="" nginx_port="" h2o_port="" node_port="" tornado_port=""

# Every port is ephemeral: squall's servers get port 0 and print theirs; the others are
# started on a free_port each by these functions (PORT as their argument), through
# bench_start_free, which retries with another port should that one be taken meanwhile.

# nginx: one worker, the same body and Content-Type as hello.
start_nginx() {
  bench_nginx_conf "$1 reuseport backlog=4096" 4096
  bench_nginx_start
}

# h2o: one thread serving hello.txt (exactly "Hello, World!", no newline) as
# the index of /, text/plain by its extension, no gzip; no access log.
start_h2o() {
  cat > "$tmp/h2o.conf" <<CONF
num-threads: 1
user: $(id -un)
pid-file: $tmp/h2o.pid
error-log: $tmp/h2o-error.log
listen:
  host: 127.0.0.1
  port: $1
hosts:
  default:
    paths:
      /:
        file.dir: $tmp
        file.index: ['hello.txt']
        file.send-gzip: OFF
CONF
  bench_spawn h2o h2o -c "$tmp/h2o.conf"
}

# Node.js: http.createServer, the same body and Content-Type.
start_node() {
  bench_spawn node node -e '
    const http = require("http");
    http.createServer((req, res) => {
      res.writeHead(200, {"Content-Type": "text/plain", "Content-Length": "13"});
      res.end("Hello, World!");
    }).listen(Number(process.argv[1]), "127.0.0.1");' "$1"
}

# Tornado 6: one process, one RequestHandler.
start_tornado() {
  bench_spawn tornado "$python" "$tmp/tornado_hello.py" "$1"
}

if bench_start_free start_nginx /; then
  nginx_port=$PORT
else
  echo "nginx did not start: $(cat "$tmp/error.log" 2>/dev/null)" >&2
  exit 1
fi
bench_start_listening hello "$build/examples/hello" 0
hello_pid=$PID hello_port=$PORT
[ -n "$hello_pid" ] || { echo "examples/hello did not start" >&2; exit 1; }
bench_start_listening web "$build/bench/web_bench" 0
demo_pid=$PID web_port=$PORT
floor_pid="" floor_port=""
if [ -x "$build/bench/floor_http" ]; then
  bench_start_listening floor "$build/bench/floor_http" 0
  floor_pid=$PID floor_port=$PORT
else
  SKIP[floor]="bench/floor_http not built" SKIP[floor_pipe]="bench/floor_http not built"
fi

if command -v h2o >/dev/null; then
  printf 'Hello, World!' > "$tmp/hello.txt"
  bench_start_free start_h2o / && h2o_pid=$PID h2o_port=$PORT
else
  SKIP[h2o]="not installed"
fi

if command -v node >/dev/null; then
  bench_start_free start_node / && node_pid=$PID node_port=$PORT
else
  SKIP[node]="not installed"
fi

if has_tornado6; then
  cat > "$tmp/tornado_hello.py" <<'PY'
import asyncio
import sys
import tornado.web

class Hello(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.write("Hello, World!")

async def main():
    app = tornado.web.Application([(r"/", Hello)])
    app.listen(int(sys.argv[1]), address="127.0.0.1", backlog=4096)
    await asyncio.Event().wait()

asyncio.run(main())
PY
  bench_start_free start_tornado / && tornado_pid=$PID tornado_port=$PORT
else
  SKIP[tornado]="not installed (python3-tornado 6)"
fi

# Check every server; one that does not answer gets an empty PID and a "failed" row.
[ -n "$demo_pid" ] && wait_http "$web_port" /json \
  || { SKIP[json]="failed to start"; SKIP[web]="failed to start"; demo_pid=""; }
for name in h2o node tornado; do
  pidvar=${name}_pid portvar=${name}_port
  port=${!portvar}
  if [ -z "${!pidvar}" ]; then
    # installed (no SKIP yet) but bench_start_free failed
    [ -n "${SKIP[$name]:-}" ] || SKIP[$name]="failed to start"
    continue
  fi
  if [ "$(curl -s "http://127.0.0.1:$port/")" != "Hello, World!" ]; then
    SKIP[$name]="wrong body"
    printf -v "$pidvar" '%s' ""
  fi
done
nginx_pid=$(cat "$tmp/nginx.pid")
# nginx's master only forks; the worker is the child that serves.
nginx_worker=$(pgrep -P "$nginx_pid" | head -1)
# h2o (no TLS, no mruby) serves from the process itself; should it have forked a server
# child (master-mode: daemon), measure that child instead.
if [ -n "$h2o_pid" ]; then
  child=$(pgrep -P "$h2o_pid" -x h2o | head -1 || true)
  [ -n "$child" ] && h2o_pid=$child
fi

{
  echo "plaintext keep-alive, 100 connections, ${secs} s each; wrk on CPU 1, server on CPU 0"
  echo
  echo '| server | requests/s | server CPU µs/request | × floor | p50 | p99 | errors |'
  echo '|---|---|---|---|---|---|---|'
  run floor "floor (bench/floor_http: epoll, one read and one write per event)" "$floor_pid" "$floor_port" /
  run nginx "nginx (1 worker)" "$nginx_worker" "$nginx_port" /
  run h2o "h2o (1 thread, static file)" "$h2o_pid" "$h2o_port" /
  run node "Node.js http" "$node_pid" "$node_port" /
  run tornado "Tornado 6 (1 process)" "$tornado_pid" "$tornado_port" /
  run hello "squall hello" "$hello_pid" "$hello_port" /
  run web "squall web /plaintext" "$demo_pid" "$web_port" /plaintext
  run json "squall web /json" "$demo_pid" "$web_port" /json
  run floor_pipe "floor, pipelined x16" "$floor_pid" "$floor_port" / -s "$here/pipeline.lua"
  run nginx_pipe "nginx, pipelined x16" "$nginx_worker" "$nginx_port" / -s "$here/pipeline.lua"
  run hello_pipe "squall, pipelined x16" "$hello_pid" "$hello_port" / -s "$here/pipeline.lua"

  json_ratio=$(ratio "${US[json]:-}" "${US[web]:-}")
  json_ok=$(verdict "$json_ratio" '<=' 1.1)
  plain_r=$(ratio "${US[hello]:-}" "${US[nginx]:-}")
  pipe_r=$(ratio "${US[hello_pipe]:-}" "${US[nginx_pipe]:-}")
  # The rows above are seconds to minutes apart, and this machine's state can change between
  # two of them; squall and nginx loaded at the same time (bench_pair_wrk) see the same state.
  # Their ratio, median of 3 runs of half the rows' length, is the one the targets use.
  if [ -n "$nginx_worker" ] && [ -n "$hello_pid" ]; then
    half=$(((secs + 1) / 2)) pka=() ppipe=()
    echo
    echo "squall hello and nginx loaded at the same time (one wrk each on CPU 1, both servers on CPU 0), 3 runs of ${half} s:"
    echo
    echo '| run | nginx µs/request | squall µs/request | squall ÷ nginx | nginx x16 | squall x16 | squall ÷ nginx x16 |'
    echo '|---|---|---|---|---|---|---|'
    for r in 1 2 3; do
      row=()
      for mode in ka pipe; do
        args=()
        [ "$mode" = pipe ] && args=(-s "$here/pipeline.lua")
        bench_pair_wrk "$nginx_worker" "http://127.0.0.1:$nginx_port/" \
          "$hello_pid" "http://127.0.0.1:$hello_port/" $((1 - r % 2)) "$half" "${args[@]}"
        row+=("$US_A" "$US_B" "$(ratio3 "$US_B" "$US_A")")
        if [ "$mode" = ka ]; then pka+=("${row[-1]}"); else ppipe+=("${row[-1]}"); fi
      done
      echo "| $r | ${row[0]} | ${row[1]} | ${row[2]} | ${row[3]} | ${row[4]} | ${row[5]} |"
    done
    plain_r=$(median "${pka[@]}") pipe_r=$(median "${ppipe[@]}")
    echo
    echo "paired medians: squall ÷ nginx keep-alive $plain_r, pipelined x16 $pipe_r (the rows above: $(ratio "${US[hello]:-}" "${US[nginx]:-}") and $(ratio "${US[hello_pipe]:-}" "${US[nginx_pipe]:-}"))"
  fi
  tornado_r=$(ratio "${RPS[hello]:-}" "${RPS[tornado]:-}")
  echo
  echo "(1) wrk's latency percentiles are not valid for a pipelining script (the 99th came out as 0.00us), so none are shown."
  echo
  echo "summary: squall/nginx CPU per request (paired when both ran): plaintext ${plain_r}x (target <= 1.0) $(verdict "$plain_r" '<=' 1.0)," \
    "pipelined ${pipe_r}x (target <= 0.2) $(verdict "$pipe_r" '<=' 0.2);" \
    "squall vs Tornado: ${tornado_r}x the requests/s (target >= 15) $(verdict "$tornado_r" '>=' 15)" \
    "and $(ratio "${US[tornado]:-}" "${US[hello]:-}")x less CPU per request;" \
    "json/plaintext CPU per request (web layer): ${json_ratio}x (target <= 1.1) ${json_ok}," \
    "json (web) / hello (HTTP layer): $(ratio "${US[json]:-}" "${US[hello]:-}")x"
  floor_r=$(ratio "${US[hello]:-}" "${US[floor]:-}")
  floor_pipe_r=$(ratio "${US[hello_pipe]:-}" "${US[floor_pipe]:-}")
  echo
  echo "floor: squall hello / floor CPU per request: keep-alive ${floor_r}x (target <= 1.04) $(verdict "$floor_r" '<=' 1.04)," \
    "pipelined ${floor_pipe_r}x (target <= 1.2) $(verdict "$floor_pipe_r" '<=' 1.2);" \
    "web /plaintext / hello $(ratio "${US[web]:-}" "${US[hello]:-}")x, /json / hello $(ratio "${US[json]:-}" "${US[hello]:-}")x (target <= 1.03)"
} | tee "$tmp/table.md"
# (run's arrays live in the pipeline's subshell; the chart reads the table instead.)
cp "$tmp/table.md" "$results/http.md"

if command -v gnuplot >/dev/null; then
  # Plaintext rows only (not pipelined), those that ran.
  # (the first table only: the paired runs' table after it has rows too)
  awk -F'|' 'NR > 4 && /^$/ {exit} NR > 4 && /^\| / && $3 !~ /^ *- *$/ && $2 !~ /pipelined/ {
      gsub(/^ +| +$/, "", $2); gsub(/ /, "", $4); printf "\"%s\" %s\n", $2, $4 }' \
    "$tmp/table.md" > "$tmp/chart.dat"
  term="pngcairo size 900,500"
  gnuplot -e 'set terminal' 2>/dev/null | grep -q pngcairo || term="png size 900,500"
  if [ -s "$tmp/chart.dat" ] && gnuplot <<GP 2>"$tmp/gnuplot.err"; then
set terminal $term
set output "$results/http.png"
set title "Server CPU per request, plaintext keep-alive (lower is better)"
set ylabel "server CPU µs / request"
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.7
set yrange [0:*]
set xtics rotate by -20
set grid ytics
unset key
plot "$tmp/chart.dat" using 2:xtic(1) lc rgb "#4477aa", \
     "" using 0:2:(sprintf("%.2f", \$2)) with labels offset 0,0.7 notitle
GP
    echo "chart: $results/http.png" >&2
  else
    echo "gnuplot failed: $(cat "$tmp/gnuplot.err")" >&2
  fi
fi
