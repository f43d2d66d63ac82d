"""One misbehaving HTTP/2 peer per case, made of hand-built frames, against
tests/http2/h2_test_server; a well-behaved client (h2util.Prober: GET /conns every 20 ms on
its own h2c connection) must be served all along.  Every case then checks that no handler is
left running (/stats), that the server's RSS stayed bounded, and that it exits 0 on SIGTERM
with no ASan/LSan/UBSan report.

  rapid_reset        HEADERS + RST_STREAM pairs in a tight loop (CVE-2023-44487), h2c and
                     TLS: GOAWAY with an error code long before the thousands are sent
  continuation_flood HEADERS without END_HEADERS, then CONTINUATION frames without end
                     (empty ones, and ones with a header each; CVE-2024-27316 style): the
                     connection is closed after a few, nothing is accumulated
  hpack_bomb         a 4000-byte header indexed once, then header blocks of 1-byte
                     references to it (9 frames, ~590 MB decoded per request, 20 requests):
                     each such stream is reset, the connection goes on serving, RSS bounded
  ping_flood         PINGs without reading the ACKs (h2c and TLS): the server closes the
  settings_flood     connection (nghttp2's outbound-ACK limit) or stops reading it and drops
                     it after write_timeout; RSS bounded
  zero_window        /big requested by a peer whose stream windows are 0 (its streams are
                     reset, its connection stays), and by one that never opens the
                     connection window (its connection is closed): after write_timeout (2 s
                     here), every /big handler ends (-ETIMEDOUT), RSS bounded
  max_streams        the server's SETTINGS say 128 concurrent streams; 140 streams to /sleep
                     (1 s): before the client acknowledged the SETTINGS the 12 extra are
                     refused (REFUSED_STREAM) and the 128 answered within 3 s, the connection
                     still usable; after the ACK, see check_max_streams_acked
  header_list_size   MAX_HEADER_LIST_SIZE 65536 advertised; a 60 KB header list is served, a
                     68 KB one is reset, the connection goes on
  body_size          max_body_size 1 MiB: 2 MiB POSTs to /echo (which reads the whole body),
                     with and without content-length, get 413 and the stream reset; 1 MiB is
                     echoed intact; a handler that answers without reading the body still
                     coming: its response whole, then RST_STREAM(NO_ERROR)
  body_stream        max_body_size 64 KiB: 200 KB bodies read in pieces (/stream: no limit)
                     arrive whole, also when they came before the handler began reading;
                     read whole (/echo) they get 413, also when already buffered"""
import os
import socket
import struct
import sys
import time

import h2util as u
from h2util import check

CASE = sys.argv[1]
MB = 1024


def headers_then_reset(c, path, n):
    data = b""
    for _ in range(n):
        sid = c.new_sid()
        data += (u.frame(u.HEADERS, u.END_HEADERS | u.END_STREAM, sid, c.request_block(path)) +
                 u.frame(u.RST_STREAM, 0, sid, struct.pack(">I", u.CANCEL)))
    return data


def rapid_reset(srv):
    for tls in (False, True):
        what = "TLS" if tls else "h2c"
        c = u.Conn(srv.https_port if tls else srv.port, tls=tls)
        c.pump(2, until=lambda: c.server_settings)
        sent, total, err = 0, 10000, None
        t = time.monotonic()
        try:  # 100 pairs at a time, giving the server up to 20 ms to react after each (without
            # the wait, a server slowed by the sanitizers or a busy machine may not have read
            # the first hundreds before the client has written all 10,000 into the socket)
            while sent < total and not (c.goaway or c.eof):
                c.send(headers_then_reset(c, "/sleep", 100))
                sent += 100
                c.pump(0.02, until=lambda: c.goaway is not None or c.eof)
        except OSError as e:
            err = e
        c.wait_closed(5)
        dt = time.monotonic() - t
        check(c.goaway is not None and c.goaway[1] != u.NO_ERROR,
              f"{what}: GOAWAY with an error code ({c.goaway}) after {sent} HEADERS+RST_STREAM "
              f"pairs ({dt:.2f} s{', ' + repr(err) if err else ''})")
        check(sent < total, f"{what}: well before the {total} pairs were all sent ({sent})")
        check(c.eof, f"{what}: then the connection was closed")
        c.close()


