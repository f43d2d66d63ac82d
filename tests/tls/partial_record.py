#!/usr/bin/python3
"""A TLS record that arrives in pieces costs the server no CPU while it waits for the rest.

A client (Python's ssl over memory BIOs, so that it controls every byte on the wire) does
the handshake with the demo's HTTPS port, then sends one request record but its last 5
bytes and waits.  OpenSSL holds the incomplete record; the server must sleep until the
kernel says the rest came, not poll OpenSSL in a loop (it did: 100 % of a core).  Checks:
  - the server's CPU time over the 2 s wait stays under 0.5 s, as when the client sends
    nothing at all (measured the same way first);
  - once the last bytes come, the request is answered 200;
  - the demo exits cleanly.
"""
import os
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tls_util import check, finish, require, start_https, stop, tls_fixtures  # noqa: E402

WAIT = 2.0


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def handshake(port, fx):
    ctx = ssl.create_default_context(cafile=os.path.join(fx, "ca.pem"))
    ctx.set_alpn_protocols(["http/1.1"])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inb, outb, server_hostname="localhost")
    for _ in range(50):
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            out = outb.read()
            if out:
                sock.sendall(out)
            inb.write(sock.recv(65536))
    out = outb.read()
    if out:
        sock.sendall(out)
    return sock, tls, inb, outb


def response(sock, tls, inb):
    got = b""
    deadline = time.time() + 10
    while b"\r\n\r\n" not in got and time.time() < deadline:
        data = sock.recv(65536)
        if not data:
            break
        inb.write(data)
        try:
            got += tls.read(65536)
        except ssl.SSLWantReadError:
            pass
    return got


def main():
    fx = tls_fixtures()
    proc, _, tport = start_https(fx)
    try:
        sock, tls, inb, outb = handshake(tport, fx)
        time.sleep(0.3)  # the session tickets and the server's own work are done
        tls.write(b"GET /json HTTP/1.1\r\nHost: localhost\r\n\r\n")
        record = outb.read()
        c0 = cpu_seconds(proc.pid)
        time.sleep(WAIT)
        idle = cpu_seconds(proc.pid) - c0
        sock.sendall(record[:-5])
        c0 = cpu_seconds(proc.pid)
        time.sleep(WAIT)
        waiting = cpu_seconds(proc.pid) - c0
        check(waiting < 0.5, f"server CPU while a record is incomplete: {waiting:.2f} s in {WAIT} s "
              f"(idle: {idle:.2f} s)")
        sock.sendall(record[-5:])
        got = response(sock, tls, inb)
        check(got.startswith(b"HTTP/1.1 200"), f"answered once the record is whole: {got[:40]!r}")
        sock.close()
    finally:
        stop(proc)


if __name__ == "__main__":
    require(programs=["openssl"])
    main()
    finish()
