#!/usr/bin/env bash
# HTTP/2, squall beside nginx and h2o in one run: bench/web_bench /plaintext (HTTPS with its
# CERT KEY arguments, h2 by ALPN; or plain, h2c by prior knowledge), nginx as one process
# (`return 200`, `listen … ssl http2` / `listen … http2`, ssl_protocols TLSv1.3) and h2o with
# one thread (a static hello.txt, as in bench/http_compare.sh), all with the same ECDSA P-256
# self-signed certificate made here with the openssl CLI, all answering "Hello, World!" as
# text/plain.  Servers pinned to CPU 0, h2load to CPU 1.  Measured:
#   CPU         h2load -c100 -m10 -t1 -D SECONDS (100 connections, 10 streams in flight on
#               each): server CPU µs per request, utime+stime of /proc/<pid>/stat over the
#               run (connection setup and TLS handshakes included: 100 of them per run).
#               ROUNDS rounds, the servers' order reversed every other round; the medians.
#   paired      then ROUNDS runs of squall and nginx (and of squall and h2o) loaded at the
#               same time, one h2load each (lib.sh's bench_pair): squall's CPU per request
#               over the other's in each; the summary's ratios are their medians.  Then as
#               many pairs of five h2load waves of N new connections with 2 requests each
#               (connection setup and, over TLS, full handshakes): their medians, reported.
#               Targets (over TLS): squall <= 0.5 x nginx and <= 1.0 x h2o.
#   idle memory N idle HTTP/2 connections (bench/h2_hold.py: one GET answered on each, then
#               held open) on a fresh server each: (RSS held - RSS before) / N, h2 over TLS
#               and h2c.  Then the RSS once they closed, and again 4 s later: squall (its
#               memory_trim_delay shortened to 2 s) frees what it pooled for the burst and
#               trims the heap by then, when N is 256 or more.
# Each CPU row also says how much of CPU 0 other processes took meanwhile (its busy time in
# /proc/stat minus the server's, in % of the run); a run during which that passed
# SQ_BENCH_NOISE_MAX (default 10) is run again, up to 3 tries, and the last one is kept.
# Writes $SQ_BENCH_RESULTS/h2.md (default bench/results).  h2o missing: its rows say so.
# Usage: bench/h2_compare.sh BUILD_DIR [SECONDS] [ROUNDS] [N]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "BUILD_DIR [SECONDS] [ROUNDS] [N]" "$@"
secs=${2:-5}
rounds=${3:-3}
n=${4:-1000}
# close the write end of a holder's fifo (fd 4) before killing the rest
trap 'exec 4>&- 2>/dev/null || true; bench_cleanup' EXIT
bench_fit_fds n 200 "lowering N to"
out_md=$results/h2.md

bench_require "$out_md" "the HTTP/2 comparison" h2load nginx openssl curl
if ! "$python" -c 'import h2' 2>/dev/null; then
  echo "(python3-h2 missing: the HTTP/2 comparison was skipped)" | tee "$out_md"
  exit 0
fi
have_h2o=$(command -v h2o >/dev/null && echo yes || echo no)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2> "$tmp/openssl.err" \
  || { echo "openssl could not make the certificate: $(cat "$tmp/openssl.err")" >&2; exit 1; }
printf 'Hello, World!' > "$tmp/hello.txt"

# url MODE PORT: the URL the clients use (h2 over TLS, or h2c).
url() {
  if [ "$1" = tls ]; then echo "https://127.0.0.1:$2/plaintext"; else echo "http://127.0.0.1:$2/plaintext"; fi
}

# h2_ok MODE PORT: the server answers "Hello, World!" over HTTP/2.
h2_ok() {
  local body
  if [ "$1" = tls ]; then
    body=$(curl -sk --http2 -m 5 "$(url "$1" "$2")" 2>/dev/null) || return 1
  else
    body=$(curl -s --http2-prior-knowledge -m 5 "$(url "$1" "$2")" 2>/dev/null) || return 1
  fi
  [ "$body" = "Hello, World!" ]
}

