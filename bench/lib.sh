# Shared helpers of the bench/*.sh scripts; sourced, not run:
#   set -euo pipefail
#   . "$(dirname "$0")/lib.sh"
#   bench_init "BUILD_DIR [SECONDS]" "$@"
# Every helper works on the globals bench_init sets (tmp, pids, pin_server, ...).  Servers are
# started in the background with their PID in PID and in the pids array, which the EXIT trap
# kills.  All ports are on 127.0.0.1 and ephemeral, never fixed: squall's own servers are given
# port 0 and print the port they got (bench_start_listening); the others get a free_port
# (bench_start_free), so that two runs on one machine (two `make test`) never collide.

# bench_init USAGE ARGS...: checks that BUILD_DIR (the first of ARGS) is given, else prints
# "usage: bench/<script> USAGE" and exits 1.  Sets
#   build       the build directory (first argument)
#   here, src   bench/ and the source tree, as absolute paths
#   results     $SQ_BENCH_RESULTS or bench/results (created)
#   tmp         a fresh temporary directory, removed at exit with every PID in pids killed
#   tck         clock ticks per second (for cpu_ticks)
#   python      the system python3
#   pin_server, pin_load   "taskset -c 0" and "taskset -c 1" on 2 cores or more, else empty
bench_init() {
  local usage=$1
  shift
  if [ -z "${1:-}" ]; then
    echo "usage: bench/$(basename "$0") $usage" >&2
    exit 1
  fi
  build=$1
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  src=$(cd "$here/.." && pwd)
  results=${SQ_BENCH_RESULTS:-$here/results}
  mkdir -p "$results"
  tmp=$(mktemp -d)
  pids=()
  trap bench_cleanup EXIT
  tck=$(getconf CLK_TCK)
  python=/usr/bin/python3
  pin_server="" pin_load=""
  if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_server="taskset -c 0" pin_load="taskset -c 1"
  fi
}

# bench_cleanup: the EXIT trap: kills and reaps every PID in pids, removes $tmp.
bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}

# bench_stamp: "2026-01-01 12:00 UTC, 2 cores, x86_64", for report headers.
bench_stamp() {
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -m)"
}

# has_tornado6: true when $python imports Tornado 6 or later.
has_tornado6() {
  [ -x "$python" ] \
    && "$python" -c 'import tornado, sys; sys.exit(int(tornado.version_info[0] < 6))' 2>/dev/null
}

# bench_fit_fds VAR RESERVE [VERB]: raises the soft fd limit to the hard one; when the limit
# is still below $VAR + RESERVE, says so on stderr and lowers VAR to limit - RESERVE.
bench_fit_fds() {
  local var=$1 reserve=$2 verb=${3:-using} limit
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  limit=$(ulimit -n)
  if [ "$limit" -lt $((${!var} + reserve)) ]; then
    echo "fd limit $limit too low for ${!var} connections: $verb $((limit - reserve))" >&2
    printf -v "$var" '%s' $((limit - reserve))
  fi
}

# cpu_ticks PID: user + system CPU time of PID so far, in clock ticks (/proc/PID/stat).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# user_ticks PID: the user-space part of it (utime).
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }

# busy_ticks: CPU time all CPUs spent on anything but idling so far (/proc/stat: user, nice,
# system, irq, softirq, steal), in clock ticks.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# child_ticks VAR: sets VAR to the user + system CPU time of this shell's children that have
# been waited for (bash `times`; a command substitution's commands count once it returns), in
# clock ticks.  (A variable, not output: `times` in a command substitution would report the
# subshell's children.)
child_ticks() {
  times > "$tmp/.times"
  printf -v "$1" '%s' "$(awk -v hz="$tck" 'NR == 2 {split($1, u, /[ms]/); split($2, s, /[ms]/);
    printf "%d\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * hz}' "$tmp/.times")"
}

# now_s: seconds since the epoch, with nanoseconds.
now_s() { date +%s.%N; }

