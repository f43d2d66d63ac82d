"""curl against the HTTP/2 server: `curl_clients.py h2c` (--http2-prior-knowledge on the plain
port) or `curl_clients.py tls` (--http2 by ALPN, --cacert the test CA).  Against
tests/http2/h2_test_server and the demo, each started fresh and stopped with SIGTERM (exit 0,
no sanitizer report):

  - ten URLs in one curl: one connection (the server's own connection count is 1 in every
    response, one req->conn for all ten, curl says "Re-using" nine times), HTTP/2 each;
  - GET /json; POST /form (the demo echoes the name field) and a 1 MiB POST to /echo
    (sha256 of the echo);
  - /big: 10 MiB sent with sq_http_flush in 64 KiB pieces, sha256 of what curl got;
  - /static/hello.txt with Range: 206, Content-Range, the right bytes;
  - / with --compressed: content-encoding gzip, the same page as without."""
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import h2util as u
from h2util import check

MODE = sys.argv[1] if len(sys.argv) > 1 else "h2c"
TLS = MODE == "tls"


CURL_VERSION = tuple(int(x) for x in subprocess.run(
    ["curl", "--version"], capture_output=True, text=True).stdout.split()[1].split(".")[:2])


def base(proc):
    return (f"https://localhost:{proc.https_port}" if TLS
            else f"http://127.0.0.1:{proc.port}")


def curl(*args, timeout=60):
    flags = ["--http2", "--cacert", u.CA] if TLS else ["--http2-prior-knowledge"]
    r = subprocess.run(["curl", "-sS", "--max-time", "40"] + flags + list(args),
                       capture_output=True, timeout=timeout)
    return r


def main():
    tmp = tempfile.mkdtemp(prefix="squall-h2curl-")
    srv = u.start("h2srv")
    try:
        # ten URLs, one connection (first: no other connection to this server yet)
        urls = [f"{base(srv)}/conns?i={i}" for i in range(10)]
        if TLS or CURL_VERSION >= (8, 0):
            r = curl("-v", *urls)
            out, err = r.stdout.decode(), r.stderr.decode(errors="replace")
            check(err.count("Re-using") == 9,
                  f"curl re-used its connection nine times ({err.count('Re-using')})")
            check(err.count("Connected to") == 1, "curl connected once")
            if TLS:
                check("ALPN: server accepted h2" in err, "ALPN chose h2")
        else:
            # curl 7.88.1 fails every re-use of a prior-knowledge connection ("Error in the
            # HTTP2 framing layer", curl/curl#10634, fixed in 8.0; nginx gets the same):
            # nghttp (nghttp2's client) fetches the ten URLs instead
            print(f"note: curl {'.'.join(map(str, CURL_VERSION))}: h2c re-use is broken "
                  "(curl#10634), ten URLs with nghttp")
            r = subprocess.run(["nghttp", "-v"] + urls, capture_output=True, timeout=60)
            out = r.stdout.decode(errors="replace")
            check(out.count("] Connected") == 1, "nghttp connected once")
        lines = out.split()
        counts = [x for x in lines if x.startswith("conns=")]
        ptrs = {x for x in lines if x.startswith("conn=")}
        check(r.returncode == 0 and len(counts) == 10, f"ten URLs answered ({len(counts)})")
        check(set(counts) == {"conns=1"},
              f"the server counted one connection in every response ({sorted(set(counts))})")
        check(len(ptrs) == 1, f"one req->conn for all ten requests ({len(ptrs)} distinct)")
        check(lines.count("version=2") == 10, "every request was HTTP/2 (version_major 2)")

        # 10 MiB streamed
        f = os.path.join(tmp, "big")
        t = time.monotonic()
        r = curl("-o", f, "-w", "%{http_code} %{http_version}", f"{base(srv)}/big")
        dt = time.monotonic() - t
        size = os.path.getsize(f) if os.path.exists(f) else -1
        got = hashlib.sha256(open(f, "rb").read()).hexdigest() if size >= 0 else None
        check(r.stdout == b"200 2" and size == 10 << 20,
              f"/big: 200 over HTTP/2, {size} bytes of 10 MiB ({dt:.2f} s)")
        check(got == u.big_sha256(10 << 20), "/big: sha256 of the 10 MiB is right")

        # POST 1 MiB, echoed
        body = os.urandom(1 << 20)
        fb = os.path.join(tmp, "post")
        open(fb, "wb").write(body)
        r = curl("-o", f, "-w", "%{http_code}", "--data-binary", "@" + fb,
                 "-H", "Content-Type: application/octet-stream", f"{base(srv)}/echo")
        echoed = open(f, "rb").read() if os.path.exists(f) else b""
        check(r.stdout == b"200" and hashlib.sha256(echoed).digest() == hashlib.sha256(body).digest(),
              f"POST 1 MiB to /echo: the server got it all (echo {len(echoed)} bytes, sha256 "
              f"{'equal' if echoed == body else 'differs'})")
    finally:
        log = u.stop(srv)
    check("/big ended early" not in log, "no /big handler ended early")

    demo = u.start("demo")
    try:
        r = curl("-w", "\n%{http_code} %{http_version}", f"{base(demo)}/json")
        body, _, tail = r.stdout.decode().rpartition("\n")
        ok = tail == "200 2"
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        check(ok and doc.get("framework") == "squall" and doc.get("path") == "/json",
              f"GET /json over HTTP/2 ({tail!r})")

        r = curl("-w", "\n%{http_code}", "-d", "name=h2-over-" + MODE, f"{base(demo)}/form")
        out = r.stdout.decode()
        check(out.endswith("\n200") and f"name: h2-over-{MODE}" in out,
              "POST /form: the demo echoes the name field it received")

        hello = open(os.path.join(u.STATIC, "hello.txt"), "rb").read()
        r = curl("-D", "-", "-r", "2-9", f"{base(demo)}/static/hello.txt")
        head, _, got = r.stdout.partition(b"\r\n\r\n")
        head = head.decode().lower()
        check(head.startswith("http/2 206"), f"Range: 206 ({head.splitlines()[:1]})")
        check(f"content-range: bytes 2-9/{len(hello)}" in head, "Range: content-range right")
        check(got == hello[2:10], f"Range: the right bytes ({got!r})")

        plain = curl(f"{base(demo)}/").stdout
        r = curl("--compressed", "-D", "-", f"{base(demo)}/")
        head, _, got = r.stdout.partition(b"\r\n\r\n")
        head = head.decode().lower()
        check("content-encoding: gzip" in head, "--compressed: content-encoding gzip")
        check(got == plain and len(plain) >= 1024, f"--compressed: the page decoded equals it "
                                                  f"uncompressed ({len(plain)} bytes)")
        r = curl("-H", "Accept-Encoding: gzip", f"{base(demo)}/")
        try:
            raw = gzip.decompress(r.stdout)
        except (OSError, EOFError):
            raw = None
        check(raw == plain and len(r.stdout) < len(plain),
              f"the gzip body itself ({len(r.stdout)} bytes) decompresses to the page")
    finally:
        u.stop(demo)
    u.finish()


main()
