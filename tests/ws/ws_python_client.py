#!/usr/bin/python3
"""squall's WebSocket server against a real client: Python's websockets (Debian's
python3-websockets, asyncio API), plus raw sockets for what websockets will not send.

Proves, with and without permessage-deflate: text, binary, fragmented (in both types) and
1 MiB messages echo byte for byte; the extension is negotiated only when both sides want
it; a subprotocol is selected; close codes and reasons travel both ways.  With a raw socket:
the handshake's Sec-WebSocket-Accept, 400/405/426/403 for bad upgrades, a ping answered by
a pong, and the close code for each violation (unmasked frame, RSV bits, reserved opcode,
fragmented or oversized control frame, stray continuation, bad close payloads, a 64-bit
length with its top bit set: 1002; invalid UTF-8: 1007; over max_message_size, also when
only announced by a frame header: 1009), after which the server closes the TCP connection and keeps
serving others.

Runs $SQ_BUILD_DIR/tests/ws_test_server on an ephemeral port.
"""
import asyncio
import base64
import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time

try:
    import websockets
except ImportError:
    print("skipped: python3-websockets not installed")
    sys.exit(77)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
server_bin = os.path.join(os.environ["SQ_BUILD_DIR"], "tests", "ws_test_server")
proc = subprocess.Popen([server_bin, "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True)
line = proc.stdout.readline()
assert line.startswith("listening on port "), line
PORT = int(line.split()[-1])
BASE = f"ws://127.0.0.1:{PORT}"
checks = 0


def ok(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


async def fragments(parts):
    for p in parts:
        yield p


async def exchanges(path, compression):
    kind = f"{path} compression={compression}"
    async with websockets.connect(BASE + path, compression=compression, max_size=16 << 20,
                                  open_timeout=10, close_timeout=10,
                                  subprotocols=["chat"]) as ws:
        negotiated = any(e.name == "permessage-deflate" for e in ws.extensions)
        ok(negotiated == (compression == "deflate" and path == "/echo-deflate"),
           f"{kind}: permessage-deflate negotiated={negotiated}")
        ok(ws.subprotocol == "chat", f"{kind}: subprotocol {ws.subprotocol!r}")
        for msg in ["hello", "", "ünïcödé ✓ 𝄞", bytes(range(256)) * 4, b""]:
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), 10)
            ok(got == msg and type(got) is type(msg), f"{kind}: echo of {msg[:20]!r}: {got[:20]!r}")
        # Fragmented: one message sent as several frames comes back whole.
        await ws.send(fragments(["frag", "ment", "ed ✓"]))
        got = await asyncio.wait_for(ws.recv(), 10)
        ok(got == "fragmented ✓", f"{kind}: fragmented text: {got!r}")
        await ws.send(fragments([b"\x00\x01", b"\x02" * 70000, b"\x03"]))
        got = await asyncio.wait_for(ws.recv(), 10)
        ok(got == b"\x00\x01" + b"\x02" * 70000 + b"\x03", f"{kind}: fragmented binary")
        # 1 MiB, incompressible binary and compressible text.
        big = os.urandom(1 << 20)
        await ws.send(big)
        got = await asyncio.wait_for(ws.recv(), 30)
        ok(got == big, f"{kind}: 1 MiB binary")
        text = ("squall websocket " * 70000)[: 1 << 20]
        await ws.send(text)
        got = await asyncio.wait_for(ws.recv(), 30)
        ok(got == text, f"{kind}: 1 MiB text")
        # Several messages in flight at once come back in order.
        for i in range(50):
            await ws.send(f"m{i}")
        for i in range(50):
            got = await asyncio.wait_for(ws.recv(), 10)
            ok(got == f"m{i}", f"{kind}: pipelined m{i}: {got!r}")
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 10)
        # The client closes with a code and reason: the server saw them.
        await ws.close(4002, "client done")
    ok(ws.close_code == 4002, f"{kind}: close code echoed {ws.close_code}")
    async with websockets.connect(BASE + path, compression=compression) as ws:
        await ws.send("!lastclose")
        got = await asyncio.wait_for(ws.recv(), 10)
        ok(got == "4002 client done", f"{kind}: server saw client close: {got!r}")
        # The server closes with a code and reason: the client sees them.
        await ws.send("!close 4001 server says bye")
        try:
            await asyncio.wait_for(ws.recv(), 10)
            ok(False, f"{kind}: message after server close")
        except websockets.ConnectionClosed:
            pass
        await asyncio.wait_for(ws.wait_closed(), 10)
        ok(ws.close_code == 4001 and ws.close_reason == "server says bye",
           f"{kind}: server close {ws.close_code} {ws.close_reason!r}")
    print(f"ok: websockets exchanges on {kind}")


