"""Web parity features with real clients on the wire (tests/web/parity_server.c): curl posts
gzip bodies (decompress_request: inflated, a bomb 413, junk 400); http.client checks
host-based routing by Host header, the redirect class (301 + Location, not followed), the
fallback (any method, PROPFIND included) and signed cookies across a key rotation — the
server restarted with key 1, then keys 1+2 (2 current), then key 2 only."""
import gzip
import http.client
import os
import subprocess
import sys
import tempfile

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

st, r, body = s.req("GET", "/c?set=alice")
cookie = r.getheader("Set-Cookie").split(";")[0]
check(cookie.startswith("who=k1|"), f"signed with key 1: {cookie[:20]}…")
s.stop()

s = Server("--keys=1:first-secret,2:second-secret", "--current=2")
st, r, body = s.req("GET", "/c", headers={"Cookie": cookie})
check(body == "alice", "keys 1+2, 2 current: the key-1 cookie still reads")
st, r, body = s.req("GET", "/c?set=bob", headers={"Cookie": cookie})
cookie2 = r.getheader("Set-Cookie").split(";")[0]
check(cookie2.startswith("who=k2|"), "new cookies are signed with key 2")
tampered = cookie2.replace("who=k2|", "who=k1|", 1)
st, r, body = s.req("GET", "/c", headers={"Cookie": tampered})
check(body == "(none)", "a key version swapped by the client fails the MAC")
s.stop()

s = Server("--keys=2:second-secret", "--current=2")
st, r, body = s.req("GET", "/c", headers={"Cookie": cookie})
check(body == "(none)", "key 1 retired: its cookie no longer reads")
st, r, body = s.req("GET", "/c", headers={"Cookie": cookie2})
check(body == "bob", "the key-2 cookie reads")
s.stop()

u.finish()
