# Shared helpers of the bench smoke tests (tests/*/…bench*smoke.sh); sourced, not run:
#   set -euo pipefail
#   . "$(dirname "$0")/../bench_smoke_lib.sh"
# Sets build ($SQ_BUILD_DIR, required), src ($SQ_SOURCE_DIR or the tree above tests/) and out,
# a temporary directory removed at exit that the bench scripts write their tables into
# (SQ_BENCH_RESULTS), so that bench/results is never touched.
build=${SQ_BUILD_DIR:?SQ_BUILD_DIR not set}
src=${SQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# smoke_skip_unless CMD...: exits 0 with "skipped: ... not installed" unless every CMD is
# on PATH.
smoke_skip_unless() {
  local c
  for c in "$@"; do
    if ! command -v "$c" >/dev/null; then
      echo "skipped: $(echo "$*" | sed 's/ /, /g; s/\(.*\), /\1 or /') not installed"
      exit 0
    fi
  done
}

# smoke_run NAME SCRIPT ARGS...: runs bench/SCRIPT with ARGS and SQ_BENCH_RESULTS=$out, and
# without the benches' reruns of noisy runs (SQ_BENCH_TRIES=1, SQ_BENCH_NOISE_MAX=1000): a
# smoke test checks that a script runs and writes its table, and under ctest -j the other
# tests make every run "noisy", whose reruns (5 s apart, up to 3 tries) took the HTTPS,
# HTTP/2 and transport smoke past its 120 s on a slower machine;
# stdout to $out/NAME.stdout (then shown) and stderr to $out/NAME.stderr; sets SMOKE_RC and
# SMOKE_SECS.  On a non-zero exit prints "FAIL: bench/SCRIPT exited N" and the stderr, and
# returns 1.
smoke_run() {
  local name=$1 script=$2 t0=$SECONDS
  shift 2
  SMOKE_RC=0
  SQ_BENCH_TRIES=1 SQ_BENCH_NOISE_MAX=1000 SQ_BENCH_RESULTS=$out "$src/bench/$script" "$@" \
    > "$out/$name.stdout" 2> "$out/$name.stderr" || SMOKE_RC=$?
  SMOKE_SECS=$((SECONDS - t0))
  [ -z "${SMOKE_HEADING:-}" ] || echo "== $name (exit $SMOKE_RC, $SMOKE_SECS s)"
  cat "$out/$name.stdout"
  if [ "$SMOKE_RC" -ne 0 ]; then
    echo "FAIL: bench/$script exited $SMOKE_RC"
    cat "$out/$name.stderr"
    return 1
  fi
}

# expect_line FILE REGEX WHAT: exits 1 with "FAIL: WHAT" unless a line of FILE matches the
# extended REGEX.
expect_line() {
  grep -Eq "$2" "$1" || { echo "FAIL: $3"; exit 1; }
}
