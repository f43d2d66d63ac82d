#!/usr/bin/env bash
# HTTPS, squall beside nginx in one run: bench/web_bench /plaintext serving HTTPS (its CERT KEY
# arguments) and nginx with one worker (`return 200`, ssl_protocols TLSv1.3,
# ssl_session_tickets on), both with the same ECDSA P-256 self-signed certificate, made here
# with the openssl CLI, and the same TLS 1.3 suite order (squall's default, which nginx is
# told to prefer: both pick AES-128-GCM, X25519).  Both answer "Hello, World!" as text/plain.
# Servers pinned to CPU 0, load generators to CPU 1; server CPU is utime+stime of
# /proc/<pid>/stat (nginx's worker) over each run.  Measured ROUNDS times, both servers
# loaded at the same time (lib.sh's bench_pair, one load generator each), each ratio from
# one run, medians reported (a full-handshake run is a count, so the server that finishes
# first leaves the other alone for the rest of it):
#   keep-alive   wrk -t1 -c100, SECONDS: server CPU µs per request.  Target: <= 0.9 x nginx.
#                (nginx gets keepalive_requests 1000000: its default 1000 would add a
#                handshake every 1000 requests.)
#   wrk close    wrk -c100 -H "Connection: close", SECONDS: one request per TLS connection,
#                server CPU µs per connection.  wrk keeps the session of a connection for its
#                next one, so these are resumed handshakes (TLS 1.3 PSK with ECDHE, tickets).
#   full         bench/http_load --tls close: one request per connection, 100 at a time, a
#                client that keeps no sessions, so every handshake is a full one (ECDHE +
#                the server's ECDSA signature).  Target for both: <= 1.0 x nginx.
#   idle memory  N idle TLS connections (bench/http_load --tls hold: handshake, one request,
#                then held open) on a fresh server each: (RSS held - RSS before) / N.
#                Target: <= 4 KiB per connection.  nginx as one process (master_process off).
# Each CPU row also says how much CPU other processes took meanwhile (/proc/stat busy time
# minus the servers' and the load generators', in % of a core); a run during which
# that passed SQ_BENCH_NOISE_MAX (default 10) is run again, up to SQ_BENCH_TRIES (default 3)
# tries.  SQ_BENCH_HANDSHAKES sets the number of full handshakes per run (default 1500 per
# second of SECONDS).
# Writes $SQ_BENCH_RESULTS/https.md (default bench/results).
# Usage: bench/https_compare.sh BUILD_DIR [SECONDS] [ROUNDS] [N]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "BUILD_DIR [SECONDS] [ROUNDS] [N]" "$@"
secs=${2:-10}
rounds=${3:-3}
n=${4:-10000}
# full handshakes per run: about SECONDS at the rate this machine makes them
n_full=${SQ_BENCH_HANDSHAKES:-$((secs * 1500))}
# a CPU measurement pair is repeated when other processes took more than this % of a core
# close the write end of a holder's fifo (fd 4) before killing the rest
trap 'exec 4>&- 2>/dev/null || true; bench_cleanup' EXIT
bench_fit_fds n 200 "lowering N to"
load=$build/bench/http_load
out_md=$results/https.md

bench_require "$out_md" "the HTTPS comparison" wrk nginx openssl curl

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2> "$tmp/openssl.err" \
  || { echo "openssl could not make the certificate: $(cat "$tmp/openssl.err")" >&2; exit 1; }
BENCH_SCHEME=https

# The TLS 1.3 suites in squall's default order (src/transport/tls.c), given to nginx too with
# ssl_prefer_server_ciphers, so that both servers negotiate the same cipher (AES-128-GCM; with
# OpenSSL's default order nginx would follow wrk's preference, AES-256-GCM).  The
# "negotiated" line of the report shows what each picked.
suites=${SQ_BENCH_TLS13_SUITES:-TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256}

