"""The demo driven by squall/options.h: --help, bad values, a config file, --processes, the
access-log formats (text, combined, JSON lines) with a hostile User-Agent, and coloured log
lines on a terminal only.  Real clients: curl and http.client."""
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "web"))
import demo_util as u  # noqa: E402

check = u.check
DEMO = os.path.join(u.BUILD, "examples", "demo")
# what a request may carry in a header (quotes, backslashes, a tab, bytes >= 0x80; other
# control bytes are refused by the parser with a 400 before any handler runs)
HOSTILE_UA = 'evil "agent" \\ with\ttab and ü'


free_port = u.free_port


def run(args, timeout=20):
    return subprocess.run([DEMO] + args, capture_output=True, text=True, timeout=timeout)


def curl(url, *extra):
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *extra, url],
                       capture_output=True, timeout=20)
    return r.stdout.decode()


def help_and_errors():
    r = run(["--help"])
    check(r.returncode == 0, f"demo --help exits 0 ({r.returncode})")
    for name in ["--port=integer", "--https-port=PORT|off", "--processes=integer", "--redis=URL",
                 "--logging=debug|info|warning|error|none", "--log-format=text|combined|json",
                 "--log-color=auto|on|off", "--config=FILE"]:
        check(name in r.stdout, f"--help lists {name}")
    r = run(["--port=abc"])
    check(r.returncode == 2 and "--port: not an integer: 'abc'" in r.stderr,
          f"--port=abc: exit 2 and a clear message ({r.returncode}: {r.stderr.strip()!r})")
    r = run(["--log-format=xml"])
    check(r.returncode == 2 and "'xml' is not one of text, combined, json" in r.stderr,
          f"--log-format=xml refused ({r.stderr.strip()!r})")
    # a port given as text is all of it a number (atoi made "abc" port 0: any free one)
    for args, msg in [(["abc"], "demo: PORT: not a port number: 'abc'"),
                      (["80x"], "demo: PORT: not a port number: '80x'"),
                      (["--port=0", "--https-port=abc"], "demo: --https-port: not a port number: 'abc'")]:
        try:
            r = run(args, timeout=5)
            ok, got = r.returncode == 2 and msg in r.stderr, f"{r.returncode}: {r.stderr.strip()!r}"
        except subprocess.TimeoutExpired as e:
            ok, got = False, f"it started instead: {e.stdout!r}"
        check(ok, f"demo {' '.join(args)}: exit 2 and a clear message ({got})")
    r = run(["--processes=2", "--port=0"])
    check(r.returncode == 2 and "fixed --port" in r.stderr, "--processes with port 0 refused")


