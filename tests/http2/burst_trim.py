"""The trim after a burst over HTTP/2 (sq_http_settings.memory_trim_delay): h2load opens 300
connections at once (h2c, then TLS by ALPN) with 2 requests each; once they have closed and
half a second passed, each server frees what it pooled for them (stream objects, mapped
frame buffers, coroutine stacks) and trims the heap, which its debug log says once.  Under
ASan that frees every pooled block; the server must go on serving, and exit cleanly."""
import re
import subprocess
import time

import h2util as u
from h2util import check


def h2load(url, n, c):
    r = subprocess.run(["h2load", f"-n{n}", f"-c{c}", "-m2", url], capture_output=True,
                       text=True, timeout=60)
    m = re.search(r"requests: .* (\d+) succeeded", r.stdout)
    return int(m.group(1)) if m else -1, r.stdout[-300:]


def trims(srv):
    return [int(p) for p in re.findall(r"down from (\d+): memory trimmed", u.log_text(srv))]


srv = u.start("h2srv", {"H2SRV_TRIM_DELAY": "0.5", "H2SRV_DEBUG": "1"})
try:
    for i, (url, what) in enumerate(((f"http://127.0.0.1:{srv.port}/conns", "h2c"),
                                     (f"https://localhost:{srv.https_port}/conns", "TLS"))):
        ok, out = h2load(url, 600, 300)
        check(ok == 600, f"{what}: 300 connections at once, 600 requests succeeded ({out})")
        deadline = time.monotonic() + 10
        while len(trims(srv)) < i + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        t = trims(srv)
        check(len(t) == i + 1 and t[-1] >= 256,
              f"{what}: one trim after the burst, from a peak of 256 or more ({t})")
        ok, out = h2load(url, 20, 2)
        check(ok == 20, f"{what}: served after the trim ({out})")
    time.sleep(1.0)
    check(len(trims(srv)) == 2, f"no more trims without another burst ({trims(srv)})")
finally:
    u.stop(srv)
u.finish()