def continuation_flood(srv):
    variants = {"empty CONTINUATION frames": b"",
                "CONTINUATION frames of one header each": u.hpack_literal("x-a", "b")}
    for what, payload in variants.items():
        c = u.Conn(srv.port)
        c.pump(2, until=lambda: c.server_settings)
        sid = c.new_sid()
        c.send(u.frame(u.HEADERS, u.END_STREAM, sid, c.request_block("/conns")))  # no END_HEADERS
        sent, total, err = 0, 10000, None
        try:  # 10 at a time, giving the server 20 ms to react after each
            while sent < total and not (c.goaway or c.eof):
                c.send(u.frame(u.CONTINUATION, 0, sid, payload) * 10)
                sent += 10
                c.pump(0.02)
        except OSError as e:
            err = e
        closed = c.wait_closed(5)
        check(closed and sent <= 100,
              f"{what}: the connection was closed after {sent} of {total} "
              f"(GOAWAY {c.goaway}, {err!r})")
        check(sid not in c.status, "the never-ending header block was not served")
        c.close()


def hpack_bomb(srv):
    c = u.Conn(srv.port)
    c.pump(2, until=lambda: c.server_settings)
    pseudo = bytes([0x82, 0x86]) + u.hpack_literal(":path", "/conns") + \
        u.hpack_literal(":authority", "localhost")
    first = c.new_sid()  # one 4000-byte header, added to the dynamic table (index 62)
    c.send(u.frame(u.HEADERS, u.END_HEADERS | u.END_STREAM, first,
                   pseudo + u.hpack_literal("x-big", "a" * 4000, indexing=True)))
    c.pump(5, until=lambda: first in c.ended or c.eof)
    check(c.status.get(first) == 200, "the request that indexed the 4000-byte header is served")
    bombs, decoded = [], 0
    for _ in range(20):
        sid = c.new_sid()
        refs = bytes([0xBE])  # "indexed header field 62": 1 byte -> 4005 bytes decoded
        data = u.frame(u.HEADERS, u.END_STREAM, sid, pseudo + refs * (16384 - len(pseudo)))
        data += b"".join(u.frame(u.CONTINUATION, 0, sid, refs * 16384) for _ in range(7))
        data += u.frame(u.CONTINUATION, u.END_HEADERS, sid, refs * 16384)
        decoded += 9 * 16384 * 4005
        try:
            c.send(data)
        except OSError:
            break
        bombs.append(sid)
        c.pump(5, until=lambda: sid in c.resets or sid in c.ended or c.eof)
        if c.eof:
            break
    refused = [s for s in bombs if s in c.resets]
    check(len(bombs) == 20 and (len(refused) == 20 or c.eof),
          f"{len(bombs)} bombs of ~{decoded // len(bombs) >> 20} MiB decoded each: "
          f"{len(refused)} streams reset (codes {sorted(set(c.resets.values()))}), "
          f"GOAWAY {c.goaway}, closed {c.eof} {c.error!r}")
    check(not any(s in c.status for s in bombs), "no bomb was served")
    if not c.eof:
        st, body = c.get("/conns")
        check(st == 200, "the connection still serves a normal request after the bombs")
    c.close()