def start_with(args, env_extra=None):
    """The demo with `args`, stderr in a file; returns (proc, port)."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=1"
    env.update(env_extra or {})
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([DEMO] + args, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    line = proc.stdout.readline()
    check(line.startswith("listening on port "), f"the demo started ({line.strip()!r})")
    proc.log = log
    return proc, int(line.split()[-1]) if line.startswith("listening") else 0


def access_lines(proc, marker):
    text = u.log_text(proc)
    return [ln for ln in text.splitlines() if marker in ln]


def config_file_and_formats():
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write("# the demo, configured from a file\nport = 0\nhttps-port = off\n"
                "log_format = json   # one object per line\n")
        conf = f.name
    try:
        proc, port = start_with([f"--config={conf}", f"--static-dir={u.STATIC}"])
        code = curl(f"http://127.0.0.1:{port}/json?x=%22q%22", "-A", HOSTILE_UA, "-e", "http://ref/")
        check(code == "200", f"GET /json through curl: {code}")
        curl(f"http://127.0.0.1:{port}/nope")
        time.sleep(0.3)
        log = u.stop(proc)
        lines = [ln for ln in log.splitlines() if '"uri"' in ln]
        check(len(lines) == 2, f"two JSON access lines ({len(lines)})")
        objs = []
        for ln in lines:
            body = ln[ln.index("{"):]
            try:
                objs.append(json.loads(body))
            except ValueError as e:
                check(False, f"an access line is valid JSON ({e}: {body!r})")
        if len(objs) == 2:
            a, b = objs
            check(a["method"] == "GET" and a["uri"] == '/json?x=%22q%22' and a["status"] == 200
                  and a["version"] == "HTTP/1.1" and a["bytes"] > 0 and a["remote"] == "127.0.0.1"
                  and a["duration_ms"] >= 0 and a["referer"] == "http://ref/",
                  f"the JSON line has the request's fields ({a})")
            check(a["user_agent"] == HOSTILE_UA.encode().decode("latin-1"),
                  f"the hostile User-Agent survives escaping byte for byte ({a['user_agent']!r})")
            check(b["status"] == 404 and b["uri"] == "/nope", "the 404 is logged too")
            check(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", a["time"]) is not None,
                  f"time is ISO 8601 UTC ({a['time']})")
    finally:
        os.unlink(conf)

    # combined: the command line overrides the file's json
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write("log-format = json\nhttps_port = 'off'\n")
        conf = f.name
    try:
        proc, port = start_with(["--config", conf, "--log-format=combined", "--port=0",
                                 f"--static-dir={u.STATIC}"])
        curl(f"http://127.0.0.1:{port}/static/hello.txt", "-A", HOSTILE_UA)
        time.sleep(0.3)
        log = u.stop(proc)
        lines = [ln for ln in log.splitlines() if "/static/hello.txt" in ln]
        size = os.path.getsize(os.path.join(u.STATIC, "hello.txt"))
        pat = (r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
               r'"GET /static/hello\.txt HTTP/1\.1" 200 (\d+) "" "([^"]*)"$')
        m = re.search(pat, lines[0]) if lines else None
        check(m is not None, f"a combined line ({lines[:1]})")
        if m:
            check(int(m.group(1)) == size, f"bytes = the file's size ({m.group(1)} = {size})")
            check(m.group(2) == 'evil \\x22agent\\x22 \\x5C with\\x09tab and \\xC3\\xBC',
                  f"quotes, backslash and control bytes escaped as nginx does ({m.group(2)})")
    finally:
        os.unlink(conf)

    # text (the default), and --logging=warning hides the 200s but not a 404
    proc, port = start_with(["--port=0", "--https-port=off", "--logging=warning",
                             f"--static-dir={u.STATIC}"])
    curl(f"http://127.0.0.1:{port}/json")
    curl(f"http://127.0.0.1:{port}/missing")
    time.sleep(0.3)
    log = u.stop(proc)
    check("GET /json" not in log, "--logging=warning: no line for a 200")
    check(re.search(r"squall: WARNING: 404 GET /missing \(127\.0\.0\.1\) [0-9.]+ms", log) is not None,
          "--logging=warning: the 404 in today's text format")


def on_terminal(extra):
    """The demo with stderr on a pty and `extra` options: what it wrote there once a GET /json
    was logged, and its exit status on SIGTERM."""
    master, slave = pty.openpty()
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=1"
    proc = subprocess.Popen([DEMO, "--port=0", "--https-port=off", f"--static-dir={u.STATIC}"]
                            + extra, stdout=subprocess.PIPE, stderr=slave, text=True, env=env)
    os.close(slave)
    port = int(proc.stdout.readline().split()[-1])
    curl(f"http://127.0.0.1:{port}/json")
    out = b""
    deadline = time.monotonic() + 5
    while b"GET /json" not in out and time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                out += os.read(master, 4096)
            except OSError:
                break
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(30)
    os.close(master)
    return out, rc


def colours():
    """A terminal on stderr gets coloured levels; a pipe never does (the runs above)."""
    out, rc = on_terminal([])
    check(rc == 0, f"the demo on a terminal exited cleanly ({rc})")
    check(re.search(rb"\x1b\[32m\[I \d{6} \d\d:\d\d:\d\d squall\]\x1b\[0m 200 GET /json", out) is not None,
          f"on a terminal the INFO line is coloured ({out[-200:]!r})")
    out, rc = on_terminal(["--log-color=off"])
    check(b"\x1b[" not in out and b"squall: INFO: 200 GET /json" in out,
          "--log-color=off: plain lines on a terminal")


def processes():
    port = free_port()
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=1"
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([DEMO, f"--port={port}", "--processes=2", "--https-port=off",
                             f"--static-dir={u.STATIC}"],
                            stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    seen = 0
    deadline = time.monotonic() + 20
    while seen < 2 and time.monotonic() < deadline:
        if proc.stdout.readline().startswith("listening on port"):
            seen += 1
    check(seen == 2, f"--processes=2: two workers listening on {port} ({seen})")
    children = set()
    for t in os.listdir(f"/proc/{proc.pid}/task"):
        with open(f"/proc/{proc.pid}/task/{t}/children") as f:
            children |= set(f.read().split())
    check(len(children) == 2, f"the supervisor has two worker processes ({len(children)})")
    codes = [curl(f"http://127.0.0.1:{port}/json") for _ in range(10)]
    check(codes == ["200"] * 10, f"ten requests to the shared port answered ({codes})")
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(30)
    log.seek(0)
    text = log.read()
    check(rc == 0 and "Sanitizer" not in text, f"the supervisor and workers stopped cleanly ({rc})")


help_and_errors()
config_file_and_formats()
colours()
processes()
u.finish()
