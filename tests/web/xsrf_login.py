"""XSRF protection and login on the demo (--xsrf-cookies), with Python's http.client as the
browser: a same-site form post (cookie + the page's hidden token) passes; a cross-site one
(the browser sends the cookie, but the attacker's page cannot read the token) is refused with
403, as are a wrong token and a token without its cookie; the X-XSRFToken header works;
`authenticated` redirects GET to /login?next=… and the login flow sets a signed cookie, which
a Tornado app with the same cookie_secret reads (and whose signed cookie logs in here)."""
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse

from tornado.web import create_signed_value, decode_signed_value

sys.path.insert(0, os.path.dirname(__file__))
import demo_util as u  # noqa: E402

check = u.check


class Browser:
    def __init__(self, port):
        self.port = port
        self.cookies = {}

    def request(self, method, path, fields=None, headers=None, cookies=True):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = dict(headers or {})
        body = None
        if fields is not None:
            body = urllib.parse.urlencode(fields)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        if cookies and self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        text = r.read().decode(errors="replace")
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                val = rest.split(";")[0]
                if "Max-Age=0" in v or "expires=Thu, 01 Jan 1970" in v or 'Expires=Thu, 01 Jan 1970' in v:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = val
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), text


def token(html):
    m = re.search(r'name="_xsrf" value="([^"]+)"', html)
    return m.group(1) if m else None



env = {"SQUALL_DEMO_HTTPS_PORT": "off"}
log = tempfile.TemporaryFile(mode="w+")
proc = subprocess.Popen([os.path.join(u.BUILD, "examples", "demo"), "--port=0", "--xsrf-cookies",
                         f"--static-dir={u.STATIC}"],
                        stdout=subprocess.PIPE, stderr=log, text=True,
                        env=dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=1",
                                 **env))
