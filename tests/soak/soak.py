#!/usr/bin/python3
"""Soak: mixed load on the demo for a while, with its memory and open files watched.

  soak.py [--seconds N] [--tolerance PCT]

Every kind of client at once, each kind in its own thread and each request loop bounded by
the deadline: keep-alive and pipelined requests, uploads (whole, chunked, multipart), static
files with ranges, WebSocket chat with permessage-deflate, long polls, /gather, clients that
leave mid-request or reset (SO_LINGER 0), slowloris holders, and clients that send but
never read (a pipeliner, a WebSocket ping flooder, a chat member).  The demo runs with a 5 s
write timeout so that the never-readers cycle.  RSS and the number of open fds are sampled
throughout; the run passes when, from 20% of the run to its end, the means of each tenth of
the run stay within the tolerance of each other (5% by default; `make soak` runs 10 minutes, `make test` 20 seconds), no request
got an unexpected status, and the demo exits cleanly on SIGTERM (LeakSanitizer-clean in an
ASan build).
"""
import argparse
import asyncio
import http.client
import os
import random
import select
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "web"))
from demo_util import check, finish, rss_kb, small_socket, start, stop, ws_handshake  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--seconds", type=float, default=600)
ap.add_argument("--tolerance", type=float, default=5.0)
args = ap.parse_args()

stats_lock = threading.Lock()
counts = {}      # kind -> completed operations
unexpected = []  # (kind, what)


def count(kind, n=1):
    with stats_lock:
        counts[kind] = counts.get(kind, 0) + n


def bad(kind, what):
    with stats_lock:
        if len(unexpected) < 50:
            unexpected.append((kind, str(what)[:200]))


# The never-readers cycle (a 5 s write timeout).  In an ASan build the allocator's own
# reserves (quarantine, per-size caches) move RSS by several per cent: with no quarantine
# and free memory handed back to the kernel, RSS tracks what the server holds.
proc, PORT = start("demo", write_timeout=5,
                   asan_extra=":quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
                              ":allocator_release_to_os_interval_ms=500")
# The clock starts once the idle holders are connected (warm-up, slower on a busy
# machine); every worker stops at DEADLINE.
T0 = time.monotonic()
DEADLINE = T0 + args.seconds + 120
warm = threading.Event()


def running():
    return time.monotonic() < DEADLINE and proc.poll() is None


def conn():
    return http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)


def expect(kind, c, method, path, statuses=(200,), body=None, headers=None):
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    if r.status not in statuses:
        bad(kind, f"{method} {path}: {r.status} {data[:80]!r}")
    return r, data


# --- the kinds of client ------------------------------------------------------------------

def keepalive():
    while running():
        c = conn()
        for _ in range(50):
            path = random.choice(["/", "/json", "/user/42", "/cookie", "/async?x"])
            if path.startswith("/async") and random.random() < 0.9:
                path = "/json"
            expect("keepalive", c, "GET", path)
            count("keepalive")
        c.close()