# start_nginx PORT: nginx over TLS; NGINX_MAIN holds the main-block extras.
NGINX_MAIN=""
start_nginx() {
  bench_nginx_conf "$1 ssl reuseport backlog=4096" $((n + 1000)) \
    "worker_rlimit_nofile $((n + 1000)); $NGINX_MAIN" \
    "ssl_certificate $tmp/cert.pem; ssl_certificate_key $tmp/key.pem;
  ssl_protocols TLSv1.3; ssl_session_tickets on;
  ssl_prefer_server_ciphers on; ssl_conf_command Ciphersuites $suites;
  keepalive_timeout 120s; keepalive_requests 1000000;"
  bench_nginx_start
}

# start_squall: bench/web_bench serving HTTPS; sets PID and PORT (empty on failure).
start_squall() {
  bench_start_listening squall "$build/bench/web_bench" 0 "$tmp/cert.pem" "$tmp/key.pem"
  if [ -n "$PID" ] && ! wait_http "$PORT" /plaintext 15 "$PID"; then
    echo "bench/web_bench over TLS does not answer: $(tail -3 "$tmp/squall.err")" >&2
    PID=""
  fi
}

# stop PID: ends a server this script started and reaps it.
stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# negotiated PORT: "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519" as openssl s_client sees it.
negotiated() {
  echo | openssl s_client -connect "127.0.0.1:$1" -brief 2>&1 \
    | awk -F': ' '/^Protocol version/ {p = $2} /^Ciphersuite/ {c = $2}
                  /^(Peer|Server) Temp Key/ {split($2, k, ","); g = k[1]}
                  END {print p, c, g}'
}

declare -A US RPS NOTE NOISE

# take_wrk KEY OUT TICKS: CPU µs per request (TICKS of the server over the requests of the
# wrk report OUT) and requests/s into US[KEY] and RPS[KEY]; wrk's errors into NOTE[KEY].
take_wrk() {
  local key=$1 out=$2 errs
  wrk_parse "$out"
  US[$key]=$(cpu_us_per "$3" "$WRK_REQS")
  RPS[$key]=$WRK_RPS
  errs=$(echo "$out" | awk '/Socket errors|Non-2xx/ {printf "%s ", $0}')
  [ -z "$errs" ] || NOTE[$key]=$errs
}

# take_close KEY OUT TICKS: the same for bench/http_load --tls close (n_full requests, each on
# a new connection with a full handshake, 100 at a time), whose OUT has its "done TOTAL ok=K
# bad=B SECONDS s" line and a line per failure.
take_close() {
  local key=$1 out=$2 done secs_taken
  done=$(echo "$out" | sed -n 's/^done [0-9]* ok=\([0-9]*\) .*/\1/p')
  secs_taken=$(echo "$out" | awk '/^done/ {print $(NF - 1)}')
  US[$key]=$(cpu_us_per "$3" "${done:-0}")
  RPS[$key]=$(awk -v d="${done:-0}" -v s="${secs_taken:-0}" 'BEGIN {if (s > 0) printf "%.0f", d / s; else print "n/a"}')
  [ "${done:-0}" = "$n_full" ] || NOTE[$key]="only ${done:-0} of $n_full answered 200: $(echo "$out" | grep -v '^done' | sort | uniq -c | head -2 | tr '\n' ' ')"
}

# hold KEY PID PORT PATH: N idle TLS connections held by bench/http_load; bytes per
# connection into US[KEY].
hold() {
  local key=$1 pid=$2 port=$3 path=$4 before after="" hp ok
  # warm-up: pools and OpenSSL's first allocations
  "$load" --tls count "$port" "$path" 200 10 > /dev/null
  sleep 0.3
  before=$(rss_kib "$pid")
  rm -f "$tmp/$key.in"
  mkfifo "$tmp/$key.in"
  "$load" --tls hold "$port" "$path" "$n" < "$tmp/$key.in" > "$tmp/$key.out" 2> "$tmp/$key.err" &
  hp=$!
  pids+=("$hp")
  exec 4> "$tmp/$key.in"
  wait_line "$tmp/$key.out" '^answered ' 180 && sleep 0.5 && after=$(rss_kib "$pid")
  ok=$(sed -n 's/^answered \([0-9]*\) ok=\([0-9]*\) .*/\2/p' "$tmp/$key.out")
  if [ -n "$after" ] && [ "${ok:-0}" = "$n" ]; then
    US[$key]=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN {printf "%.0f", (a - b) * 1024 / n}')
  else
    US[$key]=""
    NOTE[$key]="${ok:-0} of $n answered 200 $(sort "$tmp/$key.err" | uniq -c | head -2 | tr '\n' ' ')"
  fi
  exec 4>&-
  wait "$hp" 2>/dev/null || true
}

