#!/usr/bin/python3
"""curl (OpenSSL) against the demo's HTTPS server, verifying with the test CA:
GET (by name, by IP, by a second SAN), a refused unknown CA, POST (form and JSON), chunked
uploads (a url-encoded body and a multipart file), 100 requests over ONE connection and ONE
handshake, static files (whole, Range 206, suffix range, 416) including a 4 MiB file that
goes through the cipher instead of sendfile, gzip (--compressed and raw), and a plain-HTTP
request on the TLS port answered 400 at once."""
import gzip
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tls_util import STATIC, check, finish, require, start_https, stop, tls_fixtures  # noqa: E402

CURL_TIMEOUT = 60


def curl(*args, stdin=None):
    """curl's (exit status, stdout bytes, stderr text)."""
    r = subprocess.run(["curl", "-sS", "--max-time", "30", *args], input=stdin,
                       capture_output=True, timeout=CURL_TIMEOUT)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def split_head(raw):
    """curl -i output: (status, headers dict lower-cased, body)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


def main():
    fx = tls_fixtures()
    ca = os.path.join(fx, "ca.pem")
    # a static folder with the demo's files and a 4 MiB one (TLS has no sendfile: the
    # static handler's bytes go through the cipher)
    static = tempfile.mkdtemp(prefix="squall-tls-static-")
    for f in os.listdir(STATIC):
        shutil.copy(os.path.join(STATIC, f), static)
    big = os.urandom(4 << 20)
    with open(os.path.join(static, "big.bin"), "wb") as f:
        f.write(big)
    with open(os.path.join(STATIC, "hello.txt"), "rb") as f:
        hello = f.read()

    proc, port, tport = start_https(fx, static=static)
    base = f"https://localhost:{tport}"
    C = ("--cacert", ca)
    try:
        # --- GET, and the certificate checks -----------------------------------------
        rc, out, err = curl(*C, base + "/json")
        doc = json.loads(out) if rc == 0 else {}
        check(rc == 0 and doc.get("framework") == "squall" and doc.get("path") == "/json",
              f"GET /json over https://localhost (curl {rc} {err.strip()[:200]})")
        print(f"     /json says {out.decode(errors='replace')}")
        rc, out, err = curl(*C, f"https://127.0.0.1:{tport}/user/7")
        check(rc == 0 and json.loads(out or b"{}") == {"id": "7"}, "GET /user/7 by IP (IP SAN)")
        rc, out, err = curl(*C, "--resolve", f"a.test:{tport}:127.0.0.1", f"https://a.test:{tport}/user/8")
        check(rc == 0 and json.loads(out or b"{}") == {"id": "8"}, "GET by the a.test SAN")
        rc, out, err = curl(base + "/json")  # the system store does not know the test CA
        check(rc == 60, f"without the CA curl refuses the certificate (exit {rc})")
        rc, out, err = curl(*C, "-v", "-o", "/dev/null", base + "/json")
        m = re.search(r"SSL connection using (\S+)", err)
        alpn = re.search(r"ALPN: server accepted (\S+)", err)
        check(m is not None and "TLSv1.3" in m.group(1), f"TLS 1.3 negotiated ({m and m.group(1)})")
        check(alpn is not None and alpn.group(1) == "h2", f"ALPN h2 by default ({alpn and alpn.group(1)})")
        rc, out, err = curl(*C, "--http1.1", "-v", "-o", "/dev/null", base + "/json")
        alpn = re.search(r"ALPN: server accepted (\S+)", err)
        check(alpn is not None and alpn.group(1) == "http/1.1",
              f"ALPN http/1.1 when the client asks for it ({alpn and alpn.group(1)})")
        rc, out, err = curl(*C, "--tls-max", "1.2", "-v", "-o", "/dev/null", base + "/json")
        check(rc == 0 and "TLSv1.2" in err, "TLS 1.2 accepted too (curl --tls-max 1.2)")

        # --- POST ---------------------------------------------------------------------
        rc, out, err = curl(*C, "-d", "name=tls-post", base + "/form")
        check(rc == 0 and b"name: tls-post" in out and b"no file" in out, "POST /form (url-encoded)")
        rc, out, err = curl(*C, "-H", "Content-Type: application/json",
                            "--data-binary", '{"text": "over tls"}', base + "/chat/send")
        msg = json.loads(out or b"{}")
        check(rc == 0 and msg.get("text") == "over tls" and msg.get("ip") == "127.0.0.1",
              f"POST /chat/send (JSON) answered with the message ({out[:120]!r})")

        # --- chunked uploads ----------------------------------------------------------
        name = "c" * 200_000
        rc, out, err = curl(*C, "--http1.1", "-v", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-",
                            base + "/form", stdin=("name=" + name).encode())
        check(rc == 0 and "> Transfer-Encoding: chunked" in err and
              f"name: {name}</p>".encode() in out,
              f"chunked url-encoded POST of {len(name) + 5} bytes read whole")
        upload = os.path.join(static, "upload.bin")
        with open(upload, "wb") as f:
            f.write(os.urandom(300_000))
        rc, out, err = curl(*C, "--http1.1", "-v", "-H", "Transfer-Encoding: chunked", "-F", "name=up",
                            "-F", f"file=@{upload};type=application/x-test", base + "/form")
        check(rc == 0 and "> Transfer-Encoding: chunked" in err and
              b"upload.bin (300000 bytes, application/x-test)" in out,
              f"chunked multipart upload of 300,000 bytes ({out[-120:]!r})")

        # --- keep-alive: 100 requests, one connection, one handshake -------------------
        urls = [f"{base}/user/{i}" for i in range(100)]
        rc, out, err = curl(*C, "-v", "-w", "\n%{num_connects} %{http_code}\n", *urls)
        lines = out.decode().split("\n")
        bodies = lines[0::2][:100]
        stats = [ln.split() for ln in lines[1::2][:100]]
        reuse = err.count("Re-using existing connection")
        hello_msgs = err.count("TLS handshake, Client hello")
        connects = sum(int(s[0]) for s in stats if len(s) == 2)
        check(rc == 0 and bodies == [json.dumps({"id": str(i)}, separators=(",", ":"))
                                     for i in range(100)]
              and all(s[1] == "200" for s in stats), "100 keep-alive requests, every body right")
        check(connects == 1 and reuse == 99 and hello_msgs == 1,
              f"one TCP connection and one TLS handshake for 100 requests (num_connects sum "
              f"{connects}, 'Re-using existing connection' x{reuse}, ClientHello x{hello_msgs})")

        # --- static files and ranges --------------------------------------------------
        rc, out, err = curl(*C, base + "/static/hello.txt")
        check(rc == 0 and out == hello, "GET /static/hello.txt: the file's bytes")
        rc, out, err = curl(*C, "-i", "-r", "6-10", base + "/static/hello.txt")
        st, h, body = split_head(out)
        check(st == 206 and body == hello[6:11] and
              h.get("content-range") == f"bytes 6-10/{len(hello)}",
              f"Range 6-10: 206, {body!r}, {h.get('content-range')}")
        rc, out, err = curl(*C, "-i", "-r", "-5", base + "/static/hello.txt")
        st, h, body = split_head(out)
        check(st == 206 and body == hello[-5:], f"suffix Range -5: 206 {body!r}")
        rc, out, err = curl(*C, "-i", "-r", "1000-2000", base + "/static/hello.txt")
        st, h, body = split_head(out)
        check(st == 416 and h.get("content-range") == f"bytes */{len(hello)}", f"Range past the end: {st}")
        t0 = time.monotonic()
        rc, out, err = curl(*C, base + "/static/big.bin")
        dt = time.monotonic() - t0
        check(rc == 0 and hashlib.sha256(out).digest() == hashlib.sha256(big).digest(),
              f"GET a 4 MiB static file: every byte ({len(out)} bytes in {dt:.2f} s)")
        rc, out, err = curl(*C, "-i", "-r", "1000000-2048575", base + "/static/big.bin")
        st, h, body = split_head(out)
        check(st == 206 and body == big[1000000:2048576],
              f"Range of 1 MiB in the middle of the 4 MiB file: 206, {len(body)} bytes right")
        rc, out, err = curl(*C, "-i", "-r", "0-0,10-19", base + "/static/hello.txt")
        st, h, body = split_head(out)
        print(f"     (a multi-range request is answered {st})")

        # --- gzip ---------------------------------------------------------------------
        for path in ("/", "/chat"):
            rc0, plain, _ = curl(*C, base + path)  # curl sends no Accept-Encoding here
            rc, out, err = curl(*C, "-i", "--compressed", base + path)
            st, h, body = split_head(out)
            check(rc == 0 and rc0 == 0 and len(plain) >= 1024 and st == 200 and
                  h.get("content-encoding") == "gzip" and body == plain,
                  f"{path} with --compressed: Content-Encoding gzip, decoded = the plain "
                  f"{len(plain)} bytes")
            rc, out, err = curl(*C, "-i", "-H", "Accept-Encoding: gzip", base + path)
            st, h, body = split_head(out)
            ok = False
            try:
                ok = gzip.decompress(body) == plain and int(h.get("content-length", -1)) == len(body)
            except Exception as e:  # noqa: BLE001
                print(f"     gunzip: {e}")
            check(ok and len(body) < len(plain), f"{path}: raw gzip body of {len(body)} bytes "
                  "(Content-Length) decompresses to the page")

        # --- plain HTTP on the TLS port -----------------------------------------------
        t0 = time.monotonic()
        s = socket.create_connection(("127.0.0.1", tport), timeout=10)
        s.sendall(b"GET /json HTTP/1.1\r\nHost: localhost\r\n\r\n")
        resp = b""
        try:
            for _ in range(100):
                b = s.recv(65536)
                if not b:
                    break
                resp += b
        except OSError as e:
            print(f"     recv: {e}")
        s.close()
        dt = time.monotonic() - t0
        check(resp.startswith(b"HTTP/1.1 400 ") and
              b"The plain HTTP request was sent to HTTPS port" in resp and dt < 2.0,
              f"plain HTTP on the TLS port: 400 and closed in {dt * 1000:.0f} ms")
        rc, out, err = curl("-i", f"http://127.0.0.1:{tport}/")
        check(rc == 0 and out.startswith(b"HTTP/1.1 400"), "curl http:// on the TLS port: 400")
        # the plain port is untouched: plain HTTP there, and TLS there fails
        rc, out, err = curl(f"http://127.0.0.1:{port}/user/1")
        check(rc == 0 and json.loads(out or b"{}") == {"id": "1"}, "the plain port still serves HTTP")
        rc, out, err = curl(*C, f"https://localhost:{port}/")
        check(rc != 0, f"https:// on the plain port fails (curl exit {rc})")

        # request.protocol: /json reports it
        rc, out, err = curl(*C, f"https://localhost:{tport}/json")
        check(rc == 0 and json.loads(out or b"{}").get("protocol") == "https",
              "request.protocol is \"https\" over TLS")
        rc, out, err = curl(f"http://127.0.0.1:{port}/json")
        check(rc == 0 and json.loads(out or b"{}").get("protocol") == "http",
              "request.protocol is \"http\" on the plain port")
    finally:
        stop(proc)
        shutil.rmtree(static, True)


if __name__ == "__main__":
    require(programs=["curl", "openssl"])
    main()
    finish()
