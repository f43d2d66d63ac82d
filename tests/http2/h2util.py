"""Shared by the tests/http2 Python tests: start/stop the demo or tests/http2/h2_test_server
(plain h2c port and TLS h2 port with the tests/tls/mkcerts.sh certificates), check results,
and a small raw-frame HTTP/2 client (hand-made frames; HPACK from Python's hpack) that can
misbehave on purpose."""
import hashlib
import os
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

import hpack

BUILD = os.environ["SQ_BUILD_DIR"]
SRC = os.environ["SQ_SOURCE_DIR"]
STATIC = os.path.join(SRC, "examples", "demo", "static")
CERTS = os.path.join(BUILD, "tests", "http2-certs")
CA = os.path.join(CERTS, "ca.pem")

failures = []
QUIET = False  # set: check() prints failures only (a case repeated many times)


def check(cond, what):
    if not cond or not QUIET:
        print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def finish():
    print(f"{len(failures)} failed" if failures else "all passed", flush=True)
    raise SystemExit(1 if failures else 0)


def certs():
    """tests/tls/mkcerts.sh's fixtures in the build tree (idempotent, serialised)."""
    subprocess.run(["sh", os.path.join(SRC, "tests", "tls", "mkcerts.sh"), CERTS], check=True,
                   timeout=60)
    return CERTS


def start(program="h2srv", env_extra=None):
    """Start the demo ("demo") or tests/http2/h2_test_server ("h2srv") with a plain and a TLS
    port (both ephemeral, loopback).  Returns the process with .port, .https_port, .log (its
    stderr, a temporary file)."""
    certs()
    env = dict(os.environ)
    # a small ASan quarantine: RSS then measures the server's own memory, not freed blocks
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") +
                           ":quarantine_size_mb=4:detect_leaks=1:abort_on_error=1")
    if program == "demo":
        env["SQUALL_DEMO_HTTPS_PORT"] = "0"
        env["SQUALL_DEMO_TLS_CERT"] = os.path.join(CERTS, "server.pem")
        env["SQUALL_DEMO_TLS_KEY"] = os.path.join(CERTS, "server.key")
        args = [os.path.join(BUILD, "examples", "demo"), "0", STATIC]
    else:
        env["H2SRV_CERT"] = os.path.join(CERTS, "server.pem")
        env["H2SRV_KEY"] = os.path.join(CERTS, "server.key")
        args = [os.path.join(BUILD, "tests", "h2_test_server")]
    env.update(env_extra or {})
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    proc.log = log
    watchdog = threading.Timer(30, proc.kill)  # a server that prints nothing is killed
    watchdog.start()
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on port "), (line, log_text(proc)[-2000:])
        proc.port = int(line.split()[-1])
        for _ in range(4):  # the demo prints "certificate <path>" first
            line = proc.stdout.readline()
            if not line or line.startswith("https on port "):
                break
        assert line.startswith("https on port "), (line, log_text(proc)[-2000:])
        proc.https_port = int(line.split()[-1])
    finally:
        watchdog.cancel()
    proc.t0 = time.monotonic()
    return proc


def log_text(proc):
    proc.log.seek(0)
    return proc.log.read()


def stop(proc, timeout=30):
    """SIGTERM, then check a clean exit: status 0, no sanitizer report.  Returns the log."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    log = log_text(proc)
    check(rc == 0, f"server exited cleanly on SIGTERM (status {rc})")
    check("Sanitizer" not in log, "no sanitizer report (ASan/LSan/UBSan)")
    if rc != 0 or "Sanitizer" in log:
        print(log[-6000:])
    return log


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --- /big's bytes (h2_test_server.c makes the same) -------------------------------------------

PIECE = 64 * 1024


def _block():
    x, out = 12345, bytearray(PIECE)
    for i in range(PIECE):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        out[i] = (x >> 16) & 0xFF
    return bytes(out)


def big_sha256(n):
    block, h, k = _block(), hashlib.sha256(), 0
    while n > 0:
        piece = (struct.pack(">Q", k) + block[8:])[:min(n, PIECE)]
        h.update(piece)
        n -= len(piece)
        k += 1
    return h.hexdigest()


# --- raw HTTP/2 frames -------------------------------------------------------------------------

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, \
    S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = range(1, 7)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, \
    ENHANCE_YOUR_CALM = range(12)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, sid, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid & 0x7FFFFFFF) + payload


def settings_frame(settings=None):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v)
                                          for k, v in (settings or {}).items()))


def hpack_int(value, prefix_bits, first=0):
    """An HPACK integer (RFC 7541 5.1) with `first` holding the bits above the prefix."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes([first | value])
    out = bytearray([first | top])
    value -= top
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name, value, indexing=False):
    """A literal header field with a literal name (no Huffman): incremental indexing or
    without indexing."""
    name, value = name.encode(), value.encode()
    return (bytes([0x40 if indexing else 0x00]) + hpack_int(len(name), 7) + name +
            hpack_int(len(value), 7) + value)