def flood(srv, frame_bytes, name):
    for tls in (False, True):
        what = f"{name} ({'TLS' if tls else 'h2c'})"
        c = u.Conn(srv.https_port if tls else srv.port, tls=tls, rcvbuf=4096)
        batch = frame_bytes * 1000
        c.sock.settimeout(2)
        sent, outcome = 0, "still accepted after 8 s"
        t = time.monotonic()
        while time.monotonic() - t < 8:
            try:
                c.sock.sendall(batch)
                sent += 1000
            except socket.timeout:
                outcome = "blocked: the server stopped reading"
                break
            except OSError as e:
                outcome = f"closed by the server ({e!r})"
                break
        check(not outcome.startswith("still"),
              f"{what}: {sent} frames sent without reading a byte, then {outcome} "
              f"({time.monotonic() - t:.2f} s)")
        # either way the connection is gone from the server within write_timeout (2 s)
        gone = u.wait_for(lambda: (u.conns(srv.port) or 99) <= 2, 8)  # prober + conns()
        check(gone, f"{what}: the flooding connection is gone from the server")
        c.close()


def ping_flood(srv):
    flood(srv, u.frame(u.PING, 0, 0, b"flooding"), "PING flood")


def settings_flood(srv):
    flood(srv, u.settings_frame({u.S_ENABLE_PUSH: 0}), "SETTINGS flood")


def zero_window(srv):
    a = u.Conn(srv.port, settings={u.S_INITIAL_WINDOW_SIZE: 0}, auto_window=False)
    b = u.Conn(srv.port, settings={u.S_INITIAL_WINDOW_SIZE: 2 ** 31 - 1}, auto_window=False)
    t = time.monotonic()
    sa = [a.request("/big") for _ in range(50)]
    sb = [b.request("/big") for _ in range(50)]
    time.sleep(1)
    peak = u.rss_kb(srv.pid) - srv.rss0
    st = u.stats(srv.port)
    check(st and st["running"] == 101, f"the 100 /big handlers run (stats {st})")
    for c, what, sids in ((a, "stream windows 0", sa),
                          (b, "connection window never opened", sb)):
        c.pump(10, until=lambda: c.eof or all(s in c.resets for s in sids))
        dt = time.monotonic() - t
        got = sum(len(x) for x in c.body.values())
        # a stream's own window shut: that stream goes; the connection's: the connection
        dropped = all(s in c.resets for s in sids) and not c.eof if c is a else c.eof
        check(dropped, f"{what}: dropped after {dt:.2f} s (write_timeout 2 s): closed {c.eof}, "
                       f"{len(c.resets)} streams reset, {got} body bytes taken")
        check(1.5 < dt < 7, f"{what}: by the write timeout, not before ({dt:.2f} s)")
        check(got <= 65535, f"{what}: nothing beyond the windows was sent ({got} bytes)")
    check(peak < 120 * MB, f"RSS growth at the peak with 100 stalled 10 MiB responses: "
                           f"{peak // MB} MiB (< 120; the whole responses are 1000 MiB)")
    st = u.wait_for(lambda: (lambda s: s if s and s["big_failed"] == 100 else None)(
        u.stats(srv.port)), 5)
    check(st, f"every /big handler ended with an error ({u.stats(srv.port)})")
    a.close()
    b.close()


def check_max_streams_acked(c, sids):
    """After the client acknowledged SETTINGS, a 129th concurrent stream: RFC 9113 5.1.2 says
    a stream error (PROTOCOL_ERROR or REFUSED_STREAM).  nghttp2 (1.52) makes it a connection
    error instead: GOAWAY(PROTOCOL_ERROR, "max concurrent streams exceeded"), and the 128
    streams in flight die with the connection.  Either is accepted here, told apart."""
    ok = [s for s in sids if c.status.get(s) == 200 and s in c.ended]
    refused = [s for s in sids if c.resets.get(s) in (u.REFUSED_STREAM, u.PROTOCOL_ERROR)]
    if c.goaway:
        check(c.goaway[1] == u.PROTOCOL_ERROR and c.eof,
              f"after the SETTINGS ACK: connection error GOAWAY {c.goaway} "
              f"(RFC 9113 5.1.2 asks for a stream error; {len(ok)} of the 128 answered)")
        if not u.QUIET:
            print("note: the 128 streams in flight were lost with the connection (nghttp2)")
    else:
        check(len(ok) == 128 and len(refused) == 12,
              f"after the SETTINGS ACK: 128 answered, 12 refused ({len(ok)}, {len(refused)})")


