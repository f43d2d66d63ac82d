#!/usr/bin/python3
"""Python clients against the demo's HTTPS server, verifying with the test CA:
  - http.client over ssl: 2,000 requests from 50 threads, one keep-alive connection each
    (no reconnect allowed), every body checked (/user/N, /json, /static/hello.txt, POST);
  - Tornado's AsyncHTTPClient (simple_httpclient, ca_certs): 2,000 requests, 50 at once
    (a new connection, so a new handshake, per request), every body checked, gzip included;
  - a certificate the client does not trust is refused by both."""
import asyncio
import logging
import http.client
import json
import os
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tls_util import (STATIC, check, client_context, finish, percentile, require, start_https,
    stop, tls_fixtures)  # noqa: E402

REQUESTS = 2000
CONCURRENCY = 50


def expected(i, index_page, hello):
    """(method, path, body to send, expected body) for request number i."""
    k = i % 10
    if k == 0:
        return "GET", "/json", None, None  # checked as JSON
    if k == 1:
        return "GET", "/static/hello.txt", None, hello
    if k == 2:
        return "POST", "/form", f"name=p{i}".encode(), f"name: p{i}</p>".encode()
    if k == 3:
        return "GET", "/", None, index_page
    return "GET", f"/user/{i}", None, json.dumps({"id": str(i)}, separators=(",", ":")).encode()


def body_ok(path, body, want):
    if path == "/json":
        try:
            d = json.loads(body)
        except ValueError:
            return False
        return d.get("framework") == "squall" and d.get("path") == "/json" and d.get("numbers") == [1, 2, 3]
    if path == "/form":
        return want in body
    return body == want


def http_client_run(tport, ctx, index_page, hello):
    errors = []
    lat = []
    reconnects = [0]
    lock = threading.Lock()
    per = REQUESTS // CONCURRENCY

    def worker(w):
        conn = http.client.HTTPSConnection("localhost", tport, context=ctx, timeout=30)
        sock = None
        try:
            for j in range(per):
                i = w * per + j
                method, path, send, want = expected(i, index_page, hello)
                hdrs = {"Content-Type": "application/x-www-form-urlencoded"} if send else {}
                a = time.monotonic()
                conn.request(method, path, send, hdrs)
                r = conn.getresponse()
                body = r.read()
                d = time.monotonic() - a
                if sock is None:
                    sock = conn.sock
                elif conn.sock is not sock:
                    with lock:
                        reconnects[0] += 1
                    sock = conn.sock
                with lock:
                    lat.append(d)
                    if r.status != 200 or not body_ok(path, body, want):
                        errors.append((i, path, r.status, body[:80]))
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append((w, "exception", repr(e)))
        finally:
            conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    dt = time.monotonic() - t0
    lat.sort()
    print(f"     http.client: {len(lat)} responses in {dt:.2f} s, p50 {percentile(lat, 50) * 1000:.1f} ms, "
          f"p99 {percentile(lat, 99) * 1000:.1f} ms")
    check(not any(t.is_alive() for t in threads), "http.client: every thread finished")
    check(len(lat) == REQUESTS and not errors,
          f"http.client over ssl: {REQUESTS} requests, {CONCURRENCY} threads, all correct "
          f"({len(errors)} wrong: {errors[:3]})")
    check(reconnects[0] == 0,
          f"http.client: each thread kept its one connection ({reconnects[0]} reconnects)")


def tornado_run(tport, fx, index_page, hello):
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    logging.getLogger("tornado.general").setLevel(logging.ERROR)  # the refusal below

    async def go():
        client = AsyncHTTPClient(force_instance=True, max_clients=CONCURRENCY)
        errors = []
        gz = [0]
        counter = iter(range(REQUESTS))
        done = [0]

        async def worker():
            for i in counter:
                method, path, send, want = expected(i, index_page, hello)
                req = HTTPRequest(f"https://localhost:{tport}{path}", method=method, body=send,
                                  ca_certs=os.path.join(fx, "ca.pem"), validate_cert=True,
                                  decompress_response=True, connect_timeout=30,
                                  request_timeout=60)
                try:
                    r = await client.fetch(req, raise_error=False)
                except Exception as e:  # noqa: BLE001
                    errors.append((i, path, repr(e)))
                    continue
                if path == "/" and r.headers.get("X-Consumed-Content-Encoding") == "gzip":
                    gz[0] += 1
                if r.code != 200 or not body_ok(path, r.body or b"", want):
                    errors.append((i, path, r.code, (r.body or b"")[:80], r.error))
                done[0] += 1

        t0 = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CONCURRENCY))), 120)
        dt = time.monotonic() - t0
        # an untrusted server certificate (no ca_certs: the system store) is refused
        refused = False
        try:
            await client.fetch(f"https://localhost:{tport}/json", validate_cert=True, connect_timeout=10)
        except ssl.SSLCertVerificationError:
            refused = True
        except Exception as e:  # noqa: BLE001
            refused = "CERTIFICATE_VERIFY_FAILED" in repr(e)
        client.close()
        return errors, gz[0], done[0], dt, refused

    errors, gz, done, dt, refused = asyncio.run(go())
    print(f"     tornado: {done} responses in {dt:.2f} s")
    check(done == REQUESTS and not errors,
          f"Tornado AsyncHTTPClient over https: {REQUESTS} requests, {CONCURRENCY} at once, all "
          f"correct ({len(errors)} wrong: {errors[:3]})")
    check(gz == REQUESTS // 10, f"Tornado: every / came gzipped and decoded right ({gz})")
    check(refused, "Tornado refuses the server without the test CA")


def main():
    fx = tls_fixtures()
    ctx = client_context(fx)
    with open(os.path.join(STATIC, "hello.txt"), "rb") as f:
        hello = f.read()
    proc, port, tport = start_https(fx)
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/")
        index_page = c.getresponse().read()
        c.close()
        http_client_run(tport, ctx, index_page, hello)
        tornado_run(tport, fx, index_page, hello)
        # a client trusting another CA (the self-signed certificate) fails the handshake
        other = ssl.create_default_context(cafile=os.path.join(fx, "selfsigned.pem"))
        c = http.client.HTTPSConnection("localhost", tport, context=other, timeout=10)
        try:
            c.request("GET", "/json")
            ok = False
        except ssl.SSLCertVerificationError:
            ok = True
        c.close()
        check(ok, "http.client trusting another CA: certificate verify failed")
        # the server is fine after all that
        c = http.client.HTTPSConnection("localhost", tport, context=ctx, timeout=10)
        c.request("GET", "/user/5")
        r = c.getresponse()
        check(r.status == 200 and r.read() == b'{"id":"5"}', "served after the runs")
        c.close()
    finally:
        stop(proc)


if __name__ == "__main__":
    require(programs=["openssl"], modules=["tornado"])
    main()
    finish()
