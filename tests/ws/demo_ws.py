#!/usr/bin/python3
"""The demo's WebSocket and long-polling routes against real clients: Python's websockets
for /ws/prime and /ws/chat, urllib for /chat, /chat/poll and /chat/send.

Proves: /ws/prime answers JSON for small numbers (on the loop) and large ones up to
2^64-1 (on the executor), rejects non-numbers and out-of-range numbers with an error
message while the connection stays open; chat messages sent over a WebSocket reach the
other WebSockets and long-pollers, and messages posted to /chat/send (form or JSON) reach
WebSockets and long-pollers; a poll held open returns the message that arrives meanwhile;
a poll with nothing new returns an empty list within its (short) timeout; a cursor into
the history returns what was missed at once; chat text over 4 KiB is refused (413 on
/chat/send, close 1009 on the WebSocket).
"""
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

try:
    import websockets
except ImportError:
    print("skipped: python3-websockets not installed")
    sys.exit(77)

demo = os.path.join(os.environ["SQ_BUILD_DIR"], "examples", "demo")
static = os.path.join(os.environ["SQ_SOURCE_DIR"], "examples", "demo", "static")
proc = subprocess.Popen([demo, "0", static], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True)
line = proc.stdout.readline()
assert line.startswith("listening on port "), line
PORT = int(line.split()[-1])
HTTP = f"http://127.0.0.1:{PORT}"
WS = f"ws://127.0.0.1:{PORT}"
checks = 0


