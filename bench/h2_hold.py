#!/usr/bin/python3
"""Holds N idle HTTP/2 connections (bench/h2_compare.sh's memory part).

    h2_hold.py [--tls] PORT PATH N

Opens N connections to 127.0.0.1:PORT one after the other (h2 by ALPN with --tls, else h2c
by prior knowledge), gets one GET PATH answered on each (SETTINGS acknowledged both ways),
prints "answered N ok=K" (K: the 2xx among them) and then holds them all, idle, until stdin
is closed; then closes them and exits.  Errors go to stderr, one line per failed connection.
Python's h2 package (Debian's python3-h2)."""
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events


def one(port, path, ctx):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    if ctx:
        s = ctx.wrap_socket(s, server_hostname="localhost")
        if s.selected_alpn_protocol() != "h2":
            raise RuntimeError("ALPN chose %r" % s.selected_alpn_protocol())
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.send_headers(1, [(":method", "GET"), (":path", path), (":scheme", "https" if ctx else "http"),
                       (":authority", "localhost")], end_stream=True)
    s.sendall(c.data_to_send())
    status, done = None, False
    while not done:
        data = s.recv(65536)
        if not data:
            raise RuntimeError("closed before the response ended")
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = dict(ev.headers).get(b":status")
            elif isinstance(ev, h2.events.DataReceived):
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                done = True
        out = c.data_to_send()
        if out:
            s.sendall(out)
    return s, status is not None and status.startswith(b"2")


def main():
    args = sys.argv[1:]
    tls = args and args[0] == "--tls"
    if tls:
        args = args[1:]
    port, path, n = int(args[0]), args[1], int(args[2])
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
    held, ok = [], 0
    for _ in range(n):
        try:
            s, good = one(port, path, ctx)
            held.append(s)
            ok += good
        except Exception as e:  # noqa: BLE001 (counted, reported, the rest go on)
            print("connection failed: %s" % e, file=sys.stderr)
    print("answered %d ok=%d" % (n, ok), flush=True)
    sys.stdin.read()
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
