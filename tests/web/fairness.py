#!/usr/bin/python3
"""Fairness: one busy peer cannot hold the loop.

A client sends 20,000 messages of 4 KB into the demo's /ws/chat as fast as it can (ten more
chat members with permessage-deflate read the broadcasts, so each message costs ten
compressions and eleven sends), while another client
measures round trips on /ws/prime and on GET /json.  The server bounds the work it does
for one connection per wake-up, so those round trips stay short: p99 under 50 ms.  The same
for a client pipelining thousands of requests at once (GET /json, 24 bytes each).
"""
import http.client
import multiprocessing
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_util import check, finish, start, stop, ws_frame, ws_open, ws_read_frame  # noqa: E402

P99_LIMIT_MS = 50


def frame(payload, opcode=0x1):
    return ws_frame(opcode, payload)


def chat_flood(port, count, out):
    """Floods /ws/chat; a connection the server drops (as too slow a reader of the
    broadcasts, which is its right) is replaced, so the flood and its cost go on."""
    def member():
        x = ws_open(port, "/ws/chat", deflate=True)  # the server deflates per member
        x.setblocking(False)
        return x

    def sender():
        x = ws_open(port, "/ws/chat")
        x.setblocking(False)
        return x

    members = [member() for _ in range(10)]
    s = sender()
    msg = frame(b"a" * 4096)
    sent = 0
    pending = b""
    t0 = time.monotonic()
    while (sent < count or pending) and time.monotonic() - t0 < 120:
        if not pending and sent < count:
            pending = msg * 16
            sent += 16
        r, w, _ = select.select(members + [s], [s], [], 0.05)
        for x in r:  # everyone reads what is broadcast to it
            try:
                if x.recv(1 << 20):
                    continue
            except BlockingIOError:
                continue
            except OSError:
                pass
            x.close()  # dropped by the server: replace it
            if x is s:
                s, pending, w = sender(), b"", []
            else:
                members[members.index(x)] = member()
        if w and pending:
            try:
                k = s.send(pending)
                pending = pending[k:]
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                s, pending = sender(), b""
    out.put(time.monotonic() - t0)
    for x in members + [s]:
        x.close()


def pipeline_flood(port, seconds, out):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    burst = b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n" * 4096
    pending = b""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        r, w, _ = select.select([s], [s], [], 0.05)
        if r:
            try:
                s.recv(1 << 20)
            except BlockingIOError:
                pass
        if w:
            if not pending:
                pending = burst
            try:
                pending = pending[s.send(pending):]  # a partial send goes on where it ended
            except BlockingIOError:
                pass
    out.put(time.monotonic() - t0)
    s.close()


def probe(port, until):
    """WS round trips on /ws/prime and GET /json, alternately, until until() is true."""
    ws = ws_open(port, "/ws/prime")
    hc = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    lat = []
    t0 = time.monotonic()
    while not until() and time.monotonic() - t0 < 120:
        a = time.monotonic()
        ws.sendall(frame(b"97"))
        op, data = ws_read_frame(ws)
        assert op == 1 and b'"prime":true' in data, data
        b = time.monotonic()
        hc.request("GET", "/json")
        r = hc.getresponse()
        r.read()
        c = time.monotonic()
        lat += [(b - a) * 1000, (c - b) * 1000]
        time.sleep(0.01)
    ws.close()
    hc.close()
    lat.sort()
    return lat


def run(name, target, args):
    proc, port = start("demo")
    try:
        out = multiprocessing.Queue()
        fl = multiprocessing.Process(target=target, args=(port,) + args + (out,))
        fl.start()
        time.sleep(0.3)
        lat = probe(port, lambda: not fl.is_alive())
        took = out.get(timeout=10)
        fl.join(10)
        p99 = lat[int(len(lat) * 0.99) - 1] if len(lat) >= 100 else lat[-1]
        print(f"{name}: flood took {took:.1f} s; {len(lat)} round trips meanwhile, "
              f"p50 {lat[len(lat) // 2]:.2f} ms, p99 {p99:.2f} ms, max {lat[-1]:.2f} ms")
        check(len(lat) >= 50, f"{name}: enough round trips measured ({len(lat)})")
        check(p99 < P99_LIMIT_MS, f"{name}: p99 {p99:.2f} ms < {P99_LIMIT_MS} ms")
    finally:
        log = stop(proc)
    held = [l for l in log.splitlines() if "slow callback" in l]
    print("\n".join(held[:5]))


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    run("chat flood (20,000 x 4 KB into /ws/chat)", chat_flood, (20000,))
    run("pipeline flood (GET /json x 4096 per send)", pipeline_flood, (6.0,))
    finish()