def pipelined():
    while running():
        s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
        s.sendall(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n" * 32)
        data = b""
        while data.count(b"HTTP/1.1 200 OK") < 32:
            b = s.recv(65536)
            if not b:
                bad("pipelined", f"closed after {data.count(b'HTTP/1.1 200 OK')} responses")
                break
            data += b
        s.close()
        count("pipelined", 32)


def uploads():
    boundary = "soakboundary"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nsoak\r\n"
                 f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n" + "x" * 20000 + f"\r\n--{boundary}--\r\n")
    while running():
        c = conn()
        r, data = expect("uploads", c, "POST", "/form", body="name=soak&x=" + "y" * 5000,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        if b"soak" not in data:
            bad("uploads", "form field not echoed")
        c.request("POST", "/form", body=iter([b"name=ch", b"unked"]), encode_chunked=True,
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        data = r.read()
        if r.status != 200 or b"chunked" not in data:
            bad("uploads", f"chunked upload: {r.status}")
        r, data = expect("uploads", c, "POST", "/form", body=multipart,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if b"20000 bytes" not in data:
            bad("uploads", "multipart file size not reported")
        c.close()
        count("uploads", 3)


def static_ranges():
    while running():
        c = conn()
        for _ in range(20):
            r, data = expect("static", c, "GET", "/static/style.css", statuses=(206,),
                             headers={"Range": "bytes=0-9"})
            if len(data) != 10:
                bad("static", f"range of {len(data)} bytes")
            expect("static", c, "GET", "/static/hello.txt")
            count("static", 2)
        c.close()


def ws_chat():
    import websockets

    async def session():
        async with websockets.connect(f"ws://127.0.0.1:{PORT}/ws/chat", compression="deflate",
                                      max_size=2**24, open_timeout=30) as ws:
            # the history first (at most 200 messages), then our own message comes back
            text = f"soak {random.random()}"
            await ws.send(text)
            t = time.monotonic()
            while time.monotonic() - t < 30:
                m = await asyncio.wait_for(ws.recv(), 30)
                if text in m:
                    return True
            return False

    while running():
        try:
            ok = asyncio.run(session())
            if not ok:
                bad("ws_chat", "own message never came back")
            count("ws_chat")
        except Exception as e:  # noqa: BLE001
            bad("ws_chat", repr(e))
            time.sleep(0.5)


def long_polls():
    while running():
        c = conn()
        r, data = expect("long_poll", c, "GET", "/chat/poll?timeout=0.5")
        if b'"messages"' not in data:
            bad("long_poll", data[:80])
        c.close()
        count("long_poll")


def gather():
    while running():
        c = conn()
        r, data = expect("gather", c, "GET", "/gather")
        if data.count(b'"status":200') + data.count(b'"status": 200') != 3:
            bad("gather", data[:120])
        c.close()
        count("gather")


def abrupt():
    while running():
        s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        s.sendall(b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nname=half")
        if random.random() < 0.5:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        s.close()
        s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        s.sendall(b"GET /json HTTP/1.1\r\nHo")  # leaves mid-head
        s.close()
        count("abrupt", 2)
        time.sleep(0.01)


def slowloris():
    socks = []
    while running():
        while len(socks) < 20:
            s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
            s.sendall(b"GET /json HTTP/1.1\r\n")
            socks.append(s)
        for s in list(socks):
            try:
                s.sendall(b"X-a: b\r\n")
            except OSError:  # the header timeout closed it: replace it
                socks.remove(s)
                s.close()
                count("slowloris")
        time.sleep(2)
    for s in socks:
        s.close()


def never_reader(kind):
    ping = bytes([0x89, 0x80 | 125]) + b"\x01\x02\x03\x04" + b"p" * 125
    while running():
        try:
            s = small_socket(PORT)
            if kind == "pipeline":
                payload = b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n" * 256
            elif kind == "ping":
                ws_handshake(s, PORT, "/ws/prime")
                payload = ping * 64
            else:  # a chat member that never reads its history or broadcasts
                ws_handshake(s, PORT, "/ws/chat")
                payload = b""
            s.setblocking(False)
            t = time.monotonic()
            while running() and time.monotonic() - t < 30:
                _, w, x = select.select([], [s] if payload else [], [s], 0.2)
                if w:
                    s.send(payload)
                p = select.poll()
                p.register(s, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
                if p.poll(0):
                    break
            s.close()
            count("never_reader_" + kind)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            count("never_reader_" + kind)  # reset by the write timeout: expected
            time.sleep(0.1)


def idle_holders():
    """400 idle keep-alive connections, each used now and then: a steady fd baseline."""
    cs = []
    for _ in range(400):
        c = conn()
        expect("idle", c, "GET", "/json")
        cs.append(c)
    warm.set()
    turn = 0
    while running():
        time.sleep(5)
        # 80 of them every 5 s: each is used every 25 s, well within the idle timeout (75 s),
        # so the number held stays steady
        for c in cs[turn:turn + 80]:
            try:
                expect("idle", c, "GET", "/json")
            except Exception:  # noqa: BLE001  (closed meanwhile: reconnects)
                c.close()
                expect("idle", c, "GET", "/json")
        turn = (turn + 80) % len(cs)
        count("idle", 80)
    for c in cs:
        c.close()


def guarded(fn, *a):
    def run():
        try:
            fn(*a)
        except Exception as e:  # noqa: BLE001
            if running():
                bad(fn.__name__, repr(e))
    return run


def rss_fds():
    return rss_kb(proc.pid), len(os.listdir(f"/proc/{proc.pid}/fd"))


workers = [keepalive, keepalive, pipelined, uploads, static_ranges, ws_chat, ws_chat, long_polls,
           gather, abrupt, slowloris, idle_holders]
threads = [threading.Thread(target=guarded(w), daemon=True) for w in workers]
threads += [threading.Thread(target=guarded(never_reader, k), daemon=True)
            for k in ("pipeline", "ping", "chat")]
for t in threads:
    t.start()
warm.wait(120)
T0 = time.monotonic()
DEADLINE = T0 + args.seconds

samples = []  # (seconds, rss KiB, fds)
interval = 10.0 if args.seconds >= 300 else 1.0
while time.monotonic() < DEADLINE and proc.poll() is None:
    time.sleep(min(interval, max(0.0, DEADLINE - time.monotonic())))
    if proc.poll() is None:
        rss, fds = rss_fds()
        samples.append((time.monotonic() - T0, rss, fds))
        print(f"{samples[-1][0]:6.1f} s  rss {rss / 1024:7.1f} MB  fds {fds:4d}", flush=True)
for t in threads:
    t.join(60)

check(proc.poll() is None, "the demo ran through the soak")
# Flat: the run is cut into ten periods (a minute each in the 10-minute run); from the
# period starting at 20% of the run (minute 2) to the end, the mean of each period's samples
# stays within the tolerance of the others.  Means, not single samples: the allocator's
# moment-to-moment noise is not growth.
period = args.seconds / 10
window = [s for s in samples if 0.2 * args.seconds <= s[0] < 10 * period]
if window:
    for idx, name in ((1, "RSS (KiB)"), (2, "open fds")):
        buckets = {}
        for s in window:
            buckets.setdefault(int(s[0] // period), []).append(s[idx])
        # the median of each period: a sample taken while a burst of clients connects is
        # not the level
        means = [sorted(v)[len(v) // 2] for _, v in sorted(buckets.items())]
        lo, hi = min(means), max(means)
        spread = (hi - lo) * 100.0 / lo if lo else 0
        check(spread <= args.tolerance,
              f"{name} flat from {window[0][0]:.0f} s to the end: period means "
              f"{' '.join(f'{m:.0f}' for m in means)} ({spread:.1f}% <= {args.tolerance}%)")
print("operations:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
for kind in ("keepalive", "pipelined", "uploads", "static", "ws_chat", "long_poll", "gather",
             "abrupt", "idle"):
    check(counts.get(kind, 0) > 0, f"{kind} ran ({counts.get(kind, 0)})")
check(not unexpected, f"no unexpected status or error ({len(unexpected)}): {unexpected[:5]}")

stop(proc)
finish()
