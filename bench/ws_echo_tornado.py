#!/usr/bin/python3
"""Tornado WebSocket echo server (one process, no compression) for bench/ws_compare.sh.

    /usr/bin/python3 bench/ws_echo_tornado.py [port]     prints "listening on port N"
"""
import asyncio
import signal
import sys

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket


class Echo(tornado.websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


async def main():
    app = tornado.web.Application([(r"/.*", Echo)])
    sockets = tornado.netutil.bind_sockets(int(sys.argv[1]) if len(sys.argv) > 1 else 0,
                                           "127.0.0.1", backlog=4096)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    print(f"listening on port {sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


asyncio.run(main())
