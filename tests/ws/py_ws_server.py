#!/usr/bin/python3
"""A Python websockets (10.x, asyncio) echo server for tests/ws/test_ws_pyserver.c.

Listens on two ephemeral loopback ports, the first with permessage-deflate (websockets'
default), the second without, and prints "ports DEFLATE PLAIN".  Selects the subprotocol
"chat" when offered.  Echoes every message, except these text commands:
  "!close CODE REASON"  close with that code and reason
  "!lastclose"          answer "CODE REASON" of the last connection the client closed
  "!frag"               send "fragmented" as three frames
  "!ping"               ping the client, answer "pong ok" once its pong arrives
Stops on SIGTERM or when stdin reaches EOF (the test died).
"""
import asyncio
import signal
import sys

import websockets

last_close = ["0", ""]


async def handler(ws, path=None):
    try:
        async for msg in ws:
            if isinstance(msg, str) and msg.startswith("!close "):
                _, code, reason = msg.split(" ", 2)
                await ws.close(int(code), reason)
            elif msg == "!lastclose":
                await ws.send(" ".join(last_close))
            elif msg == "!frag":
                async def parts():
                    for p in ["frag", "ment", "ed"]:
                        yield p
                await ws.send(parts())
            elif msg == "!ping":
                waiter = await ws.ping(b"from python")
                await asyncio.wait_for(waiter, 10)
                await ws.send("pong ok")
            else:
                await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    await ws.wait_closed()
    if ws.close_code not in (None, 1000, 1005, 1006) or ws.close_reason:
        last_close[:] = [str(ws.close_code), ws.close_reason]


async def main():
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.done() or (
        sys.stdin.buffer.read1(4096) or stop.set_result(None)))
    common = dict(subprotocols=["chat"], max_size=16 << 20, close_timeout=5)
    async with websockets.serve(handler, "127.0.0.1", 0, compression="deflate", **common) as a, \
            websockets.serve(handler, "127.0.0.1", 0, compression=None, **common) as b:
        pa = a.sockets[0].getsockname()[1]
        pb = b.sockets[0].getsockname()[1]
        print(f"ports {pa} {pb}", flush=True)
        await stop


asyncio.run(main())