def max_streams(srv):
    for acked in (False, True):
        c = u.Conn(srv.port, auto_ack=acked)
        c.pump(2, until=lambda: c.server_settings and (c.settings_acked or not acked))
        if not acked:
            check(c.server_settings and c.server_settings.get(u.S_MAX_CONCURRENT_STREAMS) == 128,
                  f"the server's SETTINGS say 128 concurrent streams ({c.server_settings})")
        sids = [c.new_sid() for _ in range(140)]
        t = time.monotonic()
        c.send(b"".join(u.frame(u.HEADERS, u.END_HEADERS | u.END_STREAM, s,
                                c.request_block("/sleep")) for s in sids))
        c.pump(10, until=lambda: c.eof or all(s in c.ended or s in c.resets for s in sids))
        dt = time.monotonic() - t
        if acked:
            check_max_streams_acked(c, sids)
        else:
            ok = [s for s in sids if c.status.get(s) == 200 and s in c.ended]
            refused = [s for s in sids if c.resets.get(s) == u.REFUSED_STREAM]
            check(len(ok) == 128 and len(refused) == 12 and refused == sids[128:],
                  f"before the SETTINGS ACK: 128 streams answered, the last 12 refused with "
                  f"REFUSED_STREAM ({len(ok)}, {len(refused)}, others {c.resets})")
            check(dt < 3.0, f"the 128 one-second sleeps overlapped ({dt:.2f} s)")
            check(not c.goaway and not c.eof and c.get("/conns")[0] == 200,
                  "the connection is still usable")
        c.close()


def header_list_size(srv):
    c = u.Conn(srv.port)
    c.pump(2, until=lambda: c.server_settings)
    check(c.server_settings.get(u.S_MAX_HEADER_LIST_SIZE) == 65536,
          f"SETTINGS_MAX_HEADER_LIST_SIZE 65536 advertised ({c.server_settings})")
    for n, fits in ((15, True), (17, False), (30, False)):
        sid = c.new_sid()
        block = c.request_block("/conns") + b"".join(
            u.hpack_literal(f"x-h{i}", "v" * 4000) for i in range(n))
        chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
        data = u.frame(u.HEADERS, u.END_STREAM | (u.END_HEADERS if len(chunks) == 1 else 0),
                       sid, chunks[0])
        for j, ch in enumerate(chunks[1:], 2):
            data += u.frame(u.CONTINUATION, u.END_HEADERS if j == len(chunks) else 0, sid, ch)
        c.send(data)
        c.pump(5, until=lambda: sid in c.ended or sid in c.resets or c.eof)
        size = n * (4000 + 4 + 32) + 200
        if fits:
            check(c.status.get(sid) == 200, f"a ~{size // 1000} KB header list is served")
        else:
            check(sid in c.resets or c.status.get(sid) == 431,
                  f"a ~{size // 1000} KB header list is refused (reset {c.resets.get(sid)}, "
                  f"status {c.status.get(sid)})")
    check(not c.eof and c.get("/conns")[0] == 200, "the connection goes on serving")
    c.close()