class Conn:
    """A raw HTTP/2 client connection (h2c, or h2 over TLS by ALPN).  pump() reads frames and
    keeps the state: responses by stream (status, headers, body, ended), resets, GOAWAY,
    the server's SETTINGS, EOF.  It acknowledges SETTINGS and, with auto_window, gives
    back every DATA byte at once (WINDOW_UPDATE)."""

    def __init__(self, port, tls=False, settings=None, rcvbuf=None, auto_window=True,
                 auto_ack=True, timeout=10, preface=PREFACE):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = ssl.create_default_context(cafile=CA)
            ctx.set_alpn_protocols(["h2"])
            s = ctx.wrap_socket(s, server_hostname="localhost")
            assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
        self.sock, self.tls, self.port = s, tls, port
        self.enc, self.dec = hpack.Encoder(), hpack.Decoder()
        self.dec.max_allowed_table_size = 65536
        self.dec.max_header_list_size = 1 << 20
        self.auto_window, self.auto_ack = auto_window, auto_ack
        self.buf = b""
        self.status, self.headers, self.body, self.ended = {}, {}, {}, set()
        self.resets, self.goaway, self.eof, self.error = {}, None, False, None
        self.server_settings, self.settings_acked = None, False
        self.window_updates = 0
        self.conn_window, self.stream_window, self.init_window = 65535, {}, 65535
        self.next_sid = 1
        self._hb = None  # (sid, flags, block) of a header block awaiting CONTINUATION
        self.send(preface + settings_frame(settings))  # (preface: a wrong one on purpose)

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def new_sid(self):
        sid = self.next_sid
        self.next_sid += 2
        return sid

    def request_block(self, path, method="GET", extra=()):
        authority = "localhost" if self.tls else f"127.0.0.1:{self.port}"
        return self.enc.encode([(":method", method), (":scheme", "https" if self.tls else "http"),
                                (":path", path), (":authority", authority)] + list(extra))

    def request(self, path, method="GET", extra=(), end_stream=True, sid=None):
        """Send a request's HEADERS (one frame, END_HEADERS); returns its stream id."""
        sid = sid or self.new_sid()
        self.stream_window[sid] = self.init_window
        self.send(frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid,
                        self.request_block(path, method, extra)))
        return sid

    def send_body(self, sid, data, deadline=10):
        """DATA within the server's flow-control windows, then END_STREAM; stops early (returns
        False) when the stream was reset or answered, or the connection went."""
        end = time.monotonic() + deadline
        while data:
            if sid in self.resets or sid in self.ended or self.eof or self.goaway:
                return False
            n = min(len(data), 16384, self.conn_window, self.stream_window.get(sid, 0))
            if n <= 0:
                if time.monotonic() > end:
                    return False
                self.pump(0.2)
                continue
            self.send(frame(DATA, 0, sid, data[:n]))
            self.conn_window -= n
            self.stream_window[sid] -= n
            data = data[n:]
            self.pump(0)  # take what came (WINDOW_UPDATE, an early response)
        self.send(frame(DATA, END_STREAM, sid))
        return True

    def _read(self, timeout):
        self.sock.settimeout(timeout if timeout > 0 else 0.0)
        try:
            b = self.sock.recv(65536)
        except (socket.timeout, BlockingIOError, ssl.SSLWantReadError):
            return None
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError) as e:
            self.error = e
            self.eof = True
            return b""
        if not b:
            self.eof = True
        return b

    def pump(self, timeout, until=None):
        """Read and handle frames for up to `timeout` seconds, or until until() is true or
        the connection ends.  Returns until()'s value (True without one)."""
        end = time.monotonic() + timeout
        while True:
            if until and until():
                return True
            if self.eof:
                return until() if until else True
            left = end - time.monotonic()
            b = self._read(max(left, 0) if left > 0 else 0)
            if b:
                self.buf += b
                self._frames()
            elif b is None and left <= 0:
                return until() if until else True

    def _frames(self):
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                return
            ftype, flags, sid = self.buf[3], self.buf[4], struct.unpack(">I", self.buf[5:9])[0]
            payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
            self._frame(ftype, flags, sid & 0x7FFFFFFF, payload)

    def _frame(self, ftype, flags, sid, p):
        if ftype == SETTINGS:
            if flags & ACK:
                self.settings_acked = True
                return
            s = dict(struct.unpack(">HI", p[i:i + 6]) for i in range(0, len(p), 6))
            self.server_settings = {**(self.server_settings or {}), **s}
            if S_INITIAL_WINDOW_SIZE in s:
                delta = s[S_INITIAL_WINDOW_SIZE] - self.init_window
                self.init_window = s[S_INITIAL_WINDOW_SIZE]
                for k in self.stream_window:
                    self.stream_window[k] += delta
            if self.auto_ack:
                self._try_send(frame(SETTINGS, ACK, 0))
        elif ftype in (HEADERS, CONTINUATION):
            if ftype == HEADERS:
                pad = p[0] if flags & 0x8 else 0
                p = p[1:] if flags & 0x8 else p
                if flags & 0x20:
                    p = p[5:]
                p = p[:len(p) - pad] if pad else p
                self._hb = (sid, flags, p)
            else:
                self._hb = (self._hb[0], self._hb[1], self._hb[2] + p)
            if flags & END_HEADERS:
                hsid, hflags, block = self._hb
                self._hb = None
                hs = self.dec.decode(block)
                for k, v in hs:
                    if k == ":status":
                        self.status.setdefault(hsid, int(v))
                self.headers.setdefault(hsid, []).extend(hs)
                if hflags & END_STREAM:
                    self.ended.add(hsid)
        elif ftype == DATA:
            pad = p[0] if flags & 0x8 else 0
            body = p[1:len(p) - pad] if flags & 0x8 else p
            self.body.setdefault(sid, bytearray()).extend(body)
            if flags & END_STREAM:
                self.ended.add(sid)
            if self.auto_window and p:
                self._try_send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(p))) +
                               (b"" if flags & END_STREAM else
                                frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", len(p)))))
        elif ftype == RST_STREAM:
            self.resets[sid] = struct.unpack(">I", p)[0]
        elif ftype == GOAWAY:
            last, code = struct.unpack(">II", p[:8])
            self.goaway = (last & 0x7FFFFFFF, code, p[8:])
            self.goaway_time = time.monotonic()
        elif ftype == WINDOW_UPDATE:
            inc = struct.unpack(">I", p)[0] & 0x7FFFFFFF
            self.window_updates += 1
            if sid == 0:
                self.conn_window += inc
            else:
                self.stream_window[sid] = self.stream_window.get(sid, self.init_window) + inc

    def _try_send(self, data):
        try:
            self.sock.settimeout(5)
            self.send(data)
        except OSError as e:
            self.error = e

    def wait_closed(self, timeout):
        """Read until EOF (what the server said on the way is kept); True if it came."""
        return self.pump(timeout, until=lambda: self.eof)

    def get(self, path, timeout=10):
        """One GET on this connection: (status, body) or (None, reason)."""
        sid = self.request(path)
        self.pump(timeout, until=lambda: sid in self.ended or sid in self.resets or self.eof)
        if sid in self.ended:
            return self.status.get(sid), self.body.get(sid, b"")
        return None, f"reset {self.resets.get(sid)} goaway {self.goaway} eof {self.eof}"


def stats(port):
    """/stats of h2_test_server as a dict (on a connection of its own)."""
    c = Conn(port)
    st, body = c.get("/stats")
    c.close()
    if st != 200:
        return None
    return {k: int(v) for k, v in (kv.split("=") for kv in body.decode().split())}


def conns(port):
    c = Conn(port)
    st, body = c.get("/conns")
    c.close()
    return int(body.decode().split()[0].split("=")[1]) if st == 200 else None


def wait_for(cond, timeout, step=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()


class Prober(threading.Thread):
    """A well-behaved client beside an attack: GET `path` every 20 ms on one h2c connection
    (a new one if the server closed it); counts answers, failures and the slowest."""

    def __init__(self, port, path="/conns", tls=False):
        super().__init__(daemon=True)
        self.port, self.path, self.tls = port, path, tls
        self.ok = self.failed = 0
        self.slowest = 0.0
        self.errors = []
        self.halt = threading.Event()
        self.min_ok = 20

    def run(self):
        c = None
        while not self.halt.is_set():
            t = time.monotonic()
            try:
                if c is None or c.eof or c.goaway:
                    if c:
                        c.close()
                    c = Conn(self.port, tls=self.tls)
                st, _ = c.get(self.path, timeout=10)
            except OSError as e:
                st, c = None, None
                self.errors.append(repr(e))
            dt = time.monotonic() - t
            self.slowest = max(self.slowest, dt)
            if st == 200:
                self.ok += 1
            else:
                self.failed += 1
                self.errors.append(f"status {st}")
            self.halt.wait(0.02)
        if c:
            c.close()

    def stop(self):
        self.halt.set()
        self.join(30)
        check(self.ok >= self.min_ok and self.failed == 0,
              f"the concurrent normal client was served throughout ({self.ok} answers, "
              f"{self.failed} failures {self.errors[:3]}, slowest {self.slowest:.2f} s)")
        check(self.slowest < 3.0, f"its slowest answer took < 3 s ({self.slowest:.2f} s)")