# wait_h2 MODE PORT PID: until h2_ok (true), 15 s pass or PID exits (false).
wait_h2() {
  local i
  for i in $(seq 150); do
    h2_ok "$1" "$2" && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# nginx_conf NAME MODE PORT: $tmp/NAME.conf, nginx as one process (master_process off) in the
# foreground; keepalive_requests high, since HTTP/2 streams count against it (its default
# 1000 would end each connection with a GOAWAY, and h2load would not reconnect).
nginx_conf() {
  local name=$1 mode=$2 port=$3 listen
  if [ "$mode" = tls ]; then listen="127.0.0.1:$port ssl http2 backlog=4096"; else listen="127.0.0.1:$port http2 backlog=4096"; fi
  mkdir -p "$tmp/$name"
  cat > "$tmp/$name.conf" <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $tmp/$name.pid;
error_log $tmp/$name.error.log;
worker_rlimit_nofile $((n + 1000));
events { worker_connections $((n + 1000)); }
http {
  access_log off;
  client_body_temp_path $tmp/$name/body; proxy_temp_path $tmp/$name/proxy;
  fastcgi_temp_path $tmp/$name/fcgi; uwsgi_temp_path $tmp/$name/uwsgi; scgi_temp_path $tmp/$name/scgi;
  ssl_certificate $tmp/cert.pem; ssl_certificate_key $tmp/key.pem;
  ssl_protocols TLSv1.3; ssl_session_tickets on;
  keepalive_timeout 120s; keepalive_requests 1000000;
  server {
    listen $listen;
    location / { default_type text/plain; return 200 "Hello, World!"; }
  }
}
CONF
}

# h2o_conf NAME MODE PORT: $tmp/NAME.conf, h2o with one thread serving hello.txt for every
# path (file.index on /, a file mapping on /plaintext), no gzip, no access log; idle HTTP/2
# connections kept for 120 s (its default is 10 s).
h2o_conf() {
  local name=$1 mode=$2 port=$3 ssl=""
  if [ "$mode" = tls ]; then
    ssl="  ssl:
    certificate-file: $tmp/cert.pem
    key-file: $tmp/key.pem
    minimum-version: TLSv1.2"
  fi
  cat > "$tmp/$name.conf" <<CONF
num-threads: 1
user: $(id -un)
pid-file: $tmp/$name.pid
error-log: $tmp/$name.error.log
http2-idle-timeout: 120
listen:
  host: 127.0.0.1
  port: $port
$ssl
hosts:
  default:
    paths:
      /plaintext:
        file.file: $tmp/hello.txt
        file.send-gzip: OFF
      /:
        file.dir: $tmp
        file.index: ['hello.txt']
        file.send-gzip: OFF
CONF
}

# start SERVER MODE: starts one server for MODE (tls or h2c), sets PID and PORT (both empty
# on failure, with a note on stderr).
start() {
  local server=$1 mode=$2 name="$1_$2_$RANDOM" try
  PID="" PORT=""
  case $server in
    squall)
      if [ "$mode" = tls ]; then
        bench_start_listening "$name" "$build/bench/web_bench" 0 "$tmp/cert.pem" "$tmp/key.pem"
      else
        bench_start_listening "$name" "$build/bench/web_bench" 0
      fi
      if [ -n "$PID" ] && ! wait_h2 "$mode" "$PORT" "$PID"; then
        echo "bench/web_bench ($mode) does not answer over HTTP/2: $(tail -3 "$tmp/$name.err")" >&2
        kill "$PID" 2>/dev/null || true
        PID="" PORT=""
      fi
      return 0 ;;
  esac
  # nginx and h2o get a free port; taken in between: once more with another
  for try in 1 2; do
    PORT=$(free_port)
    if [ "$server" = nginx ]; then
      nginx_conf "$name" "$mode" "$PORT"
      bench_spawn "$name" nginx -c "$tmp/$name.conf" -p "$tmp"
    else
      h2o_conf "$name" "$mode" "$PORT"
      bench_spawn "$name" h2o -c "$tmp/$name.conf"
    fi
    wait_h2 "$mode" "$PORT" "$PID" && return 0
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  done
  echo "$server ($mode) did not start: $(tail -3 "$tmp/$name.error.log" "$tmp/$name.err" 2>/dev/null)" >&2
  PID="" PORT=""
}

