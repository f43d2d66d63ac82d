#!/usr/bin/python3
"""Backpressure: a client that sends but never reads must not grow the server's memory.

Each case starts the demo (or the hello example) on an ephemeral port, then a flooding
client in a process of its own: its receive buffer is 4 KiB and it never reads.  For
FLOOD_SECONDS the server's RSS is sampled and another client is served meanwhile:
  - RSS growth stays under 64 MB,
  - the other client's requests keep being answered, p99 under 50 ms.
Then the same flood against a server whose write timeout is shortened to 1 s: the flooding
connection must be closed by it (it never progresses), well before the test ends.

  backpressure.py CASE      CASE: pipeline-json, pipeline-static, pipeline-hello, ws-ping,
                            ws-message, chat-replay, bad-request
"""
import http.client
import multiprocessing
import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_util import check, finish, rss_kb, small_socket, start, stop, ws_frame  # noqa: E402
from demo_util import ws_open as _ws_open  # noqa: E402

FLOOD_SECONDS = 8.0
RSS_LIMIT_MB = 64
P99_LIMIT_MS = 50
WRITE_TIMEOUT = 1.0


def rss_mb(pid):
    return rss_kb(pid) / 1024.0


def ws_open(port, path):
    return _ws_open(port, path, small=True)


def closed_by_peer(s):
    p = select.poll()
    p.register(s, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    return bool(p.poll(0))


def flood(case, port, seconds, out):
    """Runs in its own process: send without ever reading.  Reports bytes sent and when
    (seconds after the start) the server closed the connection, or None."""
    socks = []
    if case.startswith("pipeline"):
        path = {"pipeline-json": "/json", "pipeline-static": "/static/style.css",
                "pipeline-hello": "/"}[case]
        payload = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 256
        socks = [small_socket(port)]
    elif case == "bad-request":
        # responses to 100 requests (more than the socket takes), then a request that gets
        # 400, then garbage for ever: the server must stop reading at once
        socks = [small_socket(port)]
        socks[0].sendall(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n" * 100 + b"BAD\x01 / HTTP/1.1\r\n\r\n")
        payload = b"x" * 65536
    elif case == "ws-ping":
        socks = [ws_open(port, "/ws/prime")]
        payload = ws_frame(0x9, b"p" * 125) * 512
    elif case == "ws-message":
        socks = [ws_open(port, "/ws/prime")]
        payload = ws_frame(0x1, b"7") * 4096
    elif case == "chat-replay":
        socks = [ws_open(port, "/ws/chat") for _ in range(400)]
        payload = b""
    t0 = time.monotonic()
    sent = 0
    closed_at = None
    for s in socks:
        s.setblocking(False)
    while time.monotonic() - t0 < seconds:
        if payload:
            try:
                _, w, _ = select.select([], [socks[0]], [], 0.1)
                if w:
                    sent += socks[0].send(payload)
            except BlockingIOError:
                pass
            except OSError:  # reset: the server closed it
                closed_at = time.monotonic() - t0
                break
        else:
            time.sleep(0.1)
        if all(closed_by_peer(s) for s in socks):
            closed_at = time.monotonic() - t0
            break
    out.put((sent, closed_at))
    for s in socks:
        s.close()


def prepare(case, port):
    if case == "chat-replay":
        # 200 messages of 4 KiB of control characters: about 24 KiB each once JSON-escaped,
        # 4.8 MB of history for every new WebSocket
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = '{"text": "' + "\\u0001" * 4096 + '"}'
        for _ in range(200):
            conn.request("POST", "/chat/send", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status
        conn.close()


def probe_path(case):
    return "/" if case == "pipeline-hello" else "/json"


def run(case):
    program = "hello" if case == "pipeline-hello" else "demo"

    # 1. default settings: memory bounded by backpressure alone, others served
    proc, port = start(program)
    try:
        prepare(case, port)
        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(20):  # warm up
            probe.request("GET", probe_path(case))
            probe.getresponse().read()
        base = rss_mb(proc.pid)
        out = multiprocessing.Queue()
        fl = multiprocessing.Process(target=flood, args=(case, port, FLOOD_SECONDS, out))
        fl.start()
        peak = base
        lat = []
        t0 = time.monotonic()
        next_rss = t0
        while time.monotonic() - t0 < FLOOD_SECONDS:
            a = time.monotonic()
            probe.request("GET", probe_path(case))
            r = probe.getresponse()
            r.read()
            lat.append((time.monotonic() - a) * 1000)
            assert r.status == 200, r.status
            if time.monotonic() >= next_rss:
                peak = max(peak, rss_mb(proc.pid))
                next_rss += 0.25
            time.sleep(0.01)
        sent, closed_at = out.get(timeout=30)
        fl.join(30)
        peak = max(peak, rss_mb(proc.pid))
        probe.close()
        lat.sort()
        p99 = lat[int(len(lat) * 0.99) - 1] if lat else 1e9
        print(f"{case}: flood sent {sent / 1e6:.1f} MB; server RSS {base:.1f} -> peak {peak:.1f} MB; "
              f"{len(lat)} probes, p50 {lat[len(lat) // 2]:.2f} ms, p99 {p99:.2f} ms")
        check(peak - base < RSS_LIMIT_MB, f"{case}: RSS growth {peak - base:.1f} MB < {RSS_LIMIT_MB} MB")
        check(p99 < P99_LIMIT_MS, f"{case}: other client p99 {p99:.2f} ms < {P99_LIMIT_MS} ms")
        if case == "bad-request":
            # the server stopped reading after the 400: what it took is what its socket
            # buffers hold, not a drain of everything sent for as long as it is sent
            check(sent < 16e6, f"{case}: the server stopped reading ({sent / 1e6:.1f} MB taken)")
    finally:
        stop(proc)

    # 2. a 1 s write timeout: the flooding connection is dropped
    if program != "demo":
        return
    proc, port = start(program, write_timeout=WRITE_TIMEOUT)
    try:
        prepare(case, port)
        out = multiprocessing.Queue()
        fl = multiprocessing.Process(target=flood, args=(case, port, 10.0, out))
        fl.start()
        sent, closed_at = out.get(timeout=60)
        fl.join(30)
        print(f"{case}: with a {WRITE_TIMEOUT} s write timeout the server closed the flood after "
              f"{closed_at} s")
        check(closed_at is not None and closed_at < 6.0,
              f"{case}: closed by the write timeout ({closed_at} s)")
        # every other client still works
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", probe_path(case))
        r = c.getresponse()
        check(r.status == 200 and r.read(), f"{case}: served after the flood")
        c.close()
    finally:
        stop(proc)


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    run(sys.argv[1])
    finish()
