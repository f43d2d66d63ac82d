#!/usr/bin/env bash
# HTTP clients side by side: squall's sq_fetch (bench/fetch_load.c), Tornado's
# AsyncHTTPClient (simple_httpclient, max_clients 100) and Node's built-in fetch, each doing
# 100 concurrent keep-alive GETs of a small response ("Hello, World!", `return 200`) from
# nginx (1 worker) for SECONDS, one client after the other.  nginx is pinned to CPU 0 and the
# client to CPU 1; client CPU time per request is utime+stime of the client process over its
# run (getrusage / process.cpuUsage, measured by the client itself).  Clients that are not
# installed get a "not installed" row.  The first row is the floor (bench/floor_client.c: one
# epoll set, one write per request and one read per response, no parsing beyond
# Content-Length); every row's CPU per request is also given as a ratio to it.  The second
# row is libcurl alone (bench/fetch_curl.c: the same multi-socket driving and per-transfer
# options as squall's client, from a plain epoll loop, without coroutines, futures or response
# objects): squall's row minus it is squall's own share of a fetch.
# Writes the table to $SQ_BENCH_RESULTS/fetch.md (default bench/results).
# Usage: bench/fetch_compare.sh BUILD_DIR [SECONDS]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "BUILD_DIR [SECONDS]" "$@"
secs=${2:-10}
conc=100

command -v nginx >/dev/null || { echo "nginx not installed: nothing to fetch from" >&2; exit 1; }
[ -x "$build/bench/fetch_load" ] || { echo "$build/bench/fetch_load not built" >&2; exit 1; }
[ -x "$build/bench/floor_client" ] || { echo "$build/bench/floor_client not built" >&2; exit 1; }
[ -x "$build/bench/fetch_curl" ] || { echo "$build/bench/fetch_curl not built" >&2; exit 1; }

bench_client_peer
url=$URL

declare -A RPS US N E S C FAIL
# run_client KEY COMMAND...: one run of a client; its requests, errors, seconds and CPU
# seconds are added to KEY's totals (N, E, S, C) and LAST_US is its CPU µs per request.
# A client that fails leaves its last error line in FAIL[KEY].
run_client() {
  local key=$1 out line reqs us; shift
  LAST_US=""
  if ! out=$($pin_load "$@" 2>"$tmp/$key.err"); then
    FAIL[$key]=$(tail -1 "$tmp/$key.err" | tr '|' '/')
    return 0
  fi
  line=$(echo "$out" | grep -E '^[a-z]+: requests ' | tail -1)
  reqs=$(echo "$line" | awk '{print $3}')
  us=$(echo "$line" | awk '{print $11}')
  N[$key]=$((${N[$key]:-0} + reqs))
  E[$key]=$((${E[$key]:-0} + $(echo "$line" | awk '{print $5}')))
  S[$key]=$(awk -v a="${S[$key]:-0}" -v b="$(echo "$line" | awk '{print $7}')" 'BEGIN {print a + b}')
  C[$key]=$(awk -v a="${C[$key]:-0}" -v n="$reqs" -v u="$us" 'BEGIN {print a + n * u / 1e6}')
  LAST_US=$us
}
# print_row KEY NAME: KEY's table row from its totals.
print_row() {
  local key=$1 name=$2
  if [ -n "${FAIL[$key]:-}" ] || [ -z "${N[$key]:-}" ]; then
    printf '| %s | - | - | - | - | failed: %s |\n' "$name" "${FAIL[$key]:-no output}"
    return 0
  fi
  RPS[$key]=$(awk -v n="${N[$key]}" -v s="${S[$key]}" 'BEGIN {if (s > 0) printf "%.1f", n / s; else print 0}')
  US[$key]=$(awk -v n="${N[$key]}" -v c="${C[$key]}" 'BEGIN {if (n > 0) printf "%.2f", c / n * 1e6; else print 0}')
  local ratio=-
  [ -n "${US[floor]:-}" ] && ratio=$(awk -v a="${US[$key]}" -v b="${US[floor]}" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}')
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "${RPS[$key]}" "${US[$key]}" "$ratio" "${N[$key]}" "${E[$key]}"
}
# row KEY NAME COMMAND...: run one client for SECONDS, print its table row.
row() {
  local key=$1 name=$2; shift 2
  run_client "$key" "$@"
  print_row "$key" "$name"
}