# --- CPU: both servers up together, loaded at the same time --------------------------------
start_squall
squall_pid=$PID squall_port=$PORT
[ -n "$squall_pid" ] || exit 1
bench_start_free start_nginx / \
  || { echo "nginx did not start: $(cat "$tmp/error.log" 2>/dev/null)" >&2; exit 1; }
nginx_master=$PID nginx_port=$PORT
nginx_worker=$(pgrep -P "$nginx_master" | head -1)
tls_squall=$(negotiated "$squall_port")
tls_nginx=$(negotiated "$nginx_port")
[ "$tls_squall" = "$tls_nginx" ] \
  || echo "note: the servers negotiate different parameters: squall $tls_squall, nginx $tls_nginx" >&2

# measure TEST ROUND: nginx (cn) and squall (cs) loaded at once, each one's figures taken
measure() {
  local test=$1 r=$2
  bench_pair "$nginx_worker" "$squall_pid" $((1 - r % 2)) "${cn[@]}" -- "${cs[@]}"
  if [ "$test" = full ]; then
    take_close "$test.nginx.$r" "$OUT_A" "$TICKS_A"
    take_close "$test.squall.$r" "$OUT_B" "$TICKS_B"
  else
    take_wrk "$test.nginx.$r" "$OUT_A" "$TICKS_A"
    take_wrk "$test.squall.$r" "$OUT_B" "$TICKS_B"
  fi
  NOISE[$test.$r]=$NOISE_PCT
}

declare -a R_KA R_WC R_FULL
rows=""
for r in $(seq "$rounds"); do
  for test in ka wc full; do
    # nginx and squall loaded at the same time (bench_pair; squall's load first in even
    # rounds); a run during which other processes took more than noise_max % of a core is
    # run again (bench_quiet: at most max_tries in all, 5 s apart); the last one counts
    case $test in
      ka)
        cn=($pin_load wrk -t1 -c100 -d"${secs}s" "https://127.0.0.1:$nginx_port/")
        cs=($pin_load wrk -t1 -c100 -d"${secs}s" "https://127.0.0.1:$squall_port/plaintext") ;;
      wc)
        cn=($pin_load wrk -t1 -c100 -d"${secs}s" -H "Connection: close" "https://127.0.0.1:$nginx_port/")
        cs=($pin_load wrk -t1 -c100 -d"${secs}s" -H "Connection: close" "https://127.0.0.1:$squall_port/plaintext") ;;
      full)
        cn=($pin_load "$load" --tls close "$nginx_port" / "$n_full" 100)
        cs=($pin_load "$load" --tls close "$squall_port" /plaintext "$n_full" 100) ;;
    esac
    bench_quiet "round $r $test" measure "$test" "$r"
    s=${US[$test.squall.$r]} g=${US[$test.nginx.$r]}
    rt=$(ratio "$s" "$g")
    case $test in ka) R_KA+=("$rt") ;; wc) R_WC+=("$rt") ;; full) R_FULL+=("$rt") ;; esac
    rows+="| $r | $test | $s | ${RPS[$test.squall.$r]} | $g | ${RPS[$test.nginx.$r]} | $rt | ${NOISE[$test.$r]}$(try_note "$TRIES") | ${NOTE[$test.squall.$r]:-}${NOTE[$test.nginx.$r]:-} |"$'\n'
  done
done
stop "$squall_pid"
stop "$nginx_master"

