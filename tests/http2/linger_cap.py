"""The lingering close of an HTTP/2 connection is capped in bytes, as HTTP/1.1's is.

After its GOAWAY (here: SIGTERM, the graceful shutdown, with a 30 s deadline) the server shuts
its side and drains what the peer still sends until the peer has taken the end of the
responses.  A peer that reads the response slowly (a small receive buffer, 1 KiB every 0.1 s:
the server sees progress and keeps waiting) while it streams bytes the server only drops is
cut off once 4 MiB were drained (SQ__HTTP_LINGER_MAX), not kept for as long as it reads."""
import os
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h2util as u  # noqa: E402
from h2util import check  # noqa: E402

CAP = 4 << 20
# unknown frame types are ignored (RFC 9113 4.1): harmless before the GOAWAY, drained after
JUNK = u.frame(0xF0, 0, 0, b"j" * 16384) * 4

srv = u.start("h2srv", {"H2SRV_SHUTDOWN": "30", "H2SRV_DEBUG": "1"})
term = False
try:
    c = u.Conn(srv.port, rcvbuf=4096, auto_window=False,
               settings={u.S_INITIAL_WINDOW_SIZE: 16 << 20})
    c.send(u.frame(u.WINDOW_UPDATE, 0, 0, struct.pack(">I", 16 << 20)))
    c.request(f"/big?n={256 << 10}")
    s = c.sock
    s.setblocking(False)
    sent = got = 0
    cut = None
    t0 = time.monotonic()
    next_read = t0
    while time.monotonic() - t0 < 15:
        try:
            if time.monotonic() >= next_read:  # a slow reader: 1 KiB every 0.1 s
                next_read += 0.1
                b = s.recv(1024)
                if not b:
                    cut = "EOF"
                    break
                got += len(b)
            for _ in range(4):
                sent += s.send(JUNK)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            cut = repr(e)
            break
        if not term and time.monotonic() - t0 > 0.5:
            srv.send_signal(signal.SIGTERM)  # GOAWAY; the shutdown waits 30 s at most
            term = True
        time.sleep(0.01)
    dt = time.monotonic() - t0
    check(cut is not None and dt < 10 and got < (256 << 10),
          f"a lingering HTTP/2 peer that keeps sending is cut off ({cut or 'still open'} after "
          f"{dt:.1f} s, {sent >> 10} KiB sent, {got >> 10} KiB of the response read; the "
          f"shutdown's deadline is 30 s)")
    c.close()
finally:
    if term:  # it is stopping already: a second SIGTERM could land after its handler is gone
        try:
            srv.wait(30)
        except Exception:
            pass
    log = u.stop(srv)
check(f"sent {CAP >> 10} KiB more after the response" in log,
      "by the lingering close's byte cap (the server's debug log says so)")
u.finish()
