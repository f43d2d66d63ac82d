"""Web parity features with real clients on the wire (tests/web/parity_server.c): curl posts
gzip bodies (decompress_request: inflated, a bomb 413, junk 400); http.client checks
host-based routing by Host header, the redirect class (301 + Location, not followed), the
fallback (any method, PROPFIND included) and signed cookies across a key rotation — the
server restarted with key 1, then keys 1+2 (2 current), then key 2 only — which real Tornado
(decode_signed_value / create_signed_value, Debian's python3-tornado) reads and writes too."""
import gzip
import http.client
import os
import subprocess
import sys
import tempfile

from tornado.web import create_signed_value, decode_signed_value

sys.path.insert(0, os.path.dirname(__file__))
import demo_util as u  # noqa: E402

check = u.check
SERVER = os.path.join(u.BUILD, "tests", "parity_server")


class Server:
    def __init__(self, *args):
        self.p = subprocess.Popen([SERVER, *args], stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        assert line.startswith("PORT "), line
        self.port = int(line.split()[1])

    def req(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, r, data.decode(errors="replace")

    def stop(self):
        self.p.terminate()
        check(self.p.wait(timeout=10) == 0, "the server exits cleanly (ASan: no leak)")


def curl(port, *args):
    out = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", *args,
                          f"http://127.0.0.1:{port}/echo"], capture_output=True, timeout=30)
    body, _, code = out.stdout.decode(errors="replace").rpartition("\n")
    return int(code), body


s = Server("--keys=1:first-secret", "--current=1")
with tempfile.TemporaryDirectory() as tmp:
    form = b"name=squall&lang=C" * 100
    gz = os.path.join(tmp, "body.gz")
    with open(gz, "wb") as f:
        f.write(gzip.compress(form))
    code, body = curl(s.port, "--data-binary", f"@{gz}", "-H", "Content-Encoding: gzip")
    check(code == 200 and body == f"{len(form)}:" + form.decode(),
          f"curl: a gzip body ({os.path.getsize(gz)} bytes) arrives inflated ({len(form)} bytes)")
    bomb = os.path.join(tmp, "bomb.gz")
    with open(bomb, "wb") as f:
        f.write(gzip.compress(b"\0" * (64 << 20), 9))
    code, body = curl(s.port, "--data-binary", f"@{bomb}", "-H", "Content-Encoding: gzip")
    check(code == 413, f"curl: a gzip bomb ({os.path.getsize(bomb)} bytes -> 64 MiB) gets 413 ({code})")
    code, body = curl(s.port, "--data-binary", "not gzip", "-H", "Content-Encoding: gzip")
    check(code == 400 and "not valid gzip" in body, f"curl: junk labelled gzip gets 400 ({code})")
    code, body = curl(s.port, "--http2-prior-knowledge", "--data-binary", f"@{gz}", "-H",
                      "Content-Encoding: gzip")
    check(code == 200 and body == f"{len(form)}:" + form.decode(),
          "curl over HTTP/2 (h2c): the gzip body arrives inflated too")
    code, body = curl(s.port, "--http2-prior-knowledge", "--data-binary", f"@{bomb}", "-H",
                      "Content-Encoding: gzip")
    check(code == 413, f"curl over HTTP/2: the bomb gets 413 ({code})")
    code, body = curl(s.port, "--data-binary", "plain")
    check(code == 200 and body == "5:plain", "curl: a plain body is untouched")

st, _, body = s.req("GET", "/", headers={"Host": "api.localhost:8080"})
check(st == 200 and body == "api", "Host api.localhost: the api table")
st, _, body = s.req("GET", "/", headers={"Host": "www.localhost"})
check(st == 200 and body == "main /", "another Host: the main routes")
st, _, body = s.req("GET", "/elsewhere", headers={"Host": "api.localhost"})
check(st == 200 and body == "main /elsewhere", "api host, a path it lacks: on to the main table")
st, r, _ = s.req("GET", "/old/a/b?q=1")
check(st == 301 and r.getheader("Location") == "/new/a/b?q=1",
      f"redirect class: 301 to /new/a/b?q=1 ({st} {r.getheader('Location')})")
