#!/usr/bin/env bash
# squall's examples/hello beside nginx (1 worker, `return 200`), h2o (1 thread, a static
# hello.txt), Node.js (http.createServer) and Tornado 6 (one process), all answering
# "Hello, World!" as text/plain, on keep-alive plaintext; squall's web layer (bench/web_bench,
# access log off like nginx's) on /plaintext and on /json, which builds and serializes
# {"message":"Hello, World!"} with jansson for every request; nginx and squall on 16-deep
# pipelining.  The json target compares /json with the web layer's own /plaintext (same layer,
# same route lookup and handler object); the ratio to the HTTP-layer hello is shown as well.  Each server is pinned to CPU 0 and
# wrk to CPU 1; server CPU time per request comes from utime+stime in /proc/<pid>/stat of the
# process that serves (nginx's worker, not its master) over the run.  Servers that are not
# installed get a "not installed" row.
# Writes the table to $SQ_BENCH_RESULTS/http.md (default bench/results) and, when gnuplot
# is installed, a bar chart of plaintext server CPU µs/request to http.png there.
# Usage: bench/http_compare.sh BUILD_DIR [SECONDS]
set -euo pipefail
build=${1:?usage: bench/http_compare.sh BUILD_DIR [SECONDS]}
secs=${2:-10}
here=$(cd "$(dirname "$0")" && pwd)
results=${SQ_BENCH_RESULTS:-$here/results}
mkdir -p "$results"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
tck=$(getconf CLK_TCK)
python=/usr/bin/python3

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Results by key, for the summary and the chart.
declare -A RPS US

# run KEY NAME PID PORT PATH [wrk args...]: one wrk run; prints a table row.
run() {
  local key=$1 name=$2 pid=$3 port=$4 path=$5; shift 5
  if [ -z "$pid" ]; then
    printf '| %s | - | - | - | - | %s |\n' "$name" "${SKIP[$key]:-not running}"
    return 0
  fi
  local before after out
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c100 -d"${secs}s" --latency "$@" "http://127.0.0.1:$port$path")
  after=$(cpu_ticks "$pid")
  local reqs rps p50 p99 errs
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  errs=$(echo "$out" | awk '/Socket errors|Non-2xx/ {printf "%s ", $0}')
  # wrk times a batch only when its script is static; pipeline.lua returns its 16-request batch
  # from request(), and wrk's percentiles then come out broken (a 99% of 0.00us): not shown.
  case $key in *_pipe) p50="n/a (1)" p99="n/a (1)" ;; esac
  local us
  us=$(awk -v t=$((after - before)) -v hz="$tck" -v n="$reqs" \
    'BEGIN {if (n > 0) printf "%.2f", t / hz / n * 1e6; else print "nan"}')
  RPS[$key]=$rps
  US[$key]=$us
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$rps" "$us" "$p50" "$p99" "${errs:-none}"
}

# wait_http PORT PATH: until the server answers (up to 15 s).
wait_http() {
  local i
  for i in $(seq 150); do
    curl -sf -o /dev/null "http://127.0.0.1:$1$2" && return 0
    sleep 0.1
  done
  return 1
}

declare -A SKIP
nginx_worker="" hello_pid="" demo_pid="" h2o_pid="" node_pid="" tornado_pid=""

# nginx: one worker, the same body and Content-Type as hello.
cat > "$tmp/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:18081 reuseport backlog=4096;
    location / { default_type text/plain; return 200 "Hello, World!"; }
  }
}
CONF
taskset -c 0 nginx -c "$tmp/nginx.conf" -p "$tmp" &
pids+=($!)
taskset -c 0 "$build/examples/hello" 18082 > "$tmp/hello.out" 2>&1 &
hello_pid=$!
pids+=($!)
taskset -c 0 "$build/bench/web_bench" 18083 > "$tmp/web.out" 2>&1 &
demo_pid=$!
pids+=($!)

# h2o: one thread serving hello.txt (exactly "Hello, World!", no newline) as
# the index of /, text/plain by its extension, no gzip; no access log.
if command -v h2o >/dev/null; then
  printf 'Hello, World!' > "$tmp/hello.txt"
  cat > "$tmp/h2o.conf" <<CONF
num-threads: 1
user: $(id -un)
pid-file: $tmp/h2o.pid
error-log: $tmp/h2o-error.log
listen:
  host: 127.0.0.1
  port: 18084
hosts:
  default:
    paths:
      /:
        file.dir: $tmp
        file.index: ['hello.txt']
        file.send-gzip: OFF
CONF
  taskset -c 0 h2o -c "$tmp/h2o.conf" > "$tmp/h2o.out" 2>&1 &
  h2o_pid=$!
  pids+=($!)
else
  SKIP[h2o]="not installed"
fi

# Node.js: http.createServer, the same body and Content-Type.
if command -v node >/dev/null; then
  taskset -c 0 node -e '
    const http = require("http");
    http.createServer((req, res) => {
      res.writeHead(200, {"Content-Type": "text/plain", "Content-Length": "13"});
      res.end("Hello, World!");
    }).listen(18085, "127.0.0.1");' > "$tmp/node.out" 2>&1 &
  node_pid=$!
  pids+=($!)
