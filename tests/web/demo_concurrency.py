#!/usr/bin/python3
"""The demo's /async and /sync under concurrent real clients (Python's http.client).

100 concurrent GET /async (each sleeps 1 s on its coroutine) must all finish in < 3 s;
2 concurrent GET /sync (each blocks the loop 1 s on purpose) must take >= 2 s, proof that
blocking the loop serialises everyone and that /async does not.
"""
import http.client
import os
import signal
import subprocess
import sys
import threading
import time

demo = os.path.join(os.environ["SQ_BUILD_DIR"], "examples", "demo")
static = os.path.join(os.environ["SQ_SOURCE_DIR"], "examples", "demo", "static")
proc = subprocess.Popen([demo, "0", static], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True)
try:
    line = proc.stdout.readline()
    assert line.startswith("listening on port "), line
    port = int(line.split()[-1])

    def burst(path, n):
        results = [None] * n

        def one(i):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", path)
            resp = conn.getresponse()
            results[i] = (resp.status, resp.read())
            conn.close()

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return time.monotonic() - t0, results

    took, results = burst("/async", 100)
    assert all(r is not None and r[0] == 200 and b"without blocking" in r[1]
               for r in results), results
    print(f"100 concurrent /async: {took:.2f} s")
    assert 0.95 <= took < 3.0, took

    # A 200 MiB body to a handler that reads bodies whole: 413 at the default 100 MiB limit,
    # answered without waiting for the body.
    import socket
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded"
                 b"\r\nContent-Length: %d\r\n\r\n" % (200 << 20))
    try:
        sock.sendall(b"a" * (1 << 20))
    except OSError:
        pass  # the server may already have answered and closed
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    sock.close()
    print("200 MiB body:", head.split(b"\r\n", 1)[0].decode())
    assert head.startswith(b"HTTP/1.1 413 "), head[:200]

    took, results = burst("/sync", 2)
    assert all(r is not None and r[0] == 200 for r in results), results
    print(f"2 concurrent /sync: {took:.2f} s")
    assert took >= 1.95, took
finally:
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    if proc.returncode != 0 or "Sanitizer" in err:
        print(err, file=sys.stderr)
        sys.exit(1)
print("1 passed, 0 failed")