for m in ("GET", "DELETE", "PROPFIND"):
    st, _, body = s.req(m, "/raw/x")
    check(st == 200 and body == f"raw {m} /raw/x", f"fallback: {m} reaches the plain handler")



def tornado_reads(secret, cookie):
    """What a Tornado app with this cookie_secret (str or {version: str}) reads from it."""
    v = decode_signed_value(secret, "who", cookie.partition("=")[2])
    return v.decode() if v is not None else None


st, r, body = s.req("GET", "/c?set=alice")
cookie = r.getheader("Set-Cookie").split(";")[0]
check(cookie.startswith("who=2|1:1|"), f"signed with key 1 in Tornado's format: {cookie[:20]}…")
check(tornado_reads({1: "first-secret"}, cookie) == "alice",
      "Tornado with cookie_secret={1: …} reads squall's key-1 cookie")
check(tornado_reads({1: "other-secret"}, cookie) is None and tornado_reads({2: "first-secret"}, cookie) is None,
      "Tornado with another key 1, or without key 1, does not")
tv = create_signed_value({1: "first-secret"}, "who", "tornado-1", version=2, key_version=1).decode()
st, r, body = s.req("GET", "/c", headers={"Cookie": "who=" + tv})
check(body == "tornado-1", f"squall reads Tornado's key-1 cookie: {body}")
s.stop()

s = Server("--legacy=single-secret")
st, r, body = s.req("GET", "/c?set=una")
one = r.getheader("Set-Cookie").split(";")[0]
check(one.startswith("who=2|1:0|") and tornado_reads("single-secret", one) == "una",
      f"a single cookie_secret: Tornado with the same str secret reads it ({one[:20]}…)")
check(tornado_reads("other-secret", one) is None, "Tornado with another secret does not")
tv = create_signed_value("single-secret", "who", "tornado-0", version=2).decode()
st, r, body = s.req("GET", "/c", headers={"Cookie": "who=" + tv})
check(body == "tornado-0", f"squall reads Tornado's cookie of a str secret: {body}")
s.stop()

s = Server("--keys=1:first-secret,2:second-secret", "--current=2")
st, r, body = s.req("GET", "/c", headers={"Cookie": cookie})
check(body == "alice", "keys 1+2, 2 current: the key-1 cookie still reads")
st, r, body = s.req("GET", "/c?set=bob", headers={"Cookie": cookie})
cookie2 = r.getheader("Set-Cookie").split(";")[0]
check(cookie2.startswith("who=2|1:2|"), "new cookies are signed with key 2")
check(tornado_reads({1: "first-secret", 2: "second-secret"}, cookie2) == "bob",
      "Tornado with the same two keys reads it")
tampered = cookie2.replace("who=2|1:2|", "who=2|1:1|", 1)
st, r, body = s.req("GET", "/c", headers={"Cookie": tampered})
check(body == "(none)", "a key version swapped by the client fails the MAC")
s.stop()

s = Server("--keys=2:second-secret", "--current=2")
st, r, body = s.req("GET", "/c", headers={"Cookie": cookie})
check(body == "(none)", "key 1 retired: its cookie no longer reads")
st, r, body = s.req("GET", "/c", headers={"Cookie": cookie2})
check(body == "bob", "the key-2 cookie reads")
st, r, body = s.req("GET", "/c", headers={"Cookie": one})
check(body == "(none)", "a version-0 cookie without a key 0 or cookie_secret does not")
s.stop()

s = Server("--keys=2:second-secret", "--current=2", "--legacy=single-secret")
st, r, body = s.req("GET", "/c", headers={"Cookie": one})
check(body == "una", "cookie_secrets added, cookie_secret kept: the single secret's cookie reads")
s.stop()

u.finish()
