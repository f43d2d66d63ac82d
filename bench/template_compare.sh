#!/usr/bin/env bash
# Templates: CPU µs per render of a 1,000-row table (tests/web/templates/table.html: id, an
# escaped name, a price, three tags per row; about 185 KB of HTML) with squall's templates
# (bench/template_render.c), Jinja2 and Tornado's templates (bench/template_py.py, Debian's
# python3), in one run, each the best of 5 batches; three rounds of squall then the two
# Python engines, one after the other, so that a busy moment of the machine falls on one
# round's pair rather than on one engine: the ratios are the medians of the rounds'.
# Writes $SQ_BENCH_RESULTS/template.md (default bench/results).
# Usage: bench/template_compare.sh BUILD_DIR [RENDERS]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "BUILD_DIR [RENDERS]" "$@"
n=${2:-500}
tdir="$src/tests/web/templates"
if [ ! -x "$build/bench/template_render" ]; then
  echo "(bench/template_render not built: the template bench was skipped)"
  exit 0
fi
us() { echo "$1" | awk -v k="$2" '$0 ~ k {for (i = 1; i < NF; i++) if ($i == "cpu_us_per_render") print $(i + 1)}'; }
ss=() js=() ts=() rj=() rt=()
for r in 1 2 3; do
  sq=$("$build/bench/template_render" "$tdir" "$n")
  py=$("$python" "$here/template_py.py" "$tdir" "$(( n / 10 > 5 ? n / 10 : 5 ))")
  s=$(us "$sq" renders) j=$(us "$py" jinja2) t=$(us "$py" tornado)
  ss+=("$s") js+=("${j:-n/a}") ts+=("${t:-n/a}")
  rj+=("$(ratio3 "$s" "$j")") rt+=("$(ratio3 "$s" "$t")")
done
s=$(median "${ss[@]}") j=$(median "${js[@]}") t=$(median "${ts[@]}")
sj=$(median "${rj[@]}") st=$(median "${rt[@]}")
{
  echo "### Templates ($(bench_stamp))"
  echo
  echo "CPU µs per render of the 1,000-row table (\`bench/template_compare.sh BUILD $n\`):"
  echo
  echo "| engine | µs/render (median) | ratio to squall | per round |"
  echo "|---|---|---|---|"
  echo "| squall | $s | 1.00 | $(IFS=/; echo "${ss[*]}") |"
  echo "| Jinja2 (python3) | ${j:-n/a} | $(ratio "$j" "$s") | $(IFS=/; echo "${js[*]}") |"
  echo "| Tornado templates (python3) | ${t:-n/a} | $(ratio "$t" "$s") | $(IFS=/; echo "${ts[*]}") |"
  echo
  # three decimals: at two, 0.054 would read as a met 0.05; each the median of the rounds'
  echo "squall / Jinja2: $sj (rounds $(IFS=/; echo "${rj[*]}"); target <= 0.05: $(verdict "$sj" '<=' 0.05)); squall / Tornado: $st (rounds $(IFS=/; echo "${rt[*]}"); target <= 0.05: $(verdict "$st" '<=' 0.05))"
} | tee "$results/template.md"