# libcurl alone and squall: SLICES alternating runs of SECONDS / SLICES each (order reversed
# every other slice), so that both meet the machine in the same minutes.  This machine's CPU
# per request drifts by 10-20 % from one run to the next, more than squall's share of a
# fetch: a ratio from two runs a minute apart says little, the median of the slices' ratios
# does.
slices=${SQ_FETCH_SLICES:-3}
slice_secs=$(awk -v s="$secs" -v n="$slices" 'BEGIN {printf "%.2f", s / n}')
curl_name="libcurl $(pkg-config --modversion libcurl 2>/dev/null) alone (bench/fetch_curl: multi socket API on epoll, squall's options)"
SLICE_R=()
pair_rows() {
  local i a b
  for i in $(seq "$slices"); do
    if [ $((i % 2)) -eq 1 ]; then
      run_client curl "$build/bench/fetch_curl" "$url" "$slice_secs" "$conc"; a=$LAST_US
      run_client squall "$build/bench/fetch_load" "$url" "$slice_secs" "$conc"; b=$LAST_US
    else
      run_client squall "$build/bench/fetch_load" "$url" "$slice_secs" "$conc"; b=$LAST_US
      run_client curl "$build/bench/fetch_curl" "$url" "$slice_secs" "$conc"; a=$LAST_US
    fi
    [ -n "$a" ] && [ -n "$b" ] && SLICE_R+=("$(ratio3 "$b" "$a")")
  done
  print_row curl "$curl_name"
  print_row squall "squall sq_fetch (libcurl multi)"
}

{
  echo "HTTP clients: $conc concurrent keep-alive GETs of a 13-byte response from nginx (1 worker), ${secs} s each (libcurl alone and squall in $slices alternating slices of ${slice_secs} s); client on CPU 1, nginx on CPU 0"
  echo
  echo '| client | requests/s | client CPU µs/request | ÷ floor | requests | errors |'
  echo '|---|---|---|---|---|---|'
  row floor "floor (bench/floor_client: epoll, one write and one read per request)" \
    "$build/bench/floor_client" "$url" "$secs" "$conc"
  pair_rows
  if has_tornado6; then
    row tornado "Tornado $("$python" -c 'import tornado; print(tornado.version)') AsyncHTTPClient (simple)" \
      "$python" "$here/fetch_tornado.py" "$url" "$secs" "$conc"
  else
    echo '| Tornado AsyncHTTPClient | - | - | - | - | not installed (python3-tornado 6) |'
  fi
  if command -v node >/dev/null; then
    row node "Node.js $(node --version) fetch" node "$here/fetch_node.mjs" "$url" "$secs" "$conc"
  else
    echo '| Node.js fetch | - | - | - | - | not installed |'
  fi
  echo
  summary="summary:"
  if [ -n "${US[squall]:-}" ] && [ -n "${US[floor]:-}" ]; then
    summary+=$(awk -v a="${US[squall]}" -v b="${US[floor]}" \
      'BEGIN {if (b > 0) printf " squall %.2fx the floor'"'"'s CPU per request;", a / b}')
  fi
  if [ ${#SLICE_R[@]} -gt 0 ] && [ -n "${US[curl]:-}" ]; then
    m=$(median "${SLICE_R[@]}")
    summary+=$(awk -v m="$m" -v b="${US[curl]}" -v r="$(IFS=/; echo "${SLICE_R[*]}")" \
      'BEGIN {printf " %.2fx libcurl alone (squall'"'"'s own share %+.2f µs; median of %s, the alternating slices'"'"' ratios);", m, (m - 1) * b, r}')
  fi
  if [ -n "${RPS[squall]:-}" ] && [ -n "${RPS[tornado]:-}" ]; then
    summary+=$(awk -v a="${RPS[squall]}" -v b="${RPS[tornado]}" -v c="${US[squall]}" -v d="${US[tornado]}" \
      'BEGIN {if (b > 0 && c > 0) printf " squall %.1fx Tornado requests/s, %.1fx less CPU per request;", a / b, d / c}')
  fi
  if [ -n "${RPS[squall]:-}" ] && [ -n "${RPS[node]:-}" ]; then
    summary+=$(awk -v a="${RPS[squall]}" -v b="${RPS[node]}" -v c="${US[squall]}" -v d="${US[node]}" \
      'BEGIN {if (b > 0 && c > 0) printf " %.1fx Node fetch requests/s, %.1fx less CPU per request", a / b, d / c}')
  fi
  echo "$summary"
} | tee "$tmp/table"
{
  echo "# HTTP client comparison"
  echo
  echo "$(bench_stamp), command: bench/fetch_compare.sh $build $secs"
  echo
  cat "$tmp/table"
} > "$results/fetch.md"
