"""HTTP/2 flow control per stream against tests/http2/h2_test_server: one stream held back by
its peer or its handler holds back that stream only, never the connection's other streams.

  stall    write_timeout 1 s.  The client grants no stream-level window (SETTINGS
           INITIAL_WINDOW_SIZE 4096, no WINDOW_UPDATE for those streams) to two downloads:
           /big?n=60000 (its handler finishes with the bytes queued) and /big?n=1000000 (its
           handler waits in sq_http_flush), while a third stream uploads to /stream in
           pieces every 0.25 s for 3 s and the connection-level window stays open.  The two
           stalled streams are reset (CANCEL) by the write timeout, the waiting handler's
           flush fails with ETIMEDOUT, and the upload is answered on the same connection,
           which goes on serving: only a connection-level stall closes the connection
           (attacks.py zero_window)
  upload   four streams upload to /sleepread (handlers that do not read for 8 s) their whole
           stream windows, 1 MiB in all, as much as the connection's receive window; a fifth
           stream's 200 KB upload to /echo must still complete: the connection window is
           credited as bytes are buffered per stream, and only the streams whose handlers do
           not read stay held back (their stream windows not credited)
  cap      forty streams upload to /sleepread as much as their windows allow (10 MiB in
           all): the connection window is credited on arrival only while the streams hold
           at most 4 MiB unread (H2_UNREAD_MAX), so the peer gets to send at most that and
           the 1 MiB connection window, not forty stream windows' worth
"""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h2util as u  # noqa: E402
from h2util import DATA, WINDOW_UPDATE, Conn, check, finish, frame  # noqa: E402

CASE = sys.argv[1] if len(sys.argv) > 1 else "stall"


def stall(proc):
    c = Conn(proc.port, settings={u.S_INITIAL_WINDOW_SIZE: 4096}, auto_window=False)
    c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 16 << 20)))  # the connection's: open
    done = c.request("/big?n=60000")
    waiting = c.request("/big?n=1000000")
    up = c.request("/stream", "POST", end_stream=False)
    t0 = time.monotonic()
    sent, reset_at = 0, {}
    while time.monotonic() - t0 < 3 and not c.eof and not c.error and up not in c.resets:
        c._try_send(frame(DATA, 0, up, b"u" * 1024))
        sent += 1024
        c.pump(0.25)
        for s in (done, waiting):
            if s in c.resets and s not in reset_at:
                reset_at[s] = time.monotonic() - t0
    c._try_send(frame(DATA, u.END_STREAM, up))
    c.pump(5, until=lambda: up in c.ended or up in c.resets or c.eof)
    for s, what in ((done, "a finished response"), (waiting, "a handler waiting in flush")):
        check(c.resets.get(s) == u.CANCEL and 0.9 < reset_at.get(s, 0) < 2.5,
              f"{what}, its stream window withheld: stream reset CANCEL after "
              f"{reset_at.get(s, 0):.2f} s (write_timeout 1 s; reset {c.resets.get(s)})")
        check(len(c.body.get(s, b"")) <= 4096,
              f"{what}: nothing beyond its window sent ({len(c.body.get(s, b''))} bytes)")
    got = bytes(c.body.get(up, b""))
    check(not c.eof and c.goaway is None, f"the connection stays open (eof {c.eof}, goaway "
                                          f"{c.goaway}, error {c.error})")
    check(c.status.get(up) == 200 and got == f"bytes={sent} end=0\n".encode(),
          f"the upload on the same connection answered whole ({c.status.get(up)} {got!r}, "
          f"{sent} bytes sent)")
    st = c.get("/conns")[0] if not (c.eof or c.error) else None
    check(st == 200, f"the connection goes on serving ({st})")
    c.close()
    st = u.wait_for(lambda: (lambda s: s if s and s["big_failed"] == 1 else None)(
        u.stats(proc.port)), 5)
    check(st and st["big_ok"] == 1, f"the waiting handler's flush failed, the other's "
                                    f"finished ({u.stats(proc.port)})")
    log = u.log_text(proc)
    check("/big ended early: " + os.strerror(110) in log,
          "the waiting handler's flush failed with ETIMEDOUT")


def fill(c, sid, n, deadline):
    """n bytes of DATA on sid, within the windows, without END_STREAM; bytes sent."""
    end, sent = time.monotonic() + deadline, 0
    while sent < n and time.monotonic() < end and not c.eof and sid not in c.resets:
        k = min(n - sent, 16384, c.conn_window, c.stream_window.get(sid, 0))
        if k <= 0:
            c.pump(0.1)
            continue
        c.send(frame(DATA, 0, sid, b"b" * k))
        c.conn_window -= k
        c.stream_window[sid] -= k
        sent += k
        c.pump(0)
    return sent


def upload(proc):
    c = Conn(proc.port)
    # the server's SETTINGS (stream windows of 256 KiB) and its connection window (1 MiB)
    c.pump(5, until=lambda: c.server_settings and c.conn_window > 65535)
    win, conn_win = c.init_window, c.conn_window
    check(win == 256 << 10 and conn_win == 1 << 20,
          f"stream windows {win}, connection window {conn_win}")
    blockers = [c.request("/sleepread", "POST", end_stream=False) for _ in range(4)]
    sent = [fill(c, s, win, 5) for s in blockers]
    check(sent == [win] * 4, f"four unread uploads filled their stream windows ({sent})")
    c.pump(0.5)
    sid = c.request("/echo", "POST", end_stream=False)
    body = os.urandom(200000)
    t0 = time.monotonic()
    whole = c.send_body(sid, body, deadline=5)
    c.pump(5, until=lambda: sid in c.ended or sid in c.resets or c.eof)
    dt = time.monotonic() - t0
    check(whole and c.status.get(sid) == 200 and bytes(c.body.get(sid, b"")) == body,
          f"a fifth stream's 200 KB upload echoed beside them in {dt:.2f} s (sent whole "
          f"{whole}, status {c.status.get(sid)}, {len(c.body.get(sid, b''))} bytes back)")
    check(all(c.stream_window.get(s) == 0 for s in blockers),
          f"the unread streams stay held back by their own windows "
          f"({[c.stream_window.get(s) for s in blockers]})")
    c.close()


def cap(proc):
    c = Conn(proc.port)
    c.pump(5, until=lambda: c.server_settings and c.conn_window > 65535)
    win = c.init_window
    streams = [c.request("/sleepread", "POST", end_stream=False) for _ in range(40)]
    sent = sum(fill(c, s, win, 0.15) for s in streams)
    c.pump(0.5)  # any window the server still had to give
    sent += sum(fill(c, s, c.stream_window.get(s, 0), 0.1) for s in streams)
    check((4 << 20) <= sent <= (5 << 20) + (256 << 10),
          f"the peer could make the connection buffer {sent >> 10} KiB of unread uploads "
          f"(forty stream windows: {40 * win >> 10} KiB; the bound: 4 MiB + the 1 MiB window)")
    check(not c.eof and not c.error, "the connection stays open")
    c.close()


ENV = {"stall": {"H2SRV_WRITE_TIMEOUT": "1"}, "upload": {}, "cap": {}}


def main():
    proc = u.start("h2srv", env_extra=dict(ENV[CASE], H2SRV_DEBUG="1"))
    try:
        {"stall": stall, "upload": upload, "cap": cap}[CASE](proc)
    finally:
        log = u.stop(proc)
    if u.failures:
        print("server log (last lines):\n" + "\n".join(log.splitlines()[-30:]))
    finish()


if __name__ == "__main__":
    main()