# other_load BUSY TICKS SECONDS: the CPU time other processes (and the hypervisor's steal)
# took while a measurement ran, in % of one core: BUSY (busy_ticks delta over the run) minus
# TICKS (what the server and the load generator used), over SECONDS.  A noisy neighbour
# shows here; on a quiet machine it is a few % (interrupts, the shell).
other_load() {
  awk -v b="$1" -v t="$2" -v s="$3" -v hz="$tck" 'BEGIN {v = (b - t) / hz / s * 100;
    if (v < 0) v = 0; printf "%.0f", v}'
}

# bench_require OUT_MD WHAT TOOL...: if a TOOL is not installed, says "(TOOL missing: WHAT
# skipped)" into OUT_MD (and on stdout) and exits 0: the script's figures are left out.
bench_require() {
  local md=$1 what=$2 tool
  shift 2
  for tool in "$@"; do
    if ! command -v "$tool" > /dev/null; then
      echo "($tool missing: $what skipped)" | tee "$md"
      exit 0
    fi
  done
}

# A measurement during which other processes took more than noise_max % of a core is run
# again, max_tries times at most (bench_quiet).
noise_max=${SQ_BENCH_NOISE_MAX:-10}
max_tries=${SQ_BENCH_TRIES:-3}

# bench_quiet WHAT CMD...: runs CMD (which measures through bench_pair or bench_measured and
# so sets NOISE_PCT) again, 5 s later, while other processes took more than noise_max % of a
# core, max_tries times at most; TRIES says how many it took.
bench_quiet() {
  local what=$1
  shift
  for TRIES in $(seq "$max_tries"); do
    "$@"
    [ "$NOISE_PCT" -gt "$noise_max" ] && [ "$TRIES" -lt "$max_tries" ] || return 0
    echo "$what: other processes took $NOISE_PCT % of a core: again in 5 s" >&2
    sleep 5
  done
}