def body_size(srv):
    c = u.Conn(srv.port)
    for size, clen in ((2 << 20, True), (2 << 20, False), (1 << 20, True), (1 << 20, False)):
        body = os.urandom(size)
        sid = c.request("/echo", "POST", [("content-length", str(size))] if clen else [],
                        end_stream=False)
        c.send_body(sid, body)
        c.pump(10, until=lambda: sid in c.ended or sid in c.resets or c.eof)
        what = f"POST {size >> 20} MiB {'with' if clen else 'without'} content-length"
        if size > 1 << 20:
            check(c.status.get(sid) == 413 and c.body.get(sid, b"").startswith(b"413"),
                  f"{what}: 413 (status {c.status.get(sid)}, reset {c.resets.get(sid)})")
        else:
            check(c.status.get(sid) == 200 and c.body.get(sid) == body,
                  f"{what}: within the limit, echoed intact")
    # a handler that answers without reading a body still on its way: the whole response,
    # then RST_STREAM(NO_ERROR) telling the client to stop sending (RFC 9113 8.1)
    sid = c.request("/conns", "POST", [("content-length", "100000")], end_stream=False)
    c.send(u.frame(u.DATA, 0, sid, b"x" * 1000))
    c.pump(5, until=lambda: sid in c.ended or sid in c.resets or c.eof)
    c.pump(0.2, until=lambda: sid in c.resets)
    check(c.status.get(sid) == 200 and sid in c.ended and bytes(c.body.get(sid, b"")).startswith(b"conns="),
          f"an unread body: the response arrives whole (status {c.status.get(sid)}, "
          f"reset {c.resets.get(sid)})")
    check(c.resets.get(sid) == u.NO_ERROR, "then RST_STREAM(NO_ERROR)")
    check(not c.eof and not c.goaway and c.get("/conns")[0] == 200,
          "the connection goes on serving")
    c.close()


def body_stream(srv):
    c = u.Conn(srv.port)
    body = os.urandom(200000)
    for path in ("/stream", "/stream?sleep=1", "/echo", "/echo?sleep=1"):
        sid = c.request(path, "POST", end_stream=False)
        c.send_body(sid, body)
        c.pump(10, until=lambda: sid in c.ended or sid in c.resets or c.eof)
        got = bytes(c.body.get(sid, b""))
        if path.startswith("/stream"):
            check(c.status.get(sid) == 200 and got == b"bytes=200000 end=0\n",
                  f"POST {path} 200 KB read in pieces, limit 64 KiB: all of it ({got!r})")
        else:
            check(c.status.get(sid) == 413,
                  f"POST {path} 200 KB read whole, limit 64 KiB: 413 (status "
                  f"{c.status.get(sid)}, reset {c.resets.get(sid)})")
    c.close()


CASES = {f.__name__: f for f in (rapid_reset, continuation_flood, hpack_bomb, ping_flood,
                                 settings_flood, zero_window, max_streams, header_list_size,
                                 body_size, body_stream)}
ENV = {"zero_window": {"H2SRV_WRITE_TIMEOUT": "2"},
       "ping_flood": {"H2SRV_WRITE_TIMEOUT": "2"},
       "settings_flood": {"H2SRV_WRITE_TIMEOUT": "2"},
       "body_size": {"H2SRV_MAX_BODY": str(1 << 20)},
       "body_stream": {"H2SRV_MAX_BODY": str(64 << 10)}}

srv = u.start("h2srv", dict(ENV.get(CASE, {}), H2SRV_DEBUG="1"))
try:
    time.sleep(0.2)
    srv.rss0 = u.rss_kb(srv.pid)
    prober = u.Prober(srv.port)
    prober.start()
    t = time.monotonic()
    rounds = 0
    try:
        # a quick attack is repeated (a fresh attacker each round, failures reported) for
        # 1.5 s, so that the normal client is served beside it many times
        while True:
            CASES[CASE](srv)
            rounds += 1
            if CASE == "zero_window" or time.monotonic() - t > 1.5:
                break
            u.QUIET = True
    finally:
        u.QUIET = False
        prober.stop()
    print(f"({CASE}: {rounds} round(s) in {time.monotonic() - t:.2f} s)")
    st = u.wait_for(lambda: (lambda s: s if s and s["running"] == 1 else None)(
        u.stats(srv.port)), 5)
    check(st, f"no handler left running afterwards ({u.stats(srv.port)})")
    growth = u.rss_kb(srv.pid) - srv.rss0
    check(growth < 120 * MB, f"RSS growth {growth // MB} MiB (< 120)")
finally:
    log = u.stop(srv)
if u.failures:  # why the server closed connections (its debug log)
    print("server log (last lines):\n" + "\n".join(log.splitlines()[-30:]))
u.finish()
