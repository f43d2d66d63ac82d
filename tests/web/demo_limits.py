#!/usr/bin/python3
"""The demo under bad bodies and bursts (Python's http.client and raw sockets):

- a malformed chunked body (a size of "zz", or eighteen "f"s) to POST /form gets 400 and
  the form handler never runs;
- a body cut short (Content-Length: 8, 7 bytes sent, then a half-close) gets no response
  at all, never "200 OK" with an empty form; the access log says the client left, and
  nothing is logged as an "invalid form body";
- 30 concurrent /offload?n=40: the executor's queue is bounded, so the surplus gets 503
  (with Retry-After) at once instead of waiting behind the others; /json stays fast;
- 100 concurrent /gather (300 upstream fetches of a 1 s route): every fetch succeeds (none
  times out in the client's queue), in a few seconds.
"""
import http.client
import os
import resource
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_util import check, finish, log_text, start, stop  # noqa: E402


def low_fd_limit():  # Debian's default soft limit: the demo must raise it itself
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


proc, port = start("demo", preexec_fn=low_fd_limit)


def raw(request, half_close=False, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(request)
    if half_close:
        s.shutdown(socket.SHUT_WR)
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
            if b"\r\n\r\n" in data and not half_close:
                break
    except ConnectionResetError:
        pass
    s.close()
    return data


def get(path, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


try:
    with open(f"/proc/{proc.pid}/limits") as f:
        lim = [l.split()[3:5] for l in f if l.startswith("Max open files")][0]
    print(f"the demo's open-file limit: soft {lim[0]}, hard {lim[1]}")
    check(lim[0] == lim[1], "the demo raised its soft open-file limit to the hard one")

    form_head = (b"POST /form HTTP/1.1\r\nHost: t\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\n")
    for size in (b"zz", b"f" * 18):
        resp = raw(form_head + b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\nname=x\r\n0\r\n\r\n")
        check(resp.startswith(b"HTTP/1.1 400"), f"chunk size {size[:4]!r}...: 400 ({resp[:20]!r})")
        check(b"Received" not in resp, "the form handler did not run")

    resp = raw(form_head + b"Content-Length: 8\r\n\r\nname=ab", half_close=True)
    check(resp == b"", f"a truncated body gets no response (got {resp[:40]!r})")
    time.sleep(0.2)
    text = log_text(proc)
    check("POST /form" in text and "the client left before the body was complete (7 of 8" in text,
          "the access log says the client left")
    check("invalid form body" not in text, "no 'invalid form body' for a failed read")

    # /offload: a bounded queue
    results = [None] * 30

    def offload(i):
        t = time.monotonic()
        st, hd, body = get("/offload?n=40", timeout=120)
        results[i] = (st, hd, time.monotonic() - t)

    threads = [threading.Thread(target=offload, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    a = time.monotonic()
    st, _, _ = get("/json")
    json_ms = (time.monotonic() - a) * 1000
    for t in threads:
        t.join(180)
    ok = [r for r in results if r and r[0] == 200]
    busy = [r for r in results if r and r[0] == 503]
    cpus = os.cpu_count() or 1
    print(f"/offload x30: {len(ok)} computed, {len(busy)} refused; /json meanwhile {json_ms:.1f} ms")
    check(len(ok) + len(busy) == 30, "every /offload answered 200 or 503")
    check(0 < len(ok) <= cpus + 4, f"at most {cpus} running + 4 queued computed ({len(ok)})")
    check(busy and all(r[1].get("Retry-After") == "1" and r[2] < 2.0 for r in busy),
          "the surplus got 503 with Retry-After at once")
    check(st == 200 and json_ms < 500, f"/json served meanwhile ({json_ms:.1f} ms)")

    # /gather: 100 concurrent, 300 upstream fetches
    gathered = [None] * 100

    def gather(i):
        gathered[i] = get("/gather", timeout=60)

    t0 = time.monotonic()
    threads = [threading.Thread(target=gather, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    took = time.monotonic() - t0
    good = sum(1 for g in gathered
               if g and g[0] == 200 and g[2].count(b'"status": 200') + g[2].count(b'"status":200') == 3)
    print(f"/gather x100: {good} with 3 successful fetches in {took:.2f} s")
    check(good == 100, f"all 100 /gather fetched their 3 upstreams ({good})")
    check(took < 10, f"100 concurrent /gather in {took:.2f} s < 10 s")
finally:
    stop(proc)

finish()
