#!/usr/bin/env bash
# The keep-alive request path's functions (SQ__HOT in src/internal.h) sit side by side in
# examples/hello: between the first and the last of them, no function that is not marked
# SQ__HOT in the sources.  A function of hello's path that lost its SQ__HOT lands elsewhere
# in the text, and a request touches one more page of code.
# Usage: hot_layout.sh HELLO_BINARY SOURCE_DIR
set -euo pipefail
bin=${1:?usage: hot_layout.sh HELLO_BINARY SOURCE_DIR}
srcdir=${2:?usage: hot_layout.sh HELLO_BINARY SOURCE_DIR}
exec /usr/bin/python3 - "$bin" "$srcdir" <<'PY'
import os, re, subprocess, sys
# the path of a plain keep-alive GET through examples/hello, as callgrind lists it (functions
# the compiler inlined everywhere are simply not in the symbol table)
hot = """act_put add_header body_ingest conn_after conn_io conn_task conn_write ep_poll known_name
on_input parse_next put_chunk put_head request_complete run_timers sq__coro_boot
sq__coro_main sq__coro_switch sq__http_conn_release sq__http_date_refresh sq__http_out_acquire
sq__http_resp_finish sq__http_resp_reset sq__http_set_remote_ip sq__http_want_close
sq__io_dispatch_at sq_coro_create sq_coro_resume sq_coro_set_name sq_http_parse_request
sq_http_set_header sq_http_write sq_in_coro sq_loop_now_ns sq_loop_run_once sq_loop_run_until
sq_loop_time sq_timer_active sq_timer_stop update_io""".split()
# every function the sources mark SQ__HOT (the web layer's path among them) may sit there too
marked = set(hot)
for root, _, files in os.walk(os.path.join(sys.argv[2], "src")):
    for f in files:
        if f.endswith((".c", ".S")):
            text = open(os.path.join(root, f)).read()
            marked.update(re.findall(r"^SQ__HOT\s[^(]*?\b(\w+)\(", text, re.M))
            if ".text.hot.squall" in text:
                marked.update(re.findall(r"^\s*\.globl\s+(\w+)", text, re.M))
out = subprocess.run(["nm", "-n", sys.argv[1]], check=True, capture_output=True, text=True).stdout
syms = []  # (address, base name) of the code symbols, in address order
for line in out.splitlines():
    f = line.split()
    if len(f) == 3 and f[1] in "tT":
        syms.append((int(f[0], 16), re.sub(r"\.(part|isra|constprop|cold|lto_priv)\.\d+.*$", "", f[2])))
where = [i for i, (_, n) in enumerate(syms) if n in hot]
found = {syms[i][1] for i in where}
if len(found) < len(hot) // 2:
    sys.exit(f"only {len(found)} of the {len(hot)} hot functions are in {sys.argv[1]}'s symbols")
lo, hi = min(where), max(where)
strangers = [f"{syms[i][1]} at {syms[i][0]:#x}" for i in range(lo, hi + 1) if syms[i][1] not in marked]
span = syms[hi][0] - syms[lo][0]
print(f"{len(found)} of hello's hot functions ({len(marked)} marked in the sources) in {span} "
      f"bytes ({syms[lo][0]:#x}-{syms[hi][0]:#x})")
if strangers:
    sys.exit("functions off the request path among the hot ones (an SQ__HOT missing?): " +
             ", ".join(strangers[:10]))
PY
