#!/usr/bin/python3
"""Python websockets over wss:// against the demo (the client verifying with the test CA):
  - /ws/chat: two clients (permessage-deflate negotiated), a message from one is broadcast
    to both; 200 more arrive in order; a later client gets the history replayed; the
    largest allowed message passes and one byte more is closed with 1009; an HTTPS long
    poll (/chat/poll) is answered by a message sent over wss;
  - /ws/prime: small numbers (on the loop), a large prime (on the executor), an error
    answer; 300 numbers in a row, each answer right; ping/pong;
  - ws:// on the TLS port and wss:// on the plain port both fail."""
import asyncio
import http.client
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tls_util import check, client_context, finish, require, start_https, stop, tls_fixtures  # noqa: E402

require(programs=["openssl"], modules=["websockets"])
import websockets  # noqa: E402

T = 20  # seconds: the bound on any single wait


def is_prime(n):
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), T))


async def chat(tport, ctx):
    url = f"wss://localhost:{tport}/ws/chat"
    a = await websockets.connect(url, ssl=ctx, open_timeout=T,
                                 origin=f"https://localhost:{tport}")
    b = await websockets.connect(url, ssl=ctx, open_timeout=T)
    exts = [type(e).__name__ for e in a.extensions]
    check(any("Deflate" in e for e in exts), f"wss chat: permessage-deflate negotiated ({exts})")
    await a.send("hello over wss")
    ma, mb = await recv_json(a), await recv_json(b)
    check(ma.get("text") == "hello over wss" and mb == ma and ma.get("ip") == "127.0.0.1",
          f"wss chat: the message is broadcast to both clients ({mb})")
    first = ma["id"]
    for i in range(200):
        await a.send(f"m{i}")
    got = []
    for _ in range(200):
        got.append(await recv_json(b))
    check([m["text"] for m in got] == [f"m{i}" for i in range(200)] and
          [m["id"] for m in got] == list(range(first + 1, first + 201)),
          "wss chat: 200 more messages arrive in order")
    for _ in range(200):  # a's own copies
        await recv_json(a)
    c = await websockets.connect(url, ssl=ctx, open_timeout=T)
    hist = [await recv_json(c) for _ in range(200)]  # the ring keeps the last 200
    check(hist[-1]["text"] == "m199" and hist[0]["id"] == first + 1,
          "wss chat: a new client gets the history replayed")
    await c.close()
    big = "x" * 4096
    await b.send(big)
    m1 = await recv_json(a)
    check(m1.get("text") == big, "wss chat: a 4,096-byte message (the maximum) goes through")
    await recv_json(b)
    await b.send("y" * 4097)
    code = None
    try:
        await asyncio.wait_for(b.recv(), T)
    except websockets.ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
    check(code == 1009, f"wss chat: one byte over the limit is closed with 1009 ({code})")

    # an HTTPS long poll answered by a message sent over wss
    result = {}
    cursor = m1["id"]

    def poll():
        conn = http.client.HTTPSConnection("localhost", tport, context=ctx, timeout=T)
        try:
            conn.request("GET", f"/chat/poll?cursor={cursor}&timeout=15")
            r = conn.getresponse()
            result["status"] = r.status
            result["body"] = json.loads(r.read())
        except Exception as e:  # noqa: BLE001
            result["error"] = repr(e)
        conn.close()

    t = threading.Thread(target=poll)
    t.start()
    await asyncio.sleep(0.5)  # the poll is parked by now
    await a.send("to the poller")
    await recv_json(a)
    await asyncio.get_running_loop().run_in_executor(None, t.join, T)
    msgs = result.get("body", {}).get("messages", [])
    check(result.get("status") == 200 and [m["text"] for m in msgs] == ["to the poller"],
          f"an https long poll is answered by a wss message ({result})")
    await a.close()
    await b.close()


async def prime(tport, ctx):
    url = f"wss://127.0.0.1:{tport}/ws/prime"
    async with websockets.connect(url, ssl=ctx, open_timeout=T) as ws:
        await ws.send("97")
        check(await recv_json(ws) == {"n": "97", "prime": True, "on": "loop"}, "wss prime: 97 on the loop")
        await ws.send("18446744073709551557")
        check(await recv_json(ws) == {"n": "18446744073709551557", "prime": True, "on": "executor"},
              "wss prime: 2^64-59 on the executor")
        await ws.send("abc")
        r = await recv_json(ws)
        check(r.get("n") == "abc" and "error" in r, "wss prime: not a number gets an error answer")
        wrong = 0
        for n in range(1000, 1300):
            await ws.send(str(n))
            r = await recv_json(ws)
            if r != {"n": str(n), "prime": is_prime(n), "on": "loop"}:
                wrong += 1
        check(wrong == 0, f"wss prime: 300 numbers in a row, every answer right ({wrong} wrong)")
        pong = await ws.ping()
        await asyncio.wait_for(pong, T)
        check(True, "wss prime: ping answered with pong")


async def wrong_ports(port, tport, ctx):
    try:
        async with websockets.connect(f"ws://127.0.0.1:{tport}/ws/prime", open_timeout=T):
            ok = False
    except websockets.InvalidStatusCode as e:
        ok = e.status_code == 400
    except Exception as e:  # noqa: BLE001
        print(f"     ws:// on the TLS port: {e!r}")
        ok = False
    check(ok, "ws:// (no TLS) on the TLS port: 400")
    try:
        async with websockets.connect(f"wss://localhost:{port}/ws/prime", ssl=ctx, open_timeout=T):
            ok = False
    except Exception:  # noqa: BLE001
        ok = True
    check(ok, "wss:// on the plain port fails")


def main():
    fx = tls_fixtures()
    ctx = client_context(fx)
    proc, port, tport = start_https(fx)
    try:
        asyncio.run(asyncio.wait_for(chat(tport, ctx), 120))
        asyncio.run(asyncio.wait_for(prime(tport, ctx), 120))
        asyncio.run(asyncio.wait_for(wrong_ports(port, tport, ctx), 60))
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
    finish()
