"""HTTP/2 connection deadlines against tests/http2/h2_test_server (idle_timeout,
header_timeout and body_timeout shortened to 1 s by its environment):

  idle     a connection that served a request and then says nothing gets a GOAWAY
           (NO_ERROR) and is closed between 1 s and 3 s later; one that is busy for longer
           than that (two 1 s requests in a row) is not closed under them
  header   a HEADERS frame without END_HEADERS, and then nothing (no CONTINUATION): the
           connection is closed within the header timeout (by 3 s), while another client on
           its own connection keeps being served
  body     a request body trickled a byte every 0.7 s (each gap within body_timeout, the
           whole far below body_min_rate, 1 KiB/s by default): the stream is reset within
           body_timeout + received / body_min_rate (by 2.5 s), as HTTP/1.1 closes such a
           connection; the connection goes on serving
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h2util import (DATA, HEADERS, Conn, check, finish, frame, start, stop)  # noqa: E402

ENV = {"H2SRV_IDLE_TIMEOUT": "1", "H2SRV_HEADER_TIMEOUT": "1", "H2SRV_BODY_TIMEOUT": "1"}


def idle(proc):
    for tls in (False, True):
        port = proc.https_port if tls else proc.port
        c = Conn(port, tls=tls)
        st, body = c.get("/conns")
        check(st == 200, f"{'TLS' if tls else 'h2c'}: a request served ({st})")
        t0 = time.monotonic()
        closed = c.wait_closed(6)
        dt = time.monotonic() - t0
        check(closed and 0.9 < dt < 3.0,
              f"idle {'TLS' if tls else 'h2c'} connection closed after {dt:.2f} s (1 s idle timeout)")
        check(c.goaway is not None and c.goaway[1] == 0,
              f"with a GOAWAY NO_ERROR first ({c.goaway})")
        c.close()
    # busy for longer than the idle timeout (two 1 s requests in a row): served, not cut
    c = Conn(proc.port)
    results = [c.get("/sleep", timeout=8)[0] for _ in range(2)]
    check(results == [200, 200] and not c.eof,
          f"two 1 s requests in a row on a connection with a 1 s idle timeout ({results})")
    c.close()


def header(proc):
    c = Conn(proc.port)
    sid = c.new_sid()
    block = c.request_block("/conns")
    c.send(frame(HEADERS, 0, sid, block))  # no END_HEADERS, and no CONTINUATION ever
    other = Conn(proc.port)
    t0 = time.monotonic()
    served = 0
    while time.monotonic() - t0 < 0.8:
        st, _ = other.get("/conns")
        served += st == 200
        time.sleep(0.05)
    closed = c.wait_closed(5)
    dt = time.monotonic() - t0
    check(closed and dt < 3.0, f"an unfinished header block: connection closed after {dt:.2f} s")
    check(served >= 5, f"another client served meanwhile ({served} requests)")
    st, _ = other.get("/conns")
    check(st == 200, "and still served after")
    other.close()
    c.close()


def body(proc):
    c = Conn(proc.port)
    sid = c.request("/echo", "POST", end_stream=False)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 4 and sid not in c.resets and sid not in c.ended and not c.eof:
        c.send(frame(DATA, 0, sid, b"x"))
        c.pump(0.7, until=lambda: sid in c.resets or sid in c.ended or c.eof)
    dt = time.monotonic() - t0
    check(sid in c.resets and dt < 2.5,
          f"a body trickled a byte every 0.7 s: the stream reset after {dt:.2f} s "
          f"(reset {c.resets.get(sid)}, status {c.status.get(sid)})")
    st, _ = c.get("/conns")
    check(st == 200 and not c.eof, "the connection goes on serving")
    c.close()


def main():
    proc = start("h2srv", env_extra=ENV)
    try:
        idle(proc)
        header(proc)
        body(proc)
    finally:
        stop(proc)
    finish()


if __name__ == "__main__":
    main()