# --- raw sockets ------------------------------------------------------------------------------

def handshake(path="/echo", extra=b"", expect=101):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    key = base64.b64encode(os.urandom(16))
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % PORT +
              b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
              b"\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    status = int(head.split(b" ", 2)[1]) if head else 0
    ok(status == expect, f"handshake {path} {extra!r}: status {status}: {head[:200]!r}")
    if expect == 101:
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        fields = dict((k.strip().lower(), v.strip()) for k, _, v in
                      (ln.partition(b":") for ln in head.split(b"\r\n")[1:] if ln))
        ok(fields.get(b"sec-websocket-accept") == accept, f"Sec-WebSocket-Accept: {head!r}")
        rest = head.split(b"\r\n\r\n", 1)[1]
        ok(rest == b"", "no bytes after the 101 head")
    return s, head


def frame(opcode, payload, fin=True, mask=True, rsv=0):
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def read_frame(s):
    b0, b1 = read_exact(s, 2)
    ok(b1 & 0x80 == 0, "server frames are unmasked")
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", read_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read_exact(s, 8))[0]
    return b0 & 0x0F, bool(b0 & 0x80), read_exact(s, n)


def expect_close(s, code, what):
    """The next frame is a close with `code`; then answer it and see the TCP close."""
    t0 = time.monotonic()
    while True:
        op, fin, payload = read_frame(s)
        if op == 8:
            break
        ok(time.monotonic() - t0 < 10, f"{what}: no close frame")
    got = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
    ok(got == code, f"{what}: close code {got}, expected {code} (reason {payload[2:]!r})")
    try:
        s.sendall(frame(8, payload[:2]))
    except OSError:
        pass
    s.settimeout(10)
    try:
        rest = s.recv(100)
    except ConnectionResetError:
        rest = b""
    ok(rest == b"", f"{what}: server closed the TCP connection after the close ({rest!r})")
    s.close()
    print(f"ok: {what} -> {code}")


