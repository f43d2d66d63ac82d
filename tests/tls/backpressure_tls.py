#!/usr/bin/python3
"""TLS backpressure (tests/web/backpressure.py over HTTPS): a client that pipelines HTTPS
requests on one TLS connection and never reads must not grow the server's memory.

The demo serves HTTPS with the test certificate.  A flooding client in a process of its
own completes the handshake with a 4 KiB receive buffer, then sends pipelined requests
(one TLS record of them at a time) for FLOOD_SECONDS without ever reading.  Meanwhile:
  - the server's RSS grows by less than RSS_LIMIT_MB,
  - a keep-alive HTTPS client (http.client over ssl) is served, p99 under P99_LIMIT_MS.
Then the same flood against a demo whose write timeout is 1 s: the flooding connection is
reset by it well before the test ends, and others are still served.

  backpressure_tls.py CASE   CASE: pipeline-json (/json), pipeline-static (a small static
                             file), pipeline-bigfile (a 1 MiB static file: over TLS its
                             bytes are read and encrypted in pieces, not sendfile'd)
"""
import http.client
import multiprocessing
import os
import shutil
import socket
import ssl
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tls_util import (STATIC, check, client_context, finish, percentile, require, rss_kb,
    start_https, stop, tls_fixtures)  # noqa: E402
from backpressure import closed_by_peer  # noqa: E402  (tests/web/backpressure.py)

FLOOD_SECONDS = 6.0
RSS_LIMIT_MB = 64
P99_LIMIT_MS = 50
WRITE_TIMEOUT = 1.0

PATHS = {"pipeline-json": "/json", "pipeline-static": "/static/style.css",
         "pipeline-bigfile": "/static/big.bin"}


def flood(case, tport, fixtures, seconds, out):
    """Runs in its own process: a TLS connection that sends and never reads.  Reports bytes
    of requests sent and when (seconds after the start) the server closed it, or None."""
    ctx = client_context(fixtures)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    raw.settimeout(10)
    raw.connect(("127.0.0.1", tport))
    s = ctx.wrap_socket(raw, server_hostname="localhost")  # the handshake, then never a read
    one = f"GET {PATHS[case]} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    payload = one * (16000 // len(one))  # one TLS record; a timed-out send is retried as is
    s.settimeout(0.1)
    t0 = time.monotonic()
    sent = 0
    closed_at = None
    while time.monotonic() - t0 < seconds:
        try:
            sent += s.send(payload)
        except (socket.timeout, ssl.SSLWantWriteError):
            pass
        except OSError:  # reset, or an alert: the server closed it
            closed_at = time.monotonic() - t0
            break
        if closed_by_peer(s):
            closed_at = time.monotonic() - t0
            break
    out.put((sent, closed_at))
    try:
        raw.close()
    except OSError:
        pass


def probe_one(conn, path):
    a = time.monotonic()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    return (time.monotonic() - a) * 1000, r.status, body


def run(case):
    fx = tls_fixtures()
    ctx = client_context(fx)
    static = tempfile.mkdtemp(prefix="squall-tls-static-")
    for f in os.listdir(STATIC):
        shutil.copy(os.path.join(STATIC, f), static)
    with open(os.path.join(static, "big.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
    probe_path = "/user/42"
    want = b'{"id":"42"}'

    # 1. default settings: memory bounded by backpressure alone, others served
    proc, port, tport = start_https(fx, static=static)
    try:
        probe = http.client.HTTPSConnection("localhost", tport, context=ctx, timeout=10)
        for _ in range(20):  # warm up
            probe_one(probe, probe_path)
        base = rss_kb(proc.pid) / 1024.0
        out = multiprocessing.Queue()
        fl = multiprocessing.Process(target=flood, args=(case, tport, fx, FLOOD_SECONDS, out))
        fl.start()
        peak = base
        lat = []
        bad = 0
        t0 = time.monotonic()
        next_rss = t0
        while time.monotonic() - t0 < FLOOD_SECONDS:
            ms, status, body = probe_one(probe, probe_path)
            lat.append(ms)
            bad += status != 200 or body != want
            if time.monotonic() >= next_rss:
                peak = max(peak, rss_kb(proc.pid) / 1024.0)
                next_rss += 0.25
            time.sleep(0.01)
        sent, closed_at = out.get(timeout=30)
        fl.join(30)
        peak = max(peak, rss_kb(proc.pid) / 1024.0)
        probe.close()
        lat.sort()
        p99 = percentile(lat, 99)
        print(f"{case}: flood sent {sent / 1e6:.1f} MB of requests over TLS; server RSS {base:.1f} -> "
              f"peak {peak:.1f} MB; {len(lat)} probes, p50 {percentile(lat, 50):.2f} ms, p99 {p99:.2f} ms")
        check(sent > 0 and closed_at is None, f"{case}: the flood ran (and was not closed: {closed_at})")
        check(peak - base < RSS_LIMIT_MB, f"{case}: RSS growth {peak - base:.1f} MB < {RSS_LIMIT_MB} MB")
        check(bad == 0 and len(lat) >= 50, f"{case}: the other HTTPS client was served ({len(lat)} "
              f"requests, {bad} wrong)")
        check(p99 < P99_LIMIT_MS, f"{case}: its p99 {p99:.2f} ms < {P99_LIMIT_MS} ms")
        # the server stopped reading: what it took is bounded by socket buffers, not the
        # flood's length (a server that read on would take hundreds of MB in that time)
        check(sent < 32e6, f"{case}: the server stopped reading ({sent / 1e6:.1f} MB taken)")
    finally:
        log = stop(proc)
    # it answered some of them, then waited for the client to read (the probe's requests
    # are /user/42, so these lines are the flood's)
    answered = log.count(f"200 GET {PATHS[case]} ")
    one = len(f"GET {PATHS[case]} HTTP/1.1\r\nHost: localhost\r\n\r\n")
    print(f"{case}: the server answered {answered} of the {sent // one} requests sent")
    # (a 1 MiB response may not even fit the kernel's buffers: then none completes)
    least = 0 if case == "pipeline-bigfile" else 1
    check(least <= answered < sent // one, f"{case}: answered some ({answered}), then paused")

    # 2. a 1 s write timeout: the flooding connection is reset
    proc, port, tport = start_https(fx, static=static, write_timeout=WRITE_TIMEOUT)
    try:
        out = multiprocessing.Queue()
        fl = multiprocessing.Process(target=flood, args=(case, tport, fx, 10.0, out))
        fl.start()
        sent, closed_at = out.get(timeout=60)
        fl.join(30)
        print(f"{case}: with a {WRITE_TIMEOUT} s write timeout the server closed the flood after "
              f"{closed_at} s")
        check(closed_at is not None and closed_at < 6.0,
              f"{case}: closed by the write timeout ({closed_at} s)")
        c = http.client.HTTPSConnection("localhost", tport, context=ctx, timeout=10)
        ms, status, body = probe_one(c, probe_path)
        check(status == 200 and body == want, f"{case}: served after the flood")
        c.close()
    finally:
        stop(proc)
        shutil.rmtree(static, True)


if __name__ == "__main__":
    require(programs=["openssl"])
    multiprocessing.set_start_method("fork")
    if len(sys.argv) != 2 or sys.argv[1] not in PATHS:
        raise SystemExit(f"usage: backpressure_tls.py {{{','.join(PATHS)}}}")
    run(sys.argv[1])
    finish()
