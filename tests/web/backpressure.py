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
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD = os.environ["SQ_BUILD_DIR"]
SRC = os.environ["SQ_SOURCE_DIR"]
STATIC = os.path.join(SRC, "examples", "demo", "static")
FLOOD_SECONDS = 8.0
RSS_LIMIT_MB = 64
P99_LIMIT_MS = 50
WRITE_TIMEOUT = 1.0

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def start(program="demo", write_timeout=None):
    env = dict(os.environ)
    # ASan keeps freed blocks in a quarantine (256 MB by default): RSS would grow with any
    # churn, leak or not.  A small one keeps the measure about the server's own memory.
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4:detect_leaks=1"
    if write_timeout:
        env["SQUALL_DEMO_WRITE_TIMEOUT"] = str(write_timeout)
    log = tempfile.TemporaryFile(mode="w+")
    args = [os.path.join(BUILD, "examples", program), "0"]
    if program == "demo":
        args.append(STATIC)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    line = proc.stdout.readline()
    assert line.startswith("listening on port "), line
    proc.log = log
    return proc, int(line.split()[-1])


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    proc.log.seek(0)
    log = proc.log.read()
    check(rc == 0, f"server exited cleanly on SIGTERM (status {rc})")
    if rc != 0:
        print(log[-4000:])
    return log


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def small_socket(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    s.connect(("127.0.0.1", port))
    return s


def ws_open(port, path):
    """A raw WebSocket handshake; returns the socket (the 101 head read, nothing more)."""
    s = small_socket(port)
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    s.settimeout(10)
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        assert b, "closed during the handshake"
        head += b
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def ws_frame(opcode, payload):
    mask = b"\x01\x02\x03\x04"
    masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


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
    print(f"{len(failures)} failed" if failures else "all passed")
    sys.exit(1 if failures else 0)
