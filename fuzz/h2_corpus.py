#!/usr/bin/python3
"""Writes the seed corpus of fuzz/fuzz_h2.c: HTTP/2 client byte streams made with python3-h2
(Debian's python3-h2), each as [flags] [split] [what follows the client preface].

    /usr/bin/python3 fuzz/h2_corpus.py fuzz/corpus/fuzz_h2

The handler's behaviour for a request is (flags + len(path)) % 8 (see fuzz_h2.c): path_for
picks a path that selects the wanted one."""
import os
import sys

import h2.config
import h2.connection
import h2.settings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ECHO, STREAM, BIG, STATUS, DETACH, SENDFILE, GZIP, FLUSH = range(8)
TINY, GOAWAY, STALL = 8, 64, 128


def path_for(mode, flags, base="/p"):
    while (flags + len(base)) % 8 != mode:
        base += "x"
    return base


def client(settings=None):
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.local_settings = h2.settings.Settings(client=True, initial_values=settings)
    c.initiate_connection()
    out = c.data_to_send()
    assert out.startswith(PREFACE)
    return c, out[len(PREFACE):]


def req(c, sid, path, method="GET", extra=(), end=True):
    hdrs = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "localhost")]
    c.send_headers(sid, hdrs + list(extra), end_stream=end)


def seeds():
    # one GET /, the handler echoing the (empty) body
    f = 0
    c, b = client()
    req(c, 1, path_for(ECHO, f))
    yield "get", f, 255, b + c.data_to_send()

    # POST with a body in two DATA frames, split between them
    f = 0
    c, b = client()
    req(c, 1, path_for(ECHO, f), "POST", [("content-length", "11")], end=False)
    c.send_data(1, b"hello ")
    head = b + c.data_to_send()
    c.send_data(1, b"world", end_stream=True)
    yield "post_split", f, 0, head + c.data_to_send()

    # streamed body, with trailers ending it
    f = 1
    c, b = client()
    req(c, 1, path_for(STREAM, f), "PUT", [("content-type", "text/plain")], end=False)
    c.send_data(1, b"x" * 3000)
    c.send_data(1, b"y" * 100)
    c.send_headers(1, [("x-trailer", "1")], end_stream=True)
    yield "stream_trailers", f, 128, b + c.data_to_send()

    # several streams at once, every mode, a HEAD, the HPACK dynamic table reused
    f = 2
    c, b = client()
    for i, mode in enumerate(range(8)):
        method = "HEAD" if mode == STATUS else "GET"
        req(c, 1 + 2 * i, path_for(mode, f, "/m"), method,
            [("accept-encoding", "gzip, deflate"), ("user-agent", "seed"), ("cookie", "a=b")])
    c.ping(b"12345678")
    yield "all_modes", f, 255, b + c.data_to_send()

    # a response larger than the window, then WINDOW_UPDATEs for it
    f = 3
    c, b = client()
    req(c, 1, path_for(BIG, f))
    first = b + c.data_to_send()
    c.increment_flow_control_window(1 << 20)
    c.increment_flow_control_window(1 << 20, stream_id=1)
    yield "big_window", f, 0, first + c.data_to_send()

    # tiny limits: gzip, a body over max_body_size (413), too many streams
    f = TINY
    c, b = client()
    req(c, 1, path_for(GZIP, f), extra=[("accept-encoding", "gzip")])
    req(c, 3, path_for(ECHO, f), "POST", [("content-length", "500")], end=False)
    c.send_data(3, b"z" * 500, end_stream=True)
    for sid in (5, 7, 9, 11):
        req(c, sid, path_for(SENDFILE, f), extra=[("x-forwarded-for", "10.0.0.1"), ("x-real-ip", "10.0.0.2")])
    yield "tiny", f, 255, b + c.data_to_send()

    # headers beyond one frame: CONTINUATION
    f = 4
    c, b = client()
    req(c, 1, path_for(DETACH, f), extra=[("x-big", "v" * 20000)])
    yield "continuation", f, 255, b + c.data_to_send()

    # a stream reset while its handler waits for the body; PRIORITY; GOAWAY from the client
    f = 5
    c, b = client()
    req(c, 1, path_for(ECHO, f), "POST", end=False)
    c.send_data(1, b"partial")
    head = b + c.data_to_send()
    c.reset_stream(1)
    c.prioritize(3, weight=32, depends_on=0)
    req(c, 3, path_for(FLUSH, f))
    c.close_connection()
    yield "reset_goaway", f, 0, head + c.data_to_send()

    # settings changes mid-connection, detached and flushed responses; graceful shutdown
    f = GOAWAY | 6
    S = h2.settings.SettingCodes
    c, b = client({S.HEADER_TABLE_SIZE: 0, S.MAX_FRAME_SIZE: 16384, S.INITIAL_WINDOW_SIZE: 1})
    req(c, 1, path_for(DETACH, f))
    req(c, 3, path_for(FLUSH, f), "POST", end=False)
    c.send_data(3, b"body", end_stream=True)
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535})
    yield "settings_shutdown", f, 128, b + c.data_to_send()

    # the client never reads: backpressure with big responses
    f = STALL | 7
    c, b = client()
    for i in range(4):
        req(c, 1 + 2 * i, path_for(BIG, f, "/s"))
    c.increment_flow_control_window(1 << 24)
    for i in range(4):
        c.increment_flow_control_window(1 << 22, stream_id=1 + 2 * i)
    yield "stall", f, 255, b + c.data_to_send()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/fuzz_h2"
    os.makedirs(out, exist_ok=True)
    for name, flags, split, data in seeds():
        with open(os.path.join(out, name), "wb") as fh:
            fh.write(bytes([flags, split]) + data)


if __name__ == "__main__":
    main()
