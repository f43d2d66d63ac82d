"""A connection error that nghttp2 reports as fatal (here: too many CONTINUATION frames, and
over TLS a client that is not speaking HTTP/2 after choosing it by ALPN) ends with a GOAWAY
carrying the error code (RFC 9113 5.4.1), and that GOAWAY reaches the peer: the connection
then ends in the lingering close (EOF), not in a reset that makes the peer's kernel drop it,
also when the peer had sent more (1 MiB after the bad frames) that the server never read."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h2util as u  # noqa: E402
from h2util import check  # noqa: E402

JUNK = u.frame(0xF0, 0, 0, b"j" * 16000)  # an unknown frame type: ignored if ever read

srv = u.start("h2srv")
try:
    for tls in (False, True):
        what = "TLS" if tls else "h2c"
        for junk in (0, 1 << 20):
            c = u.Conn(srv.https_port if tls else srv.port, tls=tls)
            c.pump(2, until=lambda: c.server_settings)
            sid = c.new_sid()
            data = u.frame(u.HEADERS, u.END_STREAM, sid, c.request_block("/conns"))  # no END_HEADERS
            data += u.frame(u.CONTINUATION, 0, sid, b"") * 20
            data += JUNK * (junk // len(JUNK))
            try:
                c.send(data)
            except OSError as e:
                c.error = e
            c.wait_closed(5)
            check(c.goaway is not None and c.goaway[1] == u.ENHANCE_YOUR_CALM and c.eof,
                  f"{what}, 20 CONTINUATION frames and {junk >> 10} KiB more: GOAWAY "
                  f"ENHANCE_YOUR_CALM, then the close ({c.goaway}, {c.error or 'EOF'})")
            c.close()
    # a client that chose h2 by ALPN and then sends no connection preface: PROTOCOL_ERROR
    c = u.Conn(srv.https_port, tls=True,
               preface=b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" + b"x" * 100000)
    c.wait_closed(5)
    check(c.goaway is not None and c.goaway[1] == u.PROTOCOL_ERROR and c.eof,
          f"TLS, no connection preface: GOAWAY PROTOCOL_ERROR ({c.goaway}, {c.error or 'EOF'})")
    c.close()
    check(u.Conn(srv.port).get("/conns")[0] == 200, "the server goes on serving")
finally:
    u.stop(srv)
u.finish()
