"""Shared by the Python tests that drive the demo (or another example) as a real server:
start it on an ephemeral port, stop it with SIGTERM, measure it, speak raw WebSocket."""
import atexit
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

BUILD = os.environ["SQ_BUILD_DIR"]
SRC = os.environ["SQ_SOURCE_DIR"]
STATIC = os.path.join(SRC, "examples", "demo", "static")

failures = []


def free_port():
    """A port free on 127.0.0.1 right now (for peers that cannot be given port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(tmp, http_conf):
    """nginx in the foreground with its files in `tmp`, on a free port: `http_conf` is what
    goes inside `http { }`, where "@LISTEN@" stands for the listen directive.  Returns
    (process, port) once the port accepts; the caller terminates it."""
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; worker_processes 1; pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
{http_conf.replace("@LISTEN@", f"listen 127.0.0.1:{port};")}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", tmp, "-e", f"{tmp}/nginx-error.log"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nginx did not start: " + proc.stderr.read().decode(errors="replace"))


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def finish():
    """The closing line and the exit status of a script built on check()."""
    print(f"{len(failures)} failed" if failures else "all passed")
    raise SystemExit(1 if failures else 0)


def tls_fixtures(directory=None):
    """The test certificates of tests/tls/mkcerts.sh (ca.pem, server.pem/key …), made in
    `directory` or in a new temporary one (removed at exit); returns the directory."""
    if directory is None:
        directory = tempfile.mkdtemp(prefix="squall-tls-")
        atexit.register(shutil.rmtree, directory, True)
    subprocess.run(["sh", os.path.join(SRC, "tests", "tls", "mkcerts.sh"), directory],
                   check=True, timeout=60)
    return directory


def start(program="demo", write_timeout=None, preexec_fn=None, asan_extra="", https=None,
          env_extra=None, static=None):
    """Start build/…/examples/<program> on port 0; returns (process, port).  Its stderr (the
    access log) goes to a temporary file, read back by stop().

    https: a tls_fixtures() directory: the demo also serves HTTPS on an ephemeral port with
    its server.pem/server.key; the port is proc.https_port.  env_extra: more environment;
    static: the demo's static folder (default: examples/demo/static)."""
    env = dict(os.environ)
    if env_extra:
        env.update(env_extra)
    if https:
        env["SQUALL_DEMO_HTTPS_PORT"] = "0"
        env["SQUALL_DEMO_TLS_CERT"] = os.path.join(https, "server.pem")
        env["SQUALL_DEMO_TLS_KEY"] = os.path.join(https, "server.key")
    # ASan keeps freed blocks in a quarantine (256 MB by default): RSS would grow with any
    # churn, leak or not.  A small one keeps the measure about the server's own memory.
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4:detect_leaks=1"
                           + asan_extra)
    if write_timeout:
        env["SQUALL_DEMO_WRITE_TIMEOUT"] = str(write_timeout)
    log = tempfile.TemporaryFile(mode="w+")
    args = [os.path.join(BUILD, "examples", program), "0"]
    if program == "demo":
        args.append(static or STATIC)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                            preexec_fn=preexec_fn)
    line = proc.stdout.readline()
    assert line.startswith("listening on port "), line
    port = int(line.split()[-1])
    proc.log = log
    proc.https_port = None
    if https:
        # "certificate <path>", then "https on port M" (all flushed at once); a demo that
        # could not serve HTTPS says why on stderr and prints no more: killed, not waited on
        watchdog = threading.Timer(30, proc.kill)
        watchdog.start()
        try:
            for _ in range(4):
                line = proc.stdout.readline()
                if not line or line.startswith("https on port "):
                    break
        finally:
            watchdog.cancel()
        assert line.startswith("https on port "), (line, log_text(proc)[-2000:])
        proc.https_port = int(line.split()[-1])
    return proc, port


def log_text(proc):
    proc.log.seek(0)
    return proc.log.read()


def stop(proc, timeout=60):
    """SIGTERM, then check a clean exit (0, no sanitizer report); returns the log."""
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    log = log_text(proc)
    check(rc == 0, f"server exited cleanly on SIGTERM (status {rc})")
    check("Sanitizer" not in log, "no sanitizer report")
    if rc != 0 or "Sanitizer" in log:
        print(log[-4000:])
    return log


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def small_socket(port):
    """A client whose receive buffer is 4 KiB (set before connect: it is the window)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    return s


def ws_handshake(s, port, path, deflate=False):
    """A raw WebSocket handshake on s; reads the 101 head and nothing more."""
    ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               f"Sec-WebSocket-Version: 13\r\n{ext}\r\n").encode())
    head = b""
    s.settimeout(10)
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        if not b:
            raise OSError("closed during the handshake")
        head += b
    if not head.startswith(b"HTTP/1.1 101"):
        raise OSError(f"handshake answered {head[:40]!r}")
    return s


def ws_open(port, path, small=False, deflate=False):
    s = small_socket(port) if small else socket.create_connection(("127.0.0.1", port), timeout=10)
    return ws_handshake(s, port, path, deflate)


def ws_frame(opcode, payload):
    """One masked client frame."""
    mask = b"\x01\x02\x03\x04"
    n = len(payload)
    head = bytes([0x80 | opcode])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
    m = (mask * (n // 4 + 1))[:n]
    return head + mask + bytes(a ^ b for a, b in zip(payload, m))


def ws_read_frame(s):
    """(opcode, payload) of the next unmasked server frame."""
    def need(k):
        b = b""
        while len(b) < k:
            c = s.recv(k - len(b))
            if not c:
                raise OSError("closed")
            b += c
        return b
    h = need(2)
    n = h[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", need(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", need(8))[0]
    return h[0] & 0x0F, need(n)
