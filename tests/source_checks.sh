#!/usr/bin/env bash
# Structural rules of the tree, checked on the sources (not on behaviour):
#  - one accept loop: accept()/accept4() only in the stream layer's TCP server
#    (src/stream/tcp.c), which the HTTP server uses through sq_tcp_server;
#  - one transport: no read/recv/send/write/writev/sendfile/shutdown system call on a
#    connection outside src/transport/ (the loop's own wake-up fds and the coroutine
#    module's crash message on stderr are not connections).
set -u
src="${SQ_SOURCE_DIR:?}/src"
exec /usr/bin/python3 - "$src" <<'PY'
import os, re, sys
src = sys.argv[1]
# code only: comments and string literals removed
def code(text):
    text = re.sub(r'/\*.*?\*/', lambda m: '\n' * m.group(0).count('\n'), text, flags=re.S)
    text = re.sub(r'//[^\n]*', '', text)
    return re.sub(r'"(\\.|[^"\\\n])*"', '""', text)
def hits(pattern, allowed):
    out = []
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith('.c'):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, os.path.dirname(src))
            if any(rel.startswith(a) for a in allowed):
                continue
            for n, line in enumerate(code(open(path).read()).split('\n'), 1):
                if re.search(pattern, line):
                    out.append(f"{rel}:{n}: {line.strip()}")
    return out
checks = [
    ("one accept loop: accept4 only in src/stream/tcp.c",
     r'(?<![\w>.])accept4?\s*\(', ["src/stream/tcp.c"]),
    ("one transport: connection I/O only in src/transport/",
     r'(?<![\w>.])(read|recv|recvmsg|send|sendto|sendmsg|write|writev|sendfile|shutdown)\s*\(',
     ["src/transport/", "src/loop/", "src/coro/coro.c"]),
]
failed = 0
for what, pattern, allowed in checks:
    h = hits(pattern, allowed)
    if h:
        failed += 1
        print("FAIL " + what)
        print("\n".join("     " + x for x in h))
    else:
        print("ok   " + what)
print(f"{len(checks) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