def raw_violations():
    # A ping is answered by a pong with the same payload; a masked text echo works.
    s, _ = handshake()
    s.sendall(frame(9, b"ping-data"))
    ok(read_frame(s) == (10, True, b"ping-data"), "pong for ping")
    s.sendall(frame(1, b"hi"))
    ok(read_frame(s) == (1, True, b"hi"), "raw echo")
    s.sendall(frame(1, b"hel", fin=False) + frame(9, b"mid") + frame(0, b"lo"))
    ok(read_frame(s) == (10, True, b"mid"), "ping between fragments answered")
    ok(read_frame(s) == (1, True, b"hello"), "fragments around a ping joined")
    s.sendall(frame(8, struct.pack("!H", 1000) + b"bye"))
    expect_close(s, 1000, "client close 1000")

    cases = [
        ("unmasked frame", "/echo", frame(1, b"hello", mask=False), 1002),
        ("RSV1 without an extension", "/echo", frame(1, b"x", rsv=4), 1002),
        ("RSV2", "/echo", frame(2, b"x", rsv=2), 1002),
        ("reserved opcode 3", "/echo", frame(3, b"x"), 1002),
        ("fragmented ping", "/echo", frame(9, b"x", fin=False), 1002),
        ("ping over 125 bytes", "/echo", frame(9, b"p" * 126), 1002),
        ("continuation without a start", "/echo", frame(0, b"x"), 1002),
        ("new message inside a fragmented one", "/echo",
         frame(1, b"a", fin=False) + frame(1, b"b"), 1002),
        ("invalid UTF-8", "/echo", frame(1, b"ok \xff\xfe"), 1007),
        ("UTF-8 split over fragments, then truncated", "/echo",
         frame(1, b"\xe2\x9c", fin=False) + frame(0, b"x"), 1007),
        ("over max_message_size", "/small", frame(2, b"b" * 2000), 1009),
        ("a 2^40-byte length announced (nothing more sent)", "/small",
         b"\x82\xff" + struct.pack("!Q", 1 << 40) + os.urandom(4), 1009),
        ("64-bit length with the top bit set", "/echo",
         b"\x82\xff\x80" + bytes(7) + bytes(4), 1002),
        ("close code 999", "/echo", frame(8, struct.pack("!H", 999)), 1002),
        ("close code 1005 on the wire", "/echo", frame(8, struct.pack("!H", 1005)), 1002),
        ("close with a 1-byte payload", "/echo", frame(8, b"\x03"), 1002),
        ("fragments over max_message_size", "/small",
         frame(2, b"b" * 600, fin=False) + frame(0, b"b" * 600), 1009),
    ]
    for what, path, data, code in cases:
        s, _ = handshake(path)
        s.sendall(data)
        expect_close(s, code, what)


def bad_upgrades():
    def raw(req):
        s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        s.sendall(req)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        s.close()
        return head

    base = (b"Host: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" % PORT)
    h = raw(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    ok(h.startswith(b"HTTP/1.1 400"), f"plain GET: {h[:60]!r}")
    h = raw(b"GET /echo HTTP/1.1\r\n" + base + b"Sec-WebSocket-Version: 8\r\n\r\n")
    ok(h.startswith(b"HTTP/1.1 426") and b"sec-websocket-version: 13" in h.lower(),
       f"version 8: {h[:200]!r}")
    h = raw(b"POST /echo HTTP/1.1\r\n" + base +
            b"Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n")
    ok(h.startswith(b"HTTP/1.1 405"), f"POST: {h[:60]!r}")
    h = raw(b"GET /echo HTTP/1.1\r\n" + base +
            b"Sec-WebSocket-Version: 13\r\nOrigin: http://evil.example\r\n\r\n")
    ok(h.startswith(b"HTTP/1.1 403"), f"cross-origin: {h[:60]!r}")
    s, _ = handshake("/echo", extra=b"Origin: http://127.0.0.1:%d\r\n" % PORT)
    s.close()
    print("ok: bad upgrades get 400/426/405/403; same-origin is accepted")


async def main():
    for path in ["/echo", "/echo-deflate"]:
        for compression in [None, "deflate"]:
            await exchanges(path, compression)
    # Many clients at once, each with its own exchange.
    async def one(i):
        async with websockets.connect(BASE + "/echo-deflate") as ws:
            for j in range(5):
                await ws.send(f"client {i} message {j}")
                got = await asyncio.wait_for(ws.recv(), 20)
                ok(got == f"client {i} message {j}", f"concurrent client {i}: {got!r}")
    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(50))), 60)
    print("ok: 50 concurrent clients")


try:
    asyncio.run(main())
    bad_upgrades()
    raw_violations()
    # Still serving after all of that.
    asyncio.run(exchanges("/echo", None))
finally:
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    if err.strip():
        print(err[-4000:], file=sys.stderr)
ok(proc.returncode == 0, f"server exit status {proc.returncode}")
ok("Sanitizer" not in err and "runtime error" not in err, "sanitizer report from the server")
print(f"OK ({checks} checks)")