else
  SKIP[node]="not installed"
fi

# Tornado 6: one process, one RequestHandler.
if [ -x "$python" ] && "$python" -c 'import tornado, sys; sys.exit(int(tornado.version_info[0] < 6))' 2>/dev/null; then
  cat > "$tmp/tornado_hello.py" <<'PY'
import asyncio
import tornado.web

class Hello(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.write("Hello, World!")

async def main():
    app = tornado.web.Application([(r"/", Hello)])
    app.listen(18086, address="127.0.0.1", backlog=4096)
    await asyncio.Event().wait()

asyncio.run(main())
PY
  taskset -c 0 "$python" "$tmp/tornado_hello.py" > "$tmp/tornado.out" 2>&1 &
  tornado_pid=$!
  pids+=($!)
else
  SKIP[tornado]="not installed (python3-tornado 6)"
fi

# Wait for every server; one that does not answer gets an empty PID and a "failed" row.
wait_http 18081 / || { echo "nginx did not start: $(cat "$tmp/error.log" 2>/dev/null)" >&2; exit 1; }
wait_http 18082 / || { echo "examples/hello did not start" >&2; exit 1; }
wait_http 18083 /json || { SKIP[json]="failed to start"; SKIP[web]="failed to start"; demo_pid=""; }
for s in h2o:18084 node:18085 tornado:18086; do
  name=${s%%:*} port=${s##*:}
  pidvar=${name}_pid
  [ -n "${!pidvar}" ] || continue
  if ! wait_http "$port" /; then
    SKIP[$name]="failed to start"
    printf -v "$pidvar" '%s' ""
  elif [ "$(curl -s "http://127.0.0.1:$port/")" != "Hello, World!" ]; then
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
  echo '| server | requests/s | server CPU µs/request | p50 | p99 | errors |'
  echo '|---|---|---|---|---|---|'
  run nginx "nginx (1 worker)" "$nginx_worker" 18081 /
  run h2o "h2o (1 thread, static file)" "$h2o_pid" 18084 /
  run node "Node.js http" "$node_pid" 18085 /
  run tornado "Tornado 6 (1 process)" "$tornado_pid" 18086 /
  run hello "squall hello" "$hello_pid" 18082 /
  run web "squall web /plaintext" "$demo_pid" 18083 /plaintext
  run json "squall web /json" "$demo_pid" 18083 /json
  run nginx_pipe "nginx, pipelined x16" "$nginx_worker" 18081 / -s "$here/pipeline.lua"
  run hello_pipe "squall, pipelined x16" "$hello_pid" 18082 / -s "$here/pipeline.lua"

  ratio() { # ratio A B: A / B with 2 decimals, or n/a
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {if (a != "" && b + 0 > 0) printf "%.2f", a / b; else print "n/a"}'
  }
  json_ratio=$(ratio "${US[json]:-}" "${US[web]:-}")
  json_ok=$(awk -v r="$json_ratio" 'BEGIN {if (r == "n/a") print "n/a"; else if (r <= 1.1) print "met"; else print "MISSED"}')
  verdict() { # RATIO OP LIMIT
    awk -v r="$1" -v op="$2" -v l="$3" 'BEGIN {if (r == "n/a") print "n/a";
      else if ((op == "<=" && r <= l) || (op == ">=" && r >= l)) print "met"; else print "MISSED"}'
  }
  plain_r=$(ratio "${US[hello]:-}" "${US[nginx]:-}")
  pipe_r=$(ratio "${US[hello_pipe]:-}" "${US[nginx_pipe]:-}")
  tornado_r=$(ratio "${RPS[hello]:-}" "${RPS[tornado]:-}")
  echo
  echo "(1) wrk's latency percentiles are not valid for a pipelining script (the 99th came out as 0.00us), so none are shown."
  echo
  echo "summary: squall/nginx CPU per request: plaintext ${plain_r}x (target <= 1.0) $(verdict "$plain_r" '<=' 1.0)," \
    "pipelined ${pipe_r}x (target <= 0.2) $(verdict "$pipe_r" '<=' 0.2);" \
    "squall vs Tornado: ${tornado_r}x the requests/s (target >= 15) $(verdict "$tornado_r" '>=' 15)" \
    "and $(ratio "${US[tornado]:-}" "${US[hello]:-}")x less CPU per request;" \
    "json/plaintext CPU per request (web layer): ${json_ratio}x (target <= 1.1) ${json_ok}," \
    "json (web) / hello (HTTP layer): $(ratio "${US[json]:-}" "${US[hello]:-}")x"
} | tee "$tmp/table.md"
# (run's arrays live in the pipeline's subshell; the chart reads the table instead.)
cp "$tmp/table.md" "$results/http.md"

if command -v gnuplot >/dev/null; then
  # Plaintext rows only (not pipelined), those that ran.
  awk -F'|' 'NR > 4 && /^\| / && $3 !~ /^ *- *$/ && $2 !~ /pipelined/ {
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