proc.log = log
port = int(proc.stdout.readline().split()[-1])
try:
    b = Browser(port)
    st, h, html = b.request("GET", "/form")
    t1 = token(html)
    check(st == 200 and t1 is not None and "_xsrf" in b.cookies, "GET /form: a hidden _xsrf field and the _xsrf cookie")
    st, h, html = b.request("GET", "/form")
    t2 = token(html)
    check(t2 is not None and t2 != t1, "each page gets a differently masked token")
    # same-site: the page's own form, cookie and token
    st, h, text = b.request("POST", "/form", {"_xsrf": t1, "name": "same site"})
    check(st == 200 and "same site" in text, f"same-site form post with the token: {st}")
    st, h, text = b.request("POST", "/form", {"_xsrf": t2, "name": "second token"})
    check(st == 200, f"the other masked token is valid too: {st}")
    # cross-site: the browser sends the cookie, the attacker's page has no token
    st, h, text = b.request("POST", "/form", {"name": "evil"})
    check(st == 403, f"cross-site form post (cookie, no token): {st}")
    st, h, text = b.request("POST", "/form", {"_xsrf": "2|" + "0" * 32 + "|" + "1" * 32, "name": "evil"})
    check(st == 403, f"a forged token: {st}")
    fresh = Browser(port)
    st, h, text = fresh.request("POST", "/form", {"_xsrf": t1, "name": "evil"})
    check(st == 403, f"a stolen token without its cookie: {st}")
    st, h, text = b.request("POST", "/form", {"name": "by header"}, headers={"X-XSRFToken": t1})
    check(st == 200, f"the X-XSRFToken header: {st}")
    st, h, text = b.request("POST", "/form", {"name": "by header"}, headers={"X-CSRFToken": t2})
    check(st == 200, f"the X-CSRFToken header: {st}")
    st, h, text = b.request("POST", "/form?_xsrf=" + urllib.parse.quote(t1), {"name": "by query"})
    check(st == 200, f"the token in the query string (Tornado's get_argument): {st}")
    st, h, text = b.request("POST", "/form", {"_xsrf": "", "name": "empty field"}, headers={"X-XSRFToken": t2})
    check(st == 200, f"an empty _xsrf field, the token in the header: {st}")
    st, h, text = fresh.request("POST", "/form?_xsrf=" + urllib.parse.quote(t1), {"name": "evil"})
    check(st == 403, f"a token in the query without its cookie: {st}")
    st, h, text = fresh.request("POST", "/chat/send", {"text": "api"})
    check(st == 200, f"/chat/send (no_xsrf_check) needs no token: {st}")

    # Tornado's token formats, as a Tornado app on the same site sets them: version 2
    # "2|<4-byte mask>|<masked token>|<timestamp>" and version 1 (the token in hex); and
    # squall's own tokens have Tornado's version 2 form, so that Tornado reads them
    def tornado_v2(raw):
        mask = os.urandom(4)
        masked = bytes(c ^ mask[i % 4] for i, c in enumerate(raw))
        return "2|%s|%s|%d" % (mask.hex(), masked.hex(), int(time.time()))
    raw = os.urandom(16)
    tb = Browser(port)
    tb.cookies["_xsrf"] = tornado_v2(raw)
    st, h, text = tb.request("POST", "/form", {"_xsrf": tornado_v2(raw), "name": "tornado v2"})
    check(st == 200 and "tornado v2" in text, f"Tornado's version 2 cookie and token: {st}")
    tb.cookies["_xsrf"] = raw.hex()
    st, h, text = tb.request("POST", "/form", {"name": "tornado v1"}, headers={"X-XSRFToken": tornado_v2(raw)})
    check(st == 200, f"Tornado's version 1 cookie, a version 2 token: {st}")
    st, h, text = tb.request("POST", "/form", {"_xsrf": tornado_v2(os.urandom(16)), "name": "evil"})
    check(st == 403, f"a Tornado token of another cookie: {st}")
    check(re.fullmatch(r"2\|[0-9a-f]{8}\|[0-9a-f]{32}\|[0-9]+", t1) is not None,
          f"squall's token has Tornado's version 2 form: {t1}")

    # login
    st, h, _ = b.request("GET", "/secret")
    check(st == 302 and h.get("location") == "/login?next=%2Fsecret",
          f"authenticated: GET /secret redirects to the login page ({st} {h.get('location')})")
    st, h, html = b.request("GET", "/login?next=%2Fsecret")
    tl = token(html)
    check(st == 200 and tl and 'value="/secret"' in html, "the login page carries the token and next")
    st, h, _ = b.request("POST", "/login", {"name": "ann", "next": "/secret"})
    check(st == 403 and "user" not in b.cookies, f"login without the token: {st}")
    st, h, _ = b.request("POST", "/login", {"_xsrf": tl, "name": "ann", "next": "/secret"})
    check(st == 302 and h.get("location") == "/secret" and "user" in b.cookies,
          f"login with the token: {st} to {h.get('location')}, a signed user cookie")
    st, h, html = b.request("GET", "/secret")
    check(st == 200 and "Hello, ann" in html, f"GET /secret as ann: {st}")
    demo_secret = "squall-demo-secret-do-not-use-in-production"  # examples/demo.c
    check(decode_signed_value(demo_secret, "user", b.cookies["user"]) == b"ann",
          f"Tornado with the demo's cookie_secret reads the user cookie: {b.cookies['user'][:24]}…")
    tb = Browser(port)
    tb.cookies["user"] = create_signed_value(demo_secret, "user", "tom").decode()
    st, h, text = tb.request("GET", "/secret")
    check(st == 200 and "Hello, tom" in text, f"a user cookie Tornado signed logs in: {st}")
    forged = Browser(port)
    forged.cookies = dict(b.cookies)
    v = b.cookies["user"]
    forged.cookies["user"] = v[:-1] + ("0" if v[-1] != "0" else "1")  # the signature broken
    st, h, _ = forged.request("GET", "/secret")
    check(st == 302, f"a tampered user cookie is nobody: {st}")
    st, h, _ = b.request("POST", "/login", {"_xsrf": tl, "name": "ann", "next": "//evil.example/"})
    check(st == 302 and h.get("location") == "/secret", f"no open redirect through next ({h.get('location')})")
    st, h, _ = b.request("POST", "/logout", {"_xsrf": token(html)})
    check(st == 302 and "user" not in b.cookies, f"logout: {st}, the cookie cleared")
    st, h, _ = b.request("GET", "/secret")
    check(st == 302, "after logout /secret redirects again")
finally:
    u.stop(proc)

# without --xsrf-cookies nothing is asked
proc, port = u.start(env_extra={"SQUALL_DEMO_HTTPS_PORT": "off"})
try:
    st, h, text = Browser(port).request("POST", "/form", {"name": "plain"})
    check(st == 200, f"without xsrf_cookies a form posts without a token: {st}")
finally:
    u.stop(proc)
u.finish()