# --- memory: a fresh server of each kind per round -------------------------------------------
declare -a R_MEM
NGINX_MAIN="master_process off;"
for r in $(seq "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then order="nginx squall"; else order="squall nginx"; fi
  for srv in $order; do
    if [ "$srv" = nginx ]; then
      if bench_start_free start_nginx /; then
        hold "mem.nginx.$r" "$PID" "$PORT" /
        stop "$PID"
      else
        NOTE[mem.nginx.$r]="nginx did not start"
      fi
    else
      start_squall
      if [ -n "$PID" ]; then
        hold "mem.squall.$r" "$PID" "$PORT" /plaintext
        stop "$PID"
      else
        NOTE[mem.squall.$r]="web_bench did not start"
      fi
    fi
  done
  R_MEM+=("$(ratio "${US[mem.squall.$r]:-}" "${US[mem.nginx.$r]:-}")")
  rows+="| $r | idle memory (bytes/conn) | ${US[mem.squall.$r]:-failed} | - | ${US[mem.nginx.$r]:-failed} | - | ${R_MEM[-1]} | - | ${NOTE[mem.squall.$r]:-}${NOTE[mem.nginx.$r]:-} |"$'\n'
done

# medians of each server's values and of the per-round ratios
med() { # med TEST SERVER
  local v=() r
  for r in $(seq "$rounds"); do v+=("${US[$1.$2.$r]:-}"); done
  median "${v[@]}"
}
m_ka=$(median "${R_KA[@]}") m_wc=$(median "${R_WC[@]}") m_full=$(median "${R_FULL[@]}")
m_mem_s=$(med mem squall) m_mem_n=$(med mem nginx)
{
  echo "HTTPS: squall (bench/web_bench /plaintext) vs nginx (1 worker, ssl_protocols TLSv1.3, ssl_session_tickets on, squall's TLS 1.3 suite order preferred), same ECDSA P-256 self-signed certificate; $(bench_stamp)"
  echo "negotiated: squall $tls_squall; nginx $tls_nginx.  $rounds rounds, the two servers loaded at the same time in each CPU run (each about half of CPU 0), medians; wrk -t1 -c100 ${secs} s; full handshakes: $n_full connections from bench/http_load --tls close, 100 at a time; memory: $n idle TLS connections on a fresh server"
  echo
  echo '| scenario | squall | nginx | squall / nginx (median of rounds) | target | result |'
  echo '|---|---|---|---|---|---|'
  echo "| keep-alive, server CPU µs/request | $(med ka squall) | $(med ka nginx) | $m_ka | <= 0.9 | $(verdict "$m_ka" '<=' 0.9) |"
  echo "| wrk Connection: close (resumed TLS 1.3 sessions), CPU µs/connection | $(med wc squall) | $(med wc nginx) | $m_wc | <= 1.0 | $(verdict "$m_wc" '<=' 1.0) |"
  echo "| full handshake per connection, CPU µs/connection | $(med full squall) | $(med full nginx) | $m_full | <= 1.0 | $(verdict "$m_full" '<=' 1.0) |"
  echo "| idle TLS connection, RSS bytes/connection | $m_mem_s | $m_mem_n | $(median "${R_MEM[@]}") | squall <= 4096 | $(verdict "$m_mem_s" '<=' 4096) |"
  echo
  echo "per round (ka: keep-alive µs/request; wc: wrk Connection: close µs/connection; full: full handshake µs/connection; rate: requests or connections per second):"
  echo
  echo '| round | test | squall | squall rate | nginx | nginx rate | ratio | noise % | notes |'
  echo '|---|---|---|---|---|---|---|---|---|'
  printf '%s' "$rows"
  echo
  echo "noise: CPU other processes (and the hypervisor's steal) took during each run, in % of one core; a run above $noise_max % is run again (at most $max_tries tries)."
  echo
  echo "summary: HTTPS squall/nginx CPU: keep-alive ${m_ka}x (target <= 0.9) $(verdict "$m_ka" '<=' 0.9)," \
    "full handshake ${m_full}x (target <= 1.0) $(verdict "$m_full" '<=' 1.0)," \
    "wrk Connection: close (resumed) ${m_wc}x (target <= 1.0) $(verdict "$m_wc" '<=' 1.0);" \
    "idle TLS connection: squall ${m_mem_s} B, nginx ${m_mem_n} B (target <= 4096) $(verdict "$m_mem_s" '<=' 4096)"
} | tee "$out_md"