# stop PID: ends a server this script started and reaps it.
stop() {
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# cpu0_busy: busy clock ticks of CPU 0 so far (/proc/stat: all but idle and iowait).
cpu0_busy() { awk '$1 == "cpu0" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# h2load_ok OUTPUT: the requests that succeeded in the h2load runs of OUTPUT
h2load_ok() {
  awk '/^requests:/ {for (i = 1; i <= NF; i++) if ($i ~ /^succeeded/) s += $(i - 1)} END {print s + 0}' <<< "$1"
}
declare -A US RPS NOISE INFO PORTS PIDS
# h2run KEY PID MODE PORT: h2load against PID; server CPU µs per request into US[KEY],
# requests/s into RPS[KEY], CPU 0's other load in NOISE[KEY], what was negotiated in INFO[KEY].
h2run() {
  local key=$1 pid=$2 mode=$3 port=$4 try out b0 b1 s0 s1 t0 t1 ok
  for try in $(seq "$max_tries"); do
    s0=$(cpu_ticks "$pid") b0=$(cpu0_busy) t0=$(date +%s%N)
    out=$($pin_load h2load -c100 -m10 -t1 -D "$secs" "$(url "$mode" "$port")" 2>&1) || true
    s1=$(cpu_ticks "$pid") b1=$(cpu0_busy) t1=$(date +%s%N)
    NOISE[$key]=$(awk -v b=$((b1 - b0 - (s1 - s0))) -v hz="$tck" -v ns=$((t1 - t0)) \
      'BEGIN {v = b / hz / (ns / 1e9) * 100; if (v < 0) v = 0; printf "%.0f", v}')
    [ "${NOISE[$key]}" -gt "$noise_max" ] || break
    echo "$key: CPU 0 was ${NOISE[$key]}% busy with other processes: again" >&2
  done
  ok=$(h2load_ok "$out")
  US[$key]=$(cpu_us_per $((s1 - s0)) "${ok:-0}")
  RPS[$key]=$(echo "$out" | awk '/^finished in/ {gsub(/,/, "", $4); printf "%.0f", $4}')
  INFO[$key]=$(echo "$out" | awk -F': ' '/^TLS Protocol/ {p = $2} /^Cipher/ {c = $2}
    /^Application protocol/ {a = $2} END {print a (p ? ", " p ", " c : "")}')
  if [ "${ok:-0}" = 0 ]; then
    echo "$key: h2load failed: $(echo "$out" | tail -5)" >&2
    US[$key]=""
  fi
}

servers="squall nginx"
[ "$have_h2o" = no ] || servers="squall nginx h2o"
modes="tls h2c"

# --- CPU per request: every server up for the whole of it -------------------------------------
for s in $servers; do
  for m in $modes; do
    start "$s" "$m"
    PIDS[$s.$m]=$PID PORTS[$s.$m]=$PORT
  done
done
[ -n "${PIDS[squall.tls]}" ] && [ -n "${PIDS[squall.h2c]}" ] || { echo "bench/web_bench did not start" >&2; exit 1; }

for r in $(seq "$rounds"); do
  order=$servers
  [ $((r % 2)) -eq 1 ] || order=$(echo "$servers" | tr ' ' '\n' | tac | tr '\n' ' ')
  for s in $order; do
    for m in $modes; do
      [ -n "${PIDS[$s.$m]}" ] || continue
      h2run "$s.$m.$r" "${PIDS[$s.$m]}" "$m" "${PORTS[$s.$m]}"
    done
  done
done
# --- paired: squall and each other server loaded at the same time -------------------------------
# bench_pair: both servers on CPU 0 for the same seconds, one h2load each on CPU 1 (squall's
# first in odd rounds).  The rows above run one after the other on a machine whose speed
# drifts between runs; the two halves of a pair see the same machine, so the summary's ratios
# come from the pairs: the median over the rounds of squall's CPU per request over the other's.
declare -A PAIRED PAIRED_ROUNDS FRESH FRESH_ROUNDS
# h2_load KIND MODE PORT: one half of a pair's load: "kept" (h2load -c100 -m10 for SECONDS) or
# "waves" (five h2load runs of N new connections with 2 requests each)
h2_load() {
  local i
  if [ "$1" = kept ]; then
    h2load -c100 -m10 -t1 -D "$secs" "$(url "$2" "$3")" 2>&1 || true
  else
    for i in 1 2 3 4 5; do h2load -n $((2 * n)) -c "$n" -m1 -t1 "$(url "$2" "$3")" 2>&1 || true; done
  fi
}
# pair_rounds SERVER MODE KIND: ROUNDS pairs of squall and SERVER, each loaded by h2_load KIND;
# the median of squall's CPU per request over SERVER's into PR, the pairs' ratios into PRR
# (a pair during which other processes took more than noise_max % of a core runs again)
pair_rounds() {
  local o=$1 m=$2 kind=$3 r rs=() fns
  fns=$(declare -f url h2_load)
  for r in $(seq "$rounds"); do
    bench_quiet "$o $m $kind round $r" bench_pair "${PIDS[squall.$m]}" "${PIDS[$o.$m]}" $((1 - r % 2)) \
      $pin_load bash -c "$fns; secs=$secs n=$n; h2_load $kind $m ${PORTS[squall.$m]}" -- \
      $pin_load bash -c "$fns; secs=$secs n=$n; h2_load $kind $m ${PORTS[$o.$m]}"
    rs+=("$(ratio3 "$(cpu_us_per3 "$TICKS_A" "$(h2load_ok "$OUT_A")")" \
      "$(cpu_us_per3 "$TICKS_B" "$(h2load_ok "$OUT_B")")")")
  done
  PR=$(median "${rs[@]}") PRR=$(IFS=/; echo "${rs[*]}")
}
for o in nginx h2o; do
  for m in $modes; do
    [ -n "${PIDS[$o.$m]:-}" ] || continue
    pair_rounds "$o" "$m" kept
    PAIRED[$o.$m]=$PR PAIRED_ROUNDS[$o.$m]=$PRR
    # new connections: setting a connection up (and the handshake, over TLS) is most of the work
    pair_rounds "$o" "$m" waves
    FRESH[$o.$m]=$PR FRESH_ROUNDS[$o.$m]=$PRR
  done
done

for s in $servers; do
  for m in $modes; do stop "${PIDS[$s.$m]}"; done
done

# --- idle memory: a fresh server each ---------------------------------------------------------
declare -A MEM MEMNOTE AFTER
export SQ_BENCH_TRIM_DELAY=$trim_delay
hold() {
  local s=$1 m=$2 before after="" hp ok
  start "$s" "$m"
  [ -n "$PID" ] || { MEMNOTE[$s.$m]="did not start"; return 0; }
  local pid=$PID port=$PORT
  # warm-up: pools, OpenSSL's and nghttp2's first allocations
  $pin_load h2load -n 2000 -c 10 -m 10 "$(url "$m" "$port")" > /dev/null 2>&1 || true
  sleep 0.3
  before=$(rss_kib "$pid")
  rm -f "$tmp/hold.in"
  mkfifo "$tmp/hold.in"
  $pin_load "$python" "$here/h2_hold.py" $([ "$m" = tls ] && echo --tls) "$port" /plaintext "$n" \
    < "$tmp/hold.in" > "$tmp/hold.out" 2> "$tmp/hold.err" &
  hp=$!
  pids+=("$hp")
  exec 4> "$tmp/hold.in"
  wait_line "$tmp/hold.out" '^answered ' 180 && sleep 0.5 && after=$(rss_kib "$pid")
  ok=$(sed -n 's/^answered [0-9]* ok=\([0-9]*\)$/\1/p' "$tmp/hold.out")
  if [ -n "$after" ] && [ "${ok:-0}" = "$n" ]; then
    MEM[$s.$m]=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN {printf "%.0f", (a - b) * 1024 / n}')
  else
    MEMNOTE[$s.$m]="${ok:-0} of $n answered 2xx $(sort "$tmp/hold.err" | uniq -c | head -2 | tr '\n' ' ')"
  fi
  exec 4>&-
  wait "$hp" 2>/dev/null || true
  # after the burst: RSS once the held connections closed, and trim_wait s later (squall's
  # memory_trim_delay is shortened to trim_delay; it trims after bursts of 256 or more)
  if [ -n "$after" ] && [ "$n" -ge 256 ]; then
    rss_after_burst "$pid"
    AFTER[$s.$m]="$(mib "$after") > $(mib "$CLOSED_KIB") > $(mib "$TRIMMED_KIB")"
  fi
  stop "$pid"
}
for s in $servers; do
  for m in $modes; do hold "$s" "$m"; done
done

# --- the report -------------------------------------------------------------------------------
label() {
  case $1 in
    squall) echo "squall web_bench /plaintext" ;;
    nginx) echo "nginx 1 process (return 200)" ;;
    h2o) echo "h2o 1 thread (static file)" ;;
  esac
}
declare -A MED
{
  echo "HTTP/2: h2load -c100 -m10 -t1 -D ${secs} (100 connections x 10 streams), ${rounds} rounds, medians; server on CPU 0, h2load on CPU 1; $(bench_stamp)"
  echo
  echo '| server | mode | negotiated | requests/s | server CPU µs/request | per round | CPU 0 other load | RSS per idle connection ('"$n"' held) |'
  echo '|---|---|---|---|---|---|---|---|'
  for s in squall nginx h2o; do
    for m in $modes; do
      if [ "$s" = h2o ] && [ "$have_h2o" = no ]; then
        printf '| %s | %s | - | - | - | - | - | not installed |\n' "$(label "$s")" "$m"
        continue
      fi
      us=() rps=() noise=() info=""
      for r in $(seq "$rounds"); do
        us+=("${US[$s.$m.$r]:-}") rps+=("${RPS[$s.$m.$r]:-}") noise+=("${NOISE[$s.$m.$r]:-}%")
        info=${INFO[$s.$m.$r]:-$info}
      done
      MED[$s.$m]=$(median "${us[@]}")
      printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$s")" "$m" "${info:-n/a}" \
        "$(median "${rps[@]}")" "${MED[$s.$m]}" "$(IFS=/; echo "${us[*]}")" "$(IFS=/; echo "${noise[*]}")" \
        "${MEM[$s.$m]:+${MEM[$s.$m]} B}${MEMNOTE[$s.$m]:-}"
    done
  done
  echo
  echo "paired (squall's CPU per request over the other's, both loaded at once; median and rounds):" \
    "nginx TLS ${PAIRED[nginx.tls]:-n/a} (${PAIRED_ROUNDS[nginx.tls]:-}), h2c ${PAIRED[nginx.h2c]:-n/a} (${PAIRED_ROUNDS[nginx.h2c]:-});" \
    "h2o TLS ${PAIRED[h2o.tls]:-n/a} (${PAIRED_ROUNDS[h2o.tls]:-}), h2c ${PAIRED[h2o.h2c]:-n/a} (${PAIRED_ROUNDS[h2o.h2c]:-})"
  echo
  echo "new connections (the same pairs, h2load waves of $n new connections with 2 requests each, 5 waves a round):" \
    "nginx TLS ${FRESH[nginx.tls]:-n/a} (${FRESH_ROUNDS[nginx.tls]:-}), h2c ${FRESH[nginx.h2c]:-n/a} (${FRESH_ROUNDS[nginx.h2c]:-});" \
    "h2o TLS ${FRESH[h2o.tls]:-n/a} (${FRESH_ROUNDS[h2o.tls]:-}), h2c ${FRESH[h2o.h2c]:-n/a} (${FRESH_ROUNDS[h2o.h2c]:-})"
  echo
  echo "RSS with the $n idle connections held > once they closed > $trim_wait s later (squall's memory_trim_delay $trim_delay s):" \
    "squall TLS ${AFTER[squall.tls]:-n/a}, h2c ${AFTER[squall.h2c]:-n/a};" \
    "nginx TLS ${AFTER[nginx.tls]:-n/a}, h2c ${AFTER[nginx.h2c]:-n/a};" \
    "h2o TLS ${AFTER[h2o.tls]:-n/a}, h2c ${AFTER[h2o.h2c]:-n/a}"
  rn=${PAIRED[nginx.tls]:-n/a} rh=${PAIRED[h2o.tls]:-n/a}
  echo
  echo "summary: over TLS (h2), squall's server CPU per request is ${rn}x nginx's (target <= 0.5) $(verdict "$rn" '<=' 0.5)" \
    "and ${rh}x h2o's (target <= 1.0) $(verdict "$rh" '<=' 1.0), paired;" \
    "over h2c ${MED[squall.h2c]} µs: ${PAIRED[nginx.h2c]:-n/a}x nginx," \
    "${PAIRED[h2o.h2c]:-n/a}x h2o;" \
    "idle HTTP/2 connection: squall ${MEM[squall.tls]:-n/a} B (TLS) / ${MEM[squall.h2c]:-n/a} B (h2c)," \
    "nginx ${MEM[nginx.tls]:-n/a} / ${MEM[nginx.h2c]:-n/a} B, h2o ${MEM[h2o.tls]:-n/a} / ${MEM[h2o.h2c]:-n/a} B"
} | tee "$out_md"
