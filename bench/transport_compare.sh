#!/usr/bin/env bash
# Plain HTTP through two builds of squall, to see what a change cost: examples/hello of
# OLD_BUILD and of NEW_BUILD (each a release build directory, e.g. one of the commit before
# the transport layer, 7dfd7c9^, made in a git worktree), both up at once and pinned to CPU 0,
# loaded AT THE SAME TIME by one wrk each on CPU 1 (lib.sh's bench_pair): keep-alive (wrk -t1
# -c100) and pipelined x16 (bench/pipeline.lua), SECONDS each, ROUNDS rounds.  Server CPU µs
# per request from utime+stime of /proc/<pid>/stat; the ratio new/old is taken within each
# run and its median reported.  Target: within 3 % (0.97 to 1.03).  A run during which other
# processes took more than SQ_BENCH_NOISE_MAX % of a core (default 10; /proc/stat busy time
# minus the servers' and wrk's) is run again, up to
# SQ_BENCH_TRIES (default 3) tries, 5 s apart.  Writes $SQ_BENCH_RESULTS/transport.md (default bench/results).
#   git worktree add /tmp/squall-old 7dfd7c9^
#   cmake -S /tmp/squall-old -B /tmp/squall-old/build/release -DCMAKE_BUILD_TYPE=Release \
#     -DSQ_BUILD_TESTS=OFF && cmake --build /tmp/squall-old/build/release -j
#   bench/transport_compare.sh /tmp/squall-old/build/release build/release
# bench/run.sh runs it when SQ_BENCH_BASELINE names the old build directory.
# Usage: bench/transport_compare.sh OLD_BUILD NEW_BUILD [SECONDS] [ROUNDS]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "OLD_BUILD NEW_BUILD [SECONDS] [ROUNDS]" "$@"
old=$1
new=${2:?usage: bench/transport_compare.sh OLD_BUILD NEW_BUILD [SECONDS] [ROUNDS]}
secs=${3:-10}
rounds=${4:-5}
out_md=$results/transport.md
bench_require "$out_md" "the transport comparison" wrk
describe() { # describe BUILD_DIR: the commit its source tree is at
  local srcdir
  srcdir=$(awk -F= '/^CMAKE_HOME_DIRECTORY:/ {print $2}' "$1/CMakeCache.txt" 2>/dev/null)
  if [ -n "$srcdir" ] && git -C "$srcdir" rev-parse --short HEAD >/dev/null 2>&1; then
    echo "$(git -C "$srcdir" rev-parse --short HEAD)$(git -C "$srcdir" diff --quiet HEAD -- src include 2>/dev/null || echo '+changes') ($srcdir)"
  else
    echo "$1"
  fi
}

bench_start_listening old "$old/examples/hello" 0
old_pid=$PID old_port=$PORT
bench_start_listening new "$new/examples/hello" 0
new_pid=$PID new_port=$PORT
[ -n "$old_pid" ] && [ -n "$new_pid" ] || { echo "examples/hello did not start" >&2; exit 1; }
wait_http "$old_port" / && wait_http "$new_port" / || { echo "examples/hello does not answer" >&2; exit 1; }

declare -A US RPS NOISE
# pair TEST ROUND [wrk args]: both builds loaded at the same time (bench_pair_wrk; the new one's
# wrk first in even rounds); bench_quiet runs it again while other processes took more than
# noise_max % of a core, and TRIES says how many tries it took.
pair() {
  local test=$1 r=$2
  shift 2
  bench_pair_wrk "$old_pid" "http://127.0.0.1:$old_port/" "$new_pid" "http://127.0.0.1:$new_port/" \
    $((1 - r % 2)) "$secs" "$@"
  US[$test.old.$r]=$US_A RPS[$test.old.$r]=$RPS_A US[$test.new.$r]=$US_B RPS[$test.new.$r]=$RPS_B
  NOISE[$test.$r]=$NOISE_PCT
}
# not slower by more than 3 % (faster is fine)
within() { awk -v v="$1" 'BEGIN {if (v == "n/a") print "n/a"; else if (v <= 1.03) print "met"; else print "MISSED"}'; }

rows="" ka=() pipe=() ka_old=() ka_new=() pipe_old=() pipe_new=()
for r in $(seq "$rounds"); do
  bench_quiet "round $r ka" pair ka "$r"
  ka_tries=$TRIES
  bench_quiet "round $r pipe" pair pipe "$r" -s "$here/pipeline.lua"
  pipe_tries=$TRIES
  ka+=("$(ratio3 "${US[ka.new.$r]}" "${US[ka.old.$r]}")")
  pipe+=("$(ratio3 "${US[pipe.new.$r]}" "${US[pipe.old.$r]}")")
  ka_old+=("${US[ka.old.$r]}") ka_new+=("${US[ka.new.$r]}")
  pipe_old+=("${US[pipe.old.$r]}") pipe_new+=("${US[pipe.new.$r]}")
  rows+="| $r | keep-alive | ${US[ka.old.$r]} | ${RPS[ka.old.$r]} | ${US[ka.new.$r]} | ${RPS[ka.new.$r]} | ${ka[-1]} | ${NOISE[ka.$r]}$(try_note "$ka_tries") |"$'\n'
  rows+="| $r | pipelined x16 | ${US[pipe.old.$r]} | ${RPS[pipe.old.$r]} | ${US[pipe.new.$r]} | ${RPS[pipe.new.$r]} | ${pipe[-1]} | ${NOISE[pipe.$r]}$(try_note "$pipe_tries") |"$'\n'
done
m_ka=$(median "${ka[@]}") m_pipe=$(median "${pipe[@]}")
{
  echo "plain HTTP, examples/hello: old $(describe "$old") vs new $(describe "$new"); $(bench_stamp)"
  echo "wrk -t1 -c100, ${secs} s per run, both builds loaded at the same time (each about half of CPU 0), $rounds rounds; server CPU µs/request"
  echo
  echo '| scenario | old | new | new / old (median of rounds) | target | result |'
  echo '|---|---|---|---|---|---|'
  echo "| keep-alive | $(median "${ka_old[@]}") | $(median "${ka_new[@]}") | $m_ka | <= 1.03 | $(within "$m_ka") |"
  echo "| pipelined x16 | $(median "${pipe_old[@]}") | $(median "${pipe_new[@]}") | $m_pipe | <= 1.03 | $(within "$m_pipe") |"
  echo
  echo '| round | scenario | old µs/req | old req/s | new µs/req | new req/s | new / old | noise % |'
  echo '|---|---|---|---|---|---|---|---|'
  printf '%s' "$rows"
  echo
  echo "noise: CPU other processes (and the hypervisor's steal) took during each run, in % of one core; a run above $noise_max % is run again (at most $max_tries tries)."
  echo
  echo "summary: new/old server CPU per request: keep-alive ${m_ka}x, pipelined ${m_pipe}x" \
    "(target within 3 %) keep-alive $(within "$m_ka"), pipelined $(within "$m_pipe")"
} | tee "$out_md"