# bench_measured PID CMD...: runs CMD (a load generator) with its stdout in OUT (its exit
# status ignored); sets SRV_TICKS to the CPU time PID (the server) used meanwhile, SRV_UTICKS
# to the user-space part of it, and NOISE_PCT to what other processes took (other_load: busy
# time minus the server's and CMD's).
bench_measured() {
  local pid=$1 before after b0 b1 c0 c1 t0 t1 u0 u1
  shift
  child_ticks c0
  before=$(cpu_ticks "$pid") u0=$(user_ticks "$pid") b0=$(busy_ticks) t0=$(now_s)
  OUT=$("$@") || true
  after=$(cpu_ticks "$pid") u1=$(user_ticks "$pid") b1=$(busy_ticks) t1=$(now_s)
  child_ticks c1
  SRV_TICKS=$((after - before))
  SRV_UTICKS=$((u1 - u0))
  NOISE_PCT=$(other_load $((b1 - b0)) $((SRV_TICKS + c1 - c0)) \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')")
}

# bench_pair PID_A PID_B B_FIRST CMD_A... -- CMD_B...: runs two load generators at the same
# time, CMD_A against the server PID_A and CMD_B against PID_B (CMD_B started first when
# B_FIRST is 1), their stdout in OUT_A and OUT_B (exit statuses ignored); sets TICKS_A and
# TICKS_B to the CPU time each server used meanwhile, UTICKS_A and UTICKS_B to the user-space
# part, and NOISE_PCT to what other processes took (busy time minus both servers' and both
# generators').  Two servers on one CPU for the same seconds see the same state of a noisy
# machine, which two runs one after the other need not: ratios of a pair are steadier.
bench_pair() {
  local pa=$1 pb=$2 bfirst=$3 x half=a
  shift 3
  local ca=() cb=() c0 c1 ta0 ta1 tb0 tb1 ua0 ua1 ub0 ub1 b0 b1 t0 t1 ja jb
  for x in "$@"; do
    if [ "$half" = a ] && [ "$x" = -- ]; then half=b
    elif [ "$half" = a ]; then ca+=("$x")
    else cb+=("$x"); fi
  done
  child_ticks c0
  ta0=$(cpu_ticks "$pa") ua0=$(user_ticks "$pa") tb0=$(cpu_ticks "$pb") ub0=$(user_ticks "$pb")
  b0=$(busy_ticks) t0=$(now_s)
  if [ "$bfirst" = 1 ]; then
    "${cb[@]}" > "$tmp/.pair.b" 2>&1 &
    jb=$!
    "${ca[@]}" > "$tmp/.pair.a" 2>&1 &
    ja=$!
  else
    "${ca[@]}" > "$tmp/.pair.a" 2>&1 &
    ja=$!
    "${cb[@]}" > "$tmp/.pair.b" 2>&1 &
    jb=$!
  fi
  wait "$ja" || true
  wait "$jb" || true
  ta1=$(cpu_ticks "$pa") ua1=$(user_ticks "$pa") tb1=$(cpu_ticks "$pb") ub1=$(user_ticks "$pb")
  b1=$(busy_ticks) t1=$(now_s)
  child_ticks c1
  OUT_A=$(cat "$tmp/.pair.a") OUT_B=$(cat "$tmp/.pair.b")
  TICKS_A=$((ta1 - ta0)) TICKS_B=$((tb1 - tb0)) UTICKS_A=$((ua1 - ua0)) UTICKS_B=$((ub1 - ub0))
  NOISE_PCT=$(other_load $((b1 - b0)) $((TICKS_A + TICKS_B + c1 - c0)) \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')")
}

# bench_pair_wrk PID_A URL_A PID_B URL_B B_FIRST SECONDS [WRK_ARGS...]: bench_pair with one
# `wrk -t1 -c100 -dSECONDS WRK_ARGS` on the load CPU against each URL; sets US_A and US_B
# (server CPU µs per request, cpu_us_per3), UU_A and UU_B (their user-space part), RPS_A and
# RPS_B, and, as bench_pair does, OUT_A, OUT_B and NOISE_PCT.
bench_pair_wrk() {
  local pa=$1 url_a=$2 pb=$3 url_b=$4 bfirst=$5 dur=$6
  shift 6
  bench_pair "$pa" "$pb" "$bfirst" \
    $pin_load wrk -t1 -c100 -d"${dur}s" "$@" "$url_a" -- \
    $pin_load wrk -t1 -c100 -d"${dur}s" "$@" "$url_b"
  wrk_parse "$OUT_A"
  US_A=$(cpu_us_per3 "$TICKS_A" "$WRK_REQS") UU_A=$(cpu_us_per3 "$UTICKS_A" "$WRK_REQS")
  RPS_A=$WRK_RPS
  wrk_parse "$OUT_B"
  US_B=$(cpu_us_per3 "$TICKS_B" "$WRK_REQS") UU_B=$(cpu_us_per3 "$UTICKS_B" "$WRK_REQS")
  RPS_B=$WRK_RPS
}

# try_note N: " (try N)" when N > 1, else nothing (for a table cell).
try_note() {
  if [ "$1" -gt 1 ]; then echo " (try $1)"; fi
}

# rss_kib PID: resident set size of PID in KiB (VmRSS of /proc/PID/status).
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# mib KIB: KIB as "12.3 MiB", or n/a when empty.
mib() { [ -n "${1:-}" ] && awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}' || echo n/a; }

# After a burst: squall trims its pools and heap once its connections have stayed down for
# memory_trim_delay (10 s by default); the memory benchmarks give their servers
# SQ_BENCH_TRIM_DELAY=$trim_delay (bench/web_bench and bench/ws_echo read it) and sample
# after trim_wait.
trim_delay=2
trim_wait=$((trim_delay + 2))
# rss_after_burst PID: PID's RSS (KiB) half a second after a burst's connections closed into
# CLOSED_KIB, and trim_wait s later, past the trim, into TRIMMED_KIB.
rss_after_burst() {
  sleep 0.5
  CLOSED_KIB=$(rss_kib "$1")
  sleep "$trim_wait"
  TRIMMED_KIB=$(rss_kib "$1")
}

# cpu_us_per TICKS N: TICKS of CPU time spread over N operations, in µs per operation
# (2 decimals; "nan" when N is 0).
cpu_us_per() {
  awk -v t="$1" -v hz="$tck" -v n="$2" \
    'BEGIN {if (n > 0) printf "%.2f", t / hz / n * 1e6; else print "nan"}'
}

# cpu_us_per3 TICKS N: the same with 3 decimals, for ratios of figures near 0.5 µs (pipelined),
# where a step of 0.01 would be 2 %.
cpu_us_per3() {
  awk -v t="$1" -v hz="$tck" -v n="${2:-0}" \
    'BEGIN {if (n > 0) printf "%.3f", t / hz / n * 1e6; else print "nan"}'
}

# ratio A B: A / B with 2 decimals, or n/a when A is not a number (empty, n/a, nan) or B is
# not a positive one.
ratio() {
  awk -v a="${1:-}" -v b="${2:-}" \
    'BEGIN {if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2f", a / b; else print "n/a"}'
}

# ratio3 A B: A / B with 3 decimals, or n/a as for ratio.
ratio3() {
  awk -v a="${1:-}" -v b="${2:-}" \
    'BEGIN {if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.3f", a / b; else print "n/a"}'
}

# median VALUES...: the median of the numeric values among them (the mean of the middle two,
# 3 decimals, for an even count), or n/a when there is none.
median() {
  printf '%s\n' "$@" | awk '$1 ~ /^[0-9.]+$/' | sort -g \
    | awk '{v[NR] = $1} END {if (!NR) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2];
           else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# verdict VALUE OP LIMIT: "met" when VALUE OP LIMIT holds (OP is <= or >=), "MISSED" when
# not, "n/a" when VALUE is empty or n/a.
verdict() {
  awk -v v="${1:-}" -v op="$2" -v l="$3" 'BEGIN {if (v == "" || v == "n/a") print "n/a";
    else if ((op == "<=" && v <= l) || (op == ">=" && v >= l)) print "met"; else print "MISSED"}'
}

# bench_spawn NAME CMD...: starts CMD pinned to the server CPU, stdout to $tmp/NAME.out and
# stderr to $tmp/NAME.err; sets PID and adds it to pids.
bench_spawn() {
  local name=$1
  shift
  $pin_server "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" &
  PID=$!
  pids+=("$PID")
}

# wait_line FILE REGEX SECONDS [PID]: until a line of FILE matches the extended REGEX (true),
# SECONDS pass or PID, when given, exits (false).
wait_line() {
  local i
  for i in $(seq $(($3 * 10))); do
    grep -Eq "$2" "$1" 2>/dev/null && return 0
    [ -z "${4:-}" ] || kill -0 "$4" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# bench_start_listening NAME CMD...: bench_spawn for a server that prints "listening on port
# N" once it listens (squall's programs given port 0); sets PID and PORT, both empty (and a
# note on stderr) when that line has not come within 15 s or the server exited.
bench_start_listening() {
  local name=$1
  bench_spawn "$@"
  PORT=""
  if wait_line "$tmp/$name.out" '^listening on port ' 15 "$PID"; then
    PORT=$(awk '/^listening on port / {print $4; exit}' "$tmp/$name.out")
    return 0
  fi
  echo "$name did not start: $(tail -3 "$tmp/$name.err")" >&2
  PID=""
}

# wait_http PORT PATH [SECONDS] [PID]: until http://127.0.0.1:PORT/PATH answers 2xx (true),
# SECONDS (default 15) pass or PID, when given, exits (false).  Each try gives up after 5 s.
# With BENCH_SCHEME=https, https:// (the certificate is not checked).
wait_http() {
  local i
  for i in $(seq $((${3:-15} * 10))); do
    curl -skf -m 5 -o /dev/null "${BENCH_SCHEME:-http}://127.0.0.1:$1$2" && return 0
    [ -z "${4:-}" ] || kill -0 "$4" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# free_port: prints a TCP port that is free on 127.0.0.1 (the kernel's pick for a bind to port
# 0, released at once), for a server that cannot be given port 0 and tell its port.  Another
# process may take the port before that server binds it: bench_start_free then retries.
free_port() {
  "${python:-python3}" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# bench_start_free START PATH [SECONDS]: picks a free_port, runs `START PORT` (a function that
# starts a server on 127.0.0.1:PORT in the background, setting PID), then waits up to SECONDS
# (default 15) for http://127.0.0.1:PORT/PATH (https:// with BENCH_SCHEME=https) to answer
# 2xx.  When the server exits instead (its bind failed: the port was taken in between), tries
# once more with another port.  Sets PORT and PID; on failure returns 1 with both empty (a
# server still running stays in pids).
bench_start_free() {
  local start=$1 path=$2 secs=${3:-15} try
  for try in 1 2; do
    PORT=$(free_port)
    "$start" "$PORT"
    if wait_http "$PORT" "$path" "$secs" "$PID" && kill -0 "$PID" 2>/dev/null; then
      return 0
    fi
    # still running but not answering: another port would not help
    kill -0 "$PID" 2>/dev/null && break
    [ "$try" -eq 2 ] || echo "$start: the server on port $PORT exited; trying another port" >&2
  done
  PORT="" PID=""
  return 1
}

# bench_nginx_conf LISTEN CONNECTIONS [MAIN] [HTTP]: writes $tmp/nginx.conf, an nginx with
# one worker in the foreground (pid, error log and temp files in $tmp, no access log) that
# answers every request with 200 "Hello, World!" as text/plain, like examples/hello.  LISTEN
# is the port plus listen options ("$port backlog=4096"), CONNECTIONS the
# worker_connections; MAIN and HTTP are extra directives for the main and http blocks.
bench_nginx_conf() {
  cat > "$tmp/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
${3:-}
events { worker_connections $2; }
http {
  access_log off;
  client_body_temp_path $tmp/body; proxy_temp_path $tmp/proxy; fastcgi_temp_path $tmp/fcgi;
  uwsgi_temp_path $tmp/uwsgi; scgi_temp_path $tmp/scgi;
  ${4:-}
  server {
    listen 127.0.0.1:$1;
    location / { default_type text/plain; return 200 "Hello, World!"; }
  }
}
CONF
}

# bench_nginx_start: starts nginx on $tmp/nginx.conf pinned to the server CPU (its output
# not redirected); sets PID (the master's, or the only process with master_process off).
bench_nginx_start() {
  $pin_server nginx -c "$tmp/nginx.conf" -p "$tmp" &
  PID=$!
  pids+=("$PID")
}

# bench_client_peer: the server the HTTP client benchmarks fetch from: nginx (one worker,
# `return 200 "Hello, World!"`, a keep-alive connection never closed for its request count)
# on a free port.  Sets URL; exits when it does not answer.
_client_peer_start() {
  bench_nginx_conf "$1 backlog=4096" 4096 "" "keepalive_requests 1000000;"
  bench_nginx_start
}
bench_client_peer() {
  bench_start_free _client_peer_start / 10 || true
  URL="http://127.0.0.1:${PORT:-0}/"
  [ "$(curl -s "$URL")" = "Hello, World!" ] \
    || { echo "nginx did not start: $(cat "$tmp/error.log" 2>/dev/null)" >&2; exit 1; }
}

# wrk_parse OUTPUT: reads a `wrk --latency` report into WRK_REQS (requests done), WRK_RPS,
# WRK_P50 and WRK_P99 (each empty when missing).
wrk_parse() {
  WRK_REQS=$(echo "$1" | awk '/requests in/ {print $1}')
  WRK_RPS=$(echo "$1" | awk '/Requests\/sec/ {print $2}')
  WRK_P50=$(echo "$1" | awk '$1 == "50%" {print $2}')
  WRK_P99=$(echo "$1" | awk '$1 == "99%" {print $2}')
}
