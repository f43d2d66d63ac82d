"""100 concurrent requests to the demo's /async (sq_sleep(1.0)) as 100 streams of ONE
connection: `h2load -n100 -c1 -m100`, over h2c and over TLS (h2 by ALPN).  Every response
2xx, the whole run < 3 s (the sleeps overlap: serialised it would take 100 s), one
connection; then the demo stops cleanly (exit 0, no sanitizer report).  Before that, ten
10 MiB responses at once (h2load, whose 1 GiB windows mean it never sends WINDOW_UPDATE) and
a raw client that never sends one either, against h2_test_server's /big."""
import hashlib
import re
import subprocess
import time

import h2util as u
from h2util import check


def run(url, tls):
    t = time.monotonic()
    r = subprocess.run(["h2load", "-n100", "-c1", "-m100", url], capture_output=True,
                       text=True, timeout=60)
    wall = time.monotonic() - t
    out = r.stdout
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    fin = re.search(r"finished in ([\d.]+)(ms|s)", out)
    what = "TLS" if tls else "h2c"
    check(r.returncode == 0 and m and m.group(4) == "100",
          f"{what}: 100 requests succeeded ({m.group(0) if m else out[-300:]})")
    check(codes and codes.group(1) == "100", f"{what}: all 2xx ({codes.group(0) if codes else '?'})")
    check(wall < 3.0, f"{what}: 100 one-second sleeps on one connection took {wall:.2f} s (< 3 s)")
    if fin:
        secs = float(fin.group(1)) / (1000 if fin.group(2) == "ms" else 1)
        check(0.9 < secs < 3.0, f"{what}: h2load's own clock: {secs:.2f} s")
    if tls:
        check("Application protocol: h2" in out, "TLS: ALPN chose h2")


def big_streams():
    """Large responses to a peer that never sends WINDOW_UPDATE because its windows are huge
    (h2load's defaults: 1 GiB): the server must keep pulling from nghttp2 as the socket
    drains, with no read event to prompt it.  (Before the h2_send fix these stalled until
    write_timeout.)"""
    srv = u.start("h2srv")
    try:
        for url, what in ((f"http://127.0.0.1:{srv.port}/big", "h2c"),
                          (f"https://localhost:{srv.https_port}/big", "TLS")):
            t = time.monotonic()
            try:
                r = subprocess.run(["h2load", "-n10", "-c1", "-m10", url], capture_output=True,
                                   text=True, timeout=20)
            except subprocess.TimeoutExpired as e:
                r = subprocess.CompletedProcess(e.cmd, None, "(stalled: killed after 20 s)", "")
            m = re.search(r"requests: .* (\d+) succeeded", r.stdout)
            traffic = re.search(r"traffic: .*?\((\d+)\) total", r.stdout)
            check(m and m.group(1) == "10" and int(traffic.group(1)) > 100 << 20,
                  f"{what}: ten 10 MiB /big at once on one connection, 1 GiB windows: "
                  f"{m.group(0) if m else r.stdout[-300:]} ({time.monotonic() - t:.2f} s)")
        want = u.big_sha256(10 << 20)
        for i in range(3):
            c = u.Conn(srv.port, settings={u.S_INITIAL_WINDOW_SIZE: 2 ** 31 - 1}, auto_window=False)
            c.send(u.frame(u.WINDOW_UPDATE, 0, 0, (2 ** 31 - 1 - 65535).to_bytes(4, "big")))
            sid = c.request("/big")
            c.pump(15, until=lambda: sid in c.ended or c.eof)
            got = c.body.get(sid, b"")
            check(sid in c.ended and hashlib.sha256(got).hexdigest() == want,
                  f"raw client, no WINDOW_UPDATE ever: /big #{i + 1} complete ({len(got)} bytes)")
            c.close()
    finally:
        log = u.stop(srv)
    check("/big ended early" not in log, "no /big handler ended early")


big_streams()
demo = u.start("demo")
try:
    run(f"http://127.0.0.1:{demo.port}/async", False)
    run(f"https://localhost:{demo.https_port}/async", True)
finally:
    log = u.stop(demo)
served = len(re.findall(r"200 GET /async .* h2", log))
check(served == 200, f"the demo's access log: 200 /async responses over h2 ({served})")
u.finish()
