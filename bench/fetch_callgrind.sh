#!/usr/bin/env bash
# User-space instructions per fetch of squall's HTTP client, split between libcurl, libc,
# squall and the rest (OpenSSL, the dynamic loader...), counted by valgrind --tool=callgrind:
# noise-free, unlike the CPU times of bench/fetch_compare.sh, which drift by more between runs
# than squall's share of a fetch.  Two clients fetch "Hello, World!" from nginx (1 worker,
# not under valgrind) over 100 keep-alive connections: bench/fetch_curl (libcurl alone: the
# multi-socket API on a plain epoll loop, with the options squall gives a plain GET) and
# bench/fetch_load (squall's sq_fetch).  Each runs twice under callgrind, SHORT and LONG
# seconds; the difference of the two runs' counts over the difference of their fetches is the
# figure, so start-up (OpenSSL's initialization, 100 connects) and teardown cancel out.
# libcurl's own count moves by about 10 % from one run to the next (how many transfers each
# curl_multi_socket_action call finds ready, and how often its timer fires, depend on the
# timing), so the two totals' difference is not squall's share; the program's column (its
# own code: squall, or fetch_curl's loop) is steady.  The libc column is mostly libcurl's
# (malloc, memcpy, sscanf), squall's response objects included.
# Writes $SQ_BENCH_RESULTS/fetch_callgrind.md (default bench/results).
# Usage: bench/fetch_callgrind.sh BUILD_DIR [SHORT=2] [LONG=6]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "BUILD_DIR [SHORT] [LONG]" "$@"
short=${2:-2}
long=${3:-6}
out_md=$results/fetch_callgrind.md

bench_require "$out_md" "the client's instruction counts" valgrind callgrind_annotate nginx
for p in fetch_curl fetch_load; do
  [ -x "$build/bench/$p" ] || { echo "$build/bench/$p not built" >&2; exit 1; }
done

bench_client_peer
url=$URL

# count KEY PROG SECONDS: PROG under callgrind for SECONDS; sets REQS and writes
# $tmp/KEY.objs ("OBJECT IR" per line: the exclusive counts summed by shared object).
count() {
  local key=$1 prog=$2 secs=$3 f
  rm -f "$tmp/cg.$key".*
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$key.%p" \
    "$build/bench/$prog" "$url" "$secs" 100 > "$tmp/$key.out" 2> "$tmp/$key.err" || true
  REQS=$(awk '/: requests / {print $3; exit}' "$tmp/$key.out")
  f=$(ls "$tmp/cg.$key".* 2>/dev/null | head -1 || true)
  [ -n "$REQS" ] && [ -n "$f" ] || { REQS=""; return 0; }
  callgrind_annotate --inclusive=no --threshold=100 --auto=no "$f" 2>/dev/null \
    | awk '$1 ~ /^[0-9,]+$/ && $NF ~ /^\[.*\]$/ {
             n = $1; gsub(",", "", n); o = $NF; gsub(/^\[|\]$/, "", o); s[o] += n }
           END {for (o in s) print o, s[o]}' > "$tmp/$key.objs"
}

# class OBJECT: the column an object's instructions go to
class() {
  case "$1" in
    */libcurl.so*) echo curl ;;
    */libc.so*) echo libc ;;
    */bench/fetch_load | */bench/fetch_curl) echo own ;;
    *) echo other ;;
  esac
}

declare -A IR
# measure KEY PROG: the per-fetch counts of PROG into IR[KEY.total|curl|libc|own|other]
measure() {
  local key=$1 prog=$2 r1 r2 o v c
  count "$key.s" "$prog" "$short"
  r1=$REQS
  count "$key.l" "$prog" "$long"
  r2=$REQS
  if [ -z "$r1" ] || [ -z "$r2" ] || [ "$r2" -le "$r1" ]; then
    echo "$prog: no usable counts ($r1 and $r2 fetches): $(tail -2 "$tmp/$key.l.err")" >&2
    return 0
  fi
  declare -A d=([curl]=0 [libc]=0 [own]=0 [other]=0)
  while read -r o v; do c=$(class "$o"); d[$c]=$((d[$c] + v)); done < "$tmp/$key.l.objs"
  while read -r o v; do c=$(class "$o"); d[$c]=$((d[$c] - v)); done < "$tmp/$key.s.objs"
  local total=0
  for c in curl libc own other; do
    IR[$key.$c]=$(((d[$c]) / (r2 - r1)))
    total=$((total + d[$c]))
  done
  IR[$key.total]=$((total / (r2 - r1)))
  IR[$key.fetches]="$r1 / $r2"
}

measure curl fetch_curl
measure squall fetch_load

{
  echo "HTTP client, user-space instructions per fetch (callgrind; the difference between runs of $short s and $long s, 100 keep-alive connections to nginx, a 13-byte response; kernel not included)"
  echo
  echo '| client | instructions/fetch | libcurl | libc | the program (squall linked in) | other (OpenSSL, ld.so, ...) | fetches (short / long run) |'
  echo '|---|---|---|---|---|---|---|'
  for k in curl squall; do
    case $k in
      curl) name="libcurl $(pkg-config --modversion libcurl 2>/dev/null) alone (bench/fetch_curl)" ;;
      squall) name="squall sq_fetch (bench/fetch_load)" ;;
    esac
    if [ -n "${IR[$k.total]:-}" ]; then
      echo "| $name | ${IR[$k.total]} | ${IR[$k.curl]} | ${IR[$k.libc]} | ${IR[$k.own]} | ${IR[$k.other]} | ${IR[$k.fetches]} |"
    else
      echo "| $name | failed | | | | | |"
    fi
  done
  echo
  if [ -n "${IR[curl.total]:-}" ] && [ -n "${IR[squall.total]:-}" ]; then
    echo "summary: instructions/fetch: squall's own code ${IR[squall.own]} of ${IR[squall.total]} ($(awk -v a="${IR[squall.own]}" -v b="${IR[squall.total]}" 'BEGIN {printf "%.1f", 100 * a / b}') %), libcurl ${IR[squall.curl]}, libc ${IR[squall.libc]}; libcurl alone ${IR[curl.total]} (squall $(ratio "${IR[squall.total]}" "${IR[curl.total]}")x)"
  else
    echo "summary: instructions/fetch: a measurement failed"
  fi
} | tee "$out_md"
