"""Detached HTTP/2 requests finished from their sq_http_on_connection_close callback (what
http.h documents for a request that waits on something else), and a handler that reads its
body after the server was freed:

- the client resets the stream, or closes the connection, while the request is detached with
  0 or 100,000 bytes of response buffered: the callback runs once and finishes the request,
  and the server goes on serving (three streams on a new connection all answered: a stream
  object freed twice would be handed to two of them);
- the client resets or closes before the handler registers its callback (it slept first):
  the callback runs when the handler returns;
- one callback finishes every detached request there is, the next stream of the same
  connection included, while the connection's close walks its streams;
- the shutdown's deadline closes a connection with a detached request, and a handler asleep
  with an unread body reads it after the server was freed: it gets an error;
- and after each, the server exits 0 on SIGTERM with no sanitizer report."""
import struct

import h2util as u
from h2util import check

CANCEL = 8


def stat(port, key):
    st = u.stats(port)
    return st[key] if st else None


def serves(port, what):
    c = u.Conn(port)
    sids = [c.request("/conns") for _ in range(3)]
    c.pump(5, until=lambda: all(s in c.ended for s in sids))
    ok = [s for s in sids if c.status.get(s) == 200]
    c.close()
    check(len(ok) == 3, f"{what}: then three streams on a new connection are all answered "
                        f"({len(ok)})")


srv = u.start()
try:
    closed = 0

    def client_goes(path, how, what, settle):
        """A detached request on a new connection; the client resets the stream or closes the
        connection after `settle` s: its callback finishes it, and the server serves on."""
        global closed
        c = u.Conn(srv.port)
        sid = c.request(path)
        c.pump(settle, until=lambda: sid in c.ended)
        if settle >= 0.5:
            check(sid not in c.ended and sid not in c.resets,
                  f"{what}: nothing answered while detached")
        if how == "reset":
            c.send(u.frame(u.RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
        else:
            c.close()
        closed += 1
        got = u.wait_for(lambda: stat(srv.port, "detach_closed") == closed, 5)
        check(got, f"{what}: the callback finished it "
                   f"(detach_closed {stat(srv.port, 'detach_closed')}, want {closed})")
        serves(srv.port, what)
        c.close()

    for n in (0, 100000):
        for how in ("reset", "close"):
            client_goes(f"/detach?n={n}", how, f"detached with {n} bytes buffered, the client's {how}",
                        0.5)
    # the client goes before the handler registers its callback (it sleeps first): the
    # callback is told when the handler returns, not never (the 30 s timer)
    for how in ("reset", "close"):
        client_goes("/detach?n=10&sleep=1", how,
                    f"the client's {how} before the callback is registered", 0.05)

    # one callback finishes them all: the stream after it on the closing connection too
    what = "one on_close finishing three detached requests"
    a, b = u.Conn(srv.port), u.Conn(srv.port)
    sids = [a.request("/detach?n=10&all=1"), a.request("/detach?n=20000&all=1")]
    other = b.request("/detach?n=0")
    a.pump(0.5)
    b.pump(0.2)
    a.close()
    closed += 1
    got = u.wait_for(lambda: stat(srv.port, "detach_closed") == closed, 5)
    check(got, f"{what}: one callback ran (detach_closed {stat(srv.port, 'detach_closed')}, "
               f"want {closed})")
    b.pump(5, until=lambda: other in b.ended)
    check(b.status.get(other) == 200 and other in b.ended,
          f"{what}: the other connection's request was finished by it (status "
          f"{b.status.get(other)})")
    serves(srv.port, what)
    b.close()
finally:
    u.stop(srv)

# the shutdown's deadline (1 s) with a detached request, and a sleeping handler whose body
# is read after the server was freed
srv = u.start(env_extra={"H2SRV_SHUTDOWN": "1"})
try:
    c = u.Conn(srv.port)
    held = c.request("/detach?n=100")
    sleeper = c.request("/sleepread", method="POST", end_stream=False)
    c.send_body(sleeper, b"y" * 100)
    c.pump(0.5)
    check(held not in c.ended and sleeper not in c.ended, "deadline: both requests in flight")
finally:
    log = u.stop(srv)
check("/sleepread: sleep" in log and "body -" in log,
      "deadline: the handler that read its body after the server was freed got an error ("
      + next((l for l in log.splitlines() if "/sleepread" in l), "no line") + ")")
u.finish()
