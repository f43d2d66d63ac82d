#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind --tool=callgrind (noise-free, unlike
# CPU time): squall's examples/hello, bench/web_bench /plaintext, /json and /json-tree (the
# same document built as a jansson tree and serialized), and nginx (one
# process: master_process off, access_log off, `return 200 "Hello, World!"`).  Each server
# runs under callgrind, gets a warm-up of requests, has its counters zeroed (callgrind_control
# -z), then answers exactly N keep-alive requests from bench/http_load (50 connections, one
# request in flight on each), and the counters are dumped (callgrind_control -d): Ir / N is
# the figure.  Kernel work (the syscalls) is not counted here: see bench/http_syscalls.sh.
# Writes $SQ_BENCH_RESULTS/callgrind.md (default bench/results).
# Usage: bench/http_callgrind.sh BUILD_DIR [N]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "BUILD_DIR [N]" "$@"
n=${2:-20000}
load=$build/bench/http_load
conns=50

bench_require "$results/callgrind.md" "instruction counts" valgrind callgrind_control

declare -A IR
# measure KEY PREPARE PATH CMD...: start CMD under callgrind, count N requests; sets IR[KEY]
# to the instructions per request.  Ports are ephemeral: with PREPARE "-", CMD is one of
# squall's servers given port 0, and its port comes from the "listening on port N" line it
# prints; otherwise `PREPARE PORT` is run first with a free_port (it writes the server's
# configuration), and should the server exit before answering (the port was taken in
# between), once more with another port.
measure() {
  local key=$1 prepare=$2 path=$3 port="" vp try; shift 3
  for try in 1 2; do
    if [ "$prepare" != - ]; then
      port=$(free_port)
      "$prepare" "$port"
    fi
    rm -f "$tmp/cg.$key".*
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$key.%p" "$@" \
      > "$tmp/$key.out" 2> "$tmp/$key.err" &
    vp=$!
    pids+=("$vp")
    if [ "$prepare" = - ] && wait_line "$tmp/$key.out" '^listening on port ' 60 "$vp"; then
      port=$(awk '/^listening on port / {print $4; exit}' "$tmp/$key.out")
    fi
    # valgrind starts slowly
    if [ -n "$port" ] && wait_http "$port" "$path" 60 "$vp" && kill -0 "$vp" 2>/dev/null; then
      break
    fi
    kill "$vp" 2>/dev/null || true
    wait "$vp" 2>/dev/null || true
    if [ "$prepare" = - ] || [ "$try" -eq 2 ]; then
      echo "$key did not start under valgrind: $(tail -3 "$tmp/$key.err")" >&2
      return 0
    fi
  done
  "$load" count "$port" "$path" 2000 "$conns" > /dev/null
  callgrind_control -z "$vp" > /dev/null 2>&1
  "$load" count "$port" "$path" "$n" "$conns" > "$tmp/$key.load"
  callgrind_control -d "$vp" > /dev/null 2>&1
  kill "$vp" 2>/dev/null || true
  wait "$vp" 2>/dev/null || true
  # the dump after zeroing is the file with a .N suffix
  local f ir
  f=$(ls "$tmp"/cg."$key".*.[0-9]* 2>/dev/null | head -1 || true)
  ir=$([ -n "$f" ] && awk '/^summary:/ {print $2}' "$f" || true)
  if grep -q "ok=$n " "$tmp/$key.load" && [ -n "$ir" ]; then
    IR[$key]=$(awk -v i="$ir" -v n="$n" 'BEGIN {printf "%.0f", i / n}')
  fi
}

# nginx_conf PORT: nginx as one process on PORT.
nginx_conf() { bench_nginx_conf "$1" 1024 "master_process off;"; }

measure hello - / "$build/examples/hello" 0
measure plaintext - /plaintext "$build/bench/web_bench" 0
measure json - /json "$build/bench/web_bench" 0
measure jsontree - /json-tree "$build/bench/web_bench" 0
if command -v nginx >/dev/null; then
  measure nginx nginx_conf / nginx -c "$tmp/nginx.conf" -p "$tmp"
fi

{
  echo "user-space instructions per request (callgrind Ir over $n keep-alive requests, $conns connections; kernel not included)"
  echo
  echo '| server | instructions/request | vs nginx |'
  echo '|---|---|---|'
  for k in nginx hello plaintext json jsontree; do
    case $k in
      nginx) name="nginx (1 process)" ;;
      hello) name="squall hello (HTTP layer)" ;;
      plaintext) name="squall web /plaintext" ;;
      json) name="squall web /json (sq_write_jsonf)" ;;
      jsontree) name="squall web /json-tree (json_pack + sq_write_json)" ;;
    esac
    printf '| %s | %s | %s |\n' "$name" "${IR[$k]:-failed}" "$(ratio "${IR[$k]:-}" "${IR[nginx]:-}")"
  done
  echo
  echo "summary: instructions/request: squall hello $(ratio "${IR[hello]:-}" "${IR[nginx]:-}")x nginx;" \
    "web /json $(ratio "${IR[json]:-}" "${IR[plaintext]:-}")x web /plaintext," \
    "$(ratio "${IR[json]:-}" "${IR[hello]:-}")x hello"
} | tee "$results/callgrind.md"