def ok(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def get(path, timeout=20):
    with urllib.request.urlopen(HTTP + path, timeout=timeout) as r:
        return r.status, r.headers, r.read()


def post(path, data, content_type, timeout=20):
    req = urllib.request.Request(HTTP + path, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def send_text(text):
    return post("/chat/send", urllib.parse.urlencode({"text": text}).encode(),
                "application/x-www-form-urlencoded")


def poll(cursor=None, timeout=None):
    q = {}
    if cursor is not None:
        q["cursor"] = cursor
    if timeout is not None:
        q["timeout"] = timeout
    status, headers, body = get("/chat/poll?" + urllib.parse.urlencode(q), timeout=40)
    ok(status == 200 and headers["Content-Type"].startswith("application/json"), "poll status")
    return json.loads(body)


async def prime():
    async with websockets.connect(WS + "/ws/prime") as ws:
        async def ask(text):
            await ws.send(text)
            return json.loads(await asyncio.wait_for(ws.recv(), 20))

        cases = [("97", True, "loop"), ("0", False, "loop"), ("1", False, "loop"),
                 ("2", True, "loop"), (" 42\n", False, "loop"),
                 ("999999999989", True, "loop"), ("3215031751", False, "loop"),
                 ("1000000000039", True, "executor"),
                 ("1000000016000000063", False, "executor"),
                 ("18446744073709551557", True, "executor"),
                 ("18446744073709551615", False, "executor")]
        for text, want, where in cases:
            r = await ask(text)
            ok(r == {"n": str(int(text)), "prime": want, "on": where},
               f"prime {text!r}: {r}")
        for bad in ["abc", "", "-7", "12x", "1.5", "18446744073709551616"]:
            r = await ask(bad)
            ok(r.get("n") == bad and "error" in r and "prime" not in r, f"bad {bad!r}: {r}")
        await ws.send(b"\x01\x02")
        r = json.loads(await asyncio.wait_for(ws.recv(), 20))
        ok("error" in r, f"binary: {r}")
        # Still open after all the errors.
        r = await ask("7")
        ok(r["prime"] is True, "open after errors")
        # Executor answers arrive in order with inline ones.
        for t in ["18446744073709551557", "5", "18446744073709551615", "4"]:
            await ws.send(t)
        got = [json.loads(await asyncio.wait_for(ws.recv(), 20))["prime"] for _ in range(4)]
        ok(got == [True, True, False, False], f"ordered answers {got}")
    print("ok: /ws/prime")


async def chat():
    status, headers, body = get("/chat")
    ok(status == 200 and b"/ws/chat" in body and b"<script>" in body, "/chat page")
    status, _, body = get("/")
    ok(b'href="/chat"' in body, "index links /chat")

    start = poll(timeout=0.1)["cursor"]
    async with websockets.connect(WS + "/ws/chat") as a, \
            websockets.connect(WS + "/ws/chat", compression=None) as b:
        ok(any(e.name == "permessage-deflate" for e in a.extensions), "chat is compressed")
        # Drain the history each connection gets first.
        async def drain(ws):
            while True:
                try:
                    await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    return
        await drain(a)
        await drain(b)

        # A poll held open: a WebSocket message arrives meanwhile and is returned.
        result = {}
        t = threading.Thread(target=lambda: result.update(poll(cursor=start, timeout=20)))
        t0 = time.monotonic()
        t.start()
        await asyncio.sleep(0.5)
        await a.send("hello from a ✓")
        for ws in (a, b):
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            ok(m["text"] == "hello from a ✓" and m["ip"] == "127.0.0.1" and m["id"] == start + 1,
               f"broadcast {m}")
        await asyncio.get_running_loop().run_in_executor(None, t.join, 30)
        took = time.monotonic() - t0
        ok([m["text"] for m in result.get("messages", [])] == ["hello from a ✓"],
           f"held poll got {result}")
        ok(result["cursor"] == start + 1 and took < 10, f"held poll cursor/time {result} {took}")

        # /chat/send (form and JSON) reaches WebSockets and a held poll.
        result = {}
        t = threading.Thread(target=lambda: result.update(poll(timeout=20)))
        t.start()
        await asyncio.sleep(0.5)
        st, m = await asyncio.get_running_loop().run_in_executor(None, send_text, "via form")
        ok(st == 200 and m["text"] == "via form" and m["id"] == start + 2, f"send form {st} {m}")
        await asyncio.get_running_loop().run_in_executor(None, t.join, 30)
        ok([x["text"] for x in result.get("messages", [])] == ["via form"], f"poll {result}")
        st, m = post("/chat/send", json.dumps({"text": "via json"}).encode(), "application/json")
        ok(st == 200 and m["text"] == "via json", f"send json {st} {m}")
        for ws in (a, b):
            got = [json.loads(await asyncio.wait_for(ws.recv(), 10))["text"] for _ in range(2)]
            ok(got == ["via form", "via json"], f"ws got {got}")

        # A cursor into the history answers at once with what was missed.
        r = poll(cursor=start, timeout=20)
        ok([x["text"] for x in r["messages"]] == ["hello from a ✓", "via form", "via json"],
           f"history {r}")
        # Nothing new: an empty answer after the (short) timeout.
        t0 = time.monotonic()
        r = poll(cursor=start + 3, timeout=0.5)
        took = time.monotonic() - t0
        ok(r == {"messages": [], "cursor": start + 3}, f"empty poll {r}")
        ok(0.4 <= took < 5, f"empty poll took {took:.2f} s")
        # A cursor from the future (a client of an earlier run of the demo): the whole
        # history at once, and the current cursor, so that it resynchronises.
        t0 = time.monotonic()
        r = poll(cursor=start + 1000, timeout=20)
        took = time.monotonic() - t0
        ok(took < 2 and r["cursor"] == start + 3 and
           [x["text"] for x in r["messages"]][-3:] == ["hello from a ✓", "via form", "via json"],
           f"future cursor {r} in {took:.2f} s")

        # Limits and errors.
        st, m = send_text("x" * 5000)
        ok(st == 413 and "error" in m, f"long text {st}")
        st, m = send_text("   ")
        ok(st == 400, f"blank text {st}")
        st, m = post("/chat/send", b"{not json", "application/json")
        ok(st == 400, f"bad json {st}")
        try:
            get("/chat/poll?cursor=x")
            ok(False, "bad cursor accepted")
        except urllib.error.HTTPError as e:
            ok(e.code == 400, f"bad cursor: {e.code}")
    print("ok: /chat, /ws/chat, /chat/poll, /chat/send")


async def chat_limits():
    async with websockets.connect(WS + "/ws/chat") as ws:
        await ws.send("y" * 5000)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed:
            pass
        ok(ws.close_code == 1009, f"long ws message: close {ws.close_code}")
    print("ok: chat message over 4 KiB closes with 1009")


def pending_poll():
    """A long poll still waiting when the demo is told to stop: the demo shuts down
    gracefully (up to 2 s for requests in flight, then their connections close and their
    handlers end), exits 0 and leaks nothing."""
    try:
        get("/chat/poll?timeout=30", timeout=40)
    except Exception:
        pass


stopped_after = None
try:
    asyncio.run(prime())
    asyncio.run(chat())
    asyncio.run(chat_limits())
    poller = threading.Thread(target=pending_poll)
    poller.start()
    time.sleep(0.3)
finally:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    stopped_after = time.monotonic() - t0
poller.join(10)
ok(not poller.is_alive(), "the pending poll ended when the demo stopped")
ok(stopped_after < 6, f"graceful stop took {stopped_after:.2f} s (2 s grace for the poll)")
print(f"ok: SIGTERM with a long poll pending: exit after {stopped_after:.2f} s")
ok(proc.returncode == 0, f"demo exit status {proc.returncode}: {err[-3000:]}")
ok("Sanitizer" not in err and "runtime error" not in err, f"sanitizer report: {err[-3000:]}")
print(f"OK ({checks} checks)")
