"""The demo's chat shared through Redis (issue 15): two demo processes on their own ports, one
redis-server of the test's own (ephemeral port, no persistence), real clients — Python's
`websockets` and long polling with http.client — and nginx as the load balancer.

    chat_cluster.py shared   a message sent to either process reaches a WebSocket client and
                             a long-poll client on each; history survives a restart of one
                             process; the same through nginx in front of both
    chat_cluster.py faults   Redis killed while clients chat: each process keeps serving its
                             own clients (messages marked local) and tells the sender; nothing
                             crashes; Redis restarted: both reconnect and re-subscribe, and
                             cross-process delivery resumes within 5 s
"""
import asyncio
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "web"))
import demo_util as u  # noqa: E402

import websockets  # noqa: E402

check = u.check


free_port = u.free_port


class Redis:
    """A redis-server of our own on an ephemeral loopback port, nothing written to disk."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.tmp, "--logfile", os.path.join(self.tmp, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer")

    def kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"


def start_demo(redis):
    return u.start(env_extra={"SQUALL_DEMO_REDIS": redis.url, "SQUALL_DEMO_HTTPS_PORT": "off"})


def post(port, text):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/chat/send", body=urllib.parse.urlencode({"text": text}),
              headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, json.loads(body)


def poll(port, cursor, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout + 10)
    c.request("GET", f"/chat/poll?cursor={cursor}&timeout={timeout}")
    r = c.getresponse()
    body = json.loads(r.read())
    c.close()
    return r.status, body


async def ws_connect(port):
    return await websockets.connect(f"ws://127.0.0.1:{port}/ws/chat", max_size=1 << 20)


async def ws_texts(ws, want, seconds=10):
    """Messages from a chat WebSocket until one with each text in `want` arrived (or time
    is up); returns {text: message}."""
    got = {}
    deadline = time.monotonic() + seconds
    while not set(want) <= set(got) and time.monotonic() < deadline:
        try:
            m = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            break
        if "text" in m:
            got[m["text"]] = m
        elif "error" in m:
            got.setdefault("<error>", m)
    return got


async def poll_for(port, cursor, text, seconds=10):
    """Long-poll from `cursor` until a message with `text` comes; returns it or None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, body = await asyncio.to_thread(poll, port, cursor, 2)
        if status != 200:
            return None
        for m in body["messages"]:
            if m.get("text") == text:
                return m
        cursor = body["cursor"]
    return None


async def reaches_all(ports, sender_port, text, ws_clients, cursors, how="post"):
    """Send `text` to `sender_port` (POST, or over ws_clients[sender]) while a long poll
    waits on every port; check that every WebSocket client and every poller gets it, with
    one id.  Returns the id."""
    polls = [asyncio.create_task(poll_for(p, cursors[p], text)) for p in ports]
    recvs = [asyncio.create_task(ws_texts(ws, [text])) for ws in ws_clients.values()]
    await asyncio.sleep(0.3)  # the pollers are waiting
    if how == "post":
        status, m = await asyncio.to_thread(post, sender_port, text)
        check(status == 200 and m.get("text") == text and isinstance(m.get("id"), int),
              f"POST /chat/send to :{sender_port} answered 200 with the message (id {m.get('id')})")
    else:
        await ws_clients[sender_port].send(text)
    ids = set()
    for p, t in zip(ports, polls):
        m = await t
        check(m is not None, f"'{text}' reached the long-poll client on :{p}")
        if m:
            ids.add(m["id"])
    for p, t in zip(ws_clients, recvs):
        got = await t
        check(text in got, f"'{text}' reached the WebSocket client on :{p}")
        if text in got:
            ids.add(got[text]["id"])
    check(len(ids) == 1, f"'{text}' has one id everywhere ({sorted(ids)})")
    return ids.pop() if len(ids) == 1 else None


def nginx_lb(tmp, ports):
    """nginx in front of both demos (round robin), WebSocket upgrade and long polls proxied."""
    upstream = "".join(f"server 127.0.0.1:{p};" for p in ports)
    return u.start_nginx(tmp, f"""  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  upstream chat {{ {upstream} }}
  server {{
    @LISTEN@
    location / {{
      proxy_pass http://chat;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_read_timeout 60s;
      proxy_buffering off;
    }}
  }}""")


async def shared(tmp):
    redis = Redis(tmp)
    redis.start()
    (a, pa), (b, pb) = start_demo(redis), start_demo(redis)
    procs = {"a": a, "b": b}
    try:
        await asyncio.sleep(0.5)  # both subscribed (the demo logs it; the checks below retry anyway)
        ws = {pa: await ws_connect(pa), pb: await ws_connect(pb)}
        cursors = {pa: 0, pb: 0}
        id1 = await reaches_all([pa, pb], pa, "from A over POST", ws, cursors)
        id2 = await reaches_all([pa, pb], pb, "from B over the WebSocket", ws, cursors, how="ws")
        check(id1 is not None and id2 is not None and id2 == id1 + 1,
              f"ids come from one counter ({id1}, {id2})")
        for i in range(20):  # a burst from both sides: all 20 everywhere, in id order
            await asyncio.to_thread(post, pa if i % 2 else pb, f"burst {i}")
        # pub/sub delivers to each process a little after the POST is answered: wait (bounded)
        # until both hold all 22
        async def history(port, want=22):
            deadline = time.monotonic() + 5
            while True:
                st, body = await asyncio.to_thread(poll, port, 0, 0.2)
                if len(body["messages"]) >= want or time.monotonic() > deadline:
                    return body
                await asyncio.sleep(0.05)
        body, body2 = await history(pa), await history(pb)
        texts_a = [m["text"] for m in body["messages"]]
        texts_b = [m["text"] for m in body2["messages"]]
        check(texts_a == texts_b and len(texts_a) == 22,
              f"both processes hold the same history, in the same order ({len(texts_a)}, {len(texts_b)} messages)")
        check([m["id"] for m in body["messages"]] == list(range(1, 23)), "history ids are 1..22")

        # restart A: its history comes back from Redis
        await ws.pop(pa).close()
        u.stop(a)
        a, pa = start_demo(redis)
        procs["a"] = a
        deadline = time.monotonic() + 10
        texts = []
        while time.monotonic() < deadline:
            st, body = await asyncio.to_thread(poll, pa, 0, 0.2)
            texts = [m["text"] for m in body["messages"]]
            if len(texts) >= 22:
                break
        check(texts == texts_b, f"after a restart of A its history is intact ({len(texts)} messages)")
        ws[pa] = await ws_connect(pa)
        replay = await ws_texts(ws[pa], texts_b, 10)
        check(set(texts_b) <= set(replay), f"a new WebSocket on the restarted A gets the history ({len(replay)})")
        cursors = {pa: 22, pb: 22}
        await reaches_all([pa, pb], pb, "after the restart", ws, cursors)

        # nginx in front of both: clients through the load balancer see every message
        nginx, pl = nginx_lb(tmp, [pa, pb])
        try:
            lbws = [await ws_connect(pl) for _ in range(4)]  # round robin: both upstreams
            await asyncio.sleep(0.2)
            polls = [asyncio.create_task(poll_for(pl, 23, "through nginx")) for _ in range(4)]
            recvs = [asyncio.create_task(ws_texts(w, ["through nginx"])) for w in lbws]
            await asyncio.sleep(0.3)
            st, m = await asyncio.to_thread(post, pl, "through nginx")
            check(st == 200, f"POST through nginx: {st}")
            got_polls = [await t for t in polls]
            got_ws = [await t for t in recvs]
            check(all(m is not None for m in got_polls), "4 long polls through nginx got the message")
            check(all("through nginx" in g for g in got_ws), "4 WebSockets through nginx got the message")
            direct = await ws_texts(ws[pa], ["through nginx"], 5)
            check("through nginx" in direct, "and so did the direct client of A")
            for w in lbws:
                await w.close()
        finally:
            nginx.terminate()
            nginx.wait(10)
        for w in ws.values():
            await w.close()
    finally:
        for p in procs.values():
            u.stop(p)
        redis.kill()


async def faults(tmp):
    redis = Redis(tmp)
    redis.start()
    (a, pa), (b, pb) = start_demo(redis), start_demo(redis)
    try:
        await asyncio.sleep(0.5)
        ws = {pa: await ws_connect(pa), pb: await ws_connect(pb)}
        cursors = {pa: 0, pb: 0}
        await reaches_all([pa, pb], pa, "before the fault", ws, cursors)

        redis.kill()
        await asyncio.sleep(0.5)
        # local delivery goes on; the sender hears that the other processes did not get it
        other = asyncio.create_task(ws_texts(ws[pb], ["during the fault"], 2))
        status, body = await asyncio.to_thread(post, pa, "during the fault")
        check(status == 503 and "unreachable" in body.get("error", ""),
              f"POST while Redis is down: 503 with a clear error ({status}: {body.get('error')})")
        m = body.get("message", {})
        check(m.get("local") is True and m.get("id") is None, "the message is marked local, no id")
        got = await ws_texts(ws[pa], ["during the fault"], 5)
        check("during the fault" in got and got["during the fault"].get("local") is True,
              "the WebSocket client on the same process still got it (local)")
        check("during the fault" not in await other, "the other process's client did not")
        await ws[pb].send("ws during the fault")
        got = await ws_texts(ws[pb], ["ws during the fault", "<error>"], 5)
        check("ws during the fault" in got and "<error>" in got,
              "a WebSocket sender gets its message locally and an error frame")
        for p in (pa, pb):
            try:
                st, _ = await asyncio.to_thread(poll, p, 0, 0.2)
            except OSError as e:
                st = str(e)
            check(st == 200, f":{p} still serves long polls while Redis is down ({st})")
        check(a.poll() is None and b.poll() is None, "both processes still run")

        # Redis back (empty: no persistence): reconnect, re-subscribe, delivery resumes
        t0 = time.monotonic()
        redis.start()
        resumed = None
        while time.monotonic() - t0 < 10:
            status, body = await asyncio.to_thread(post, pa, f"probe {time.monotonic() - t0:.2f}")
            if status == 200:
                m = await poll_for(pb, body["id"] - 1, body["text"], 2)
                if m:
                    resumed = time.monotonic() - t0
                    break
            await asyncio.sleep(0.1)
        check(resumed is not None and resumed < 5,
              f"cross-process delivery resumed {resumed if resumed is None else round(resumed, 2)} s after Redis restarted (< 5 s)")
        cursors = {pa: 0, pb: 0}
        st, body = await asyncio.to_thread(poll, pa, 0, 0.2)
        ids = [m["id"] for m in body["messages"]]
        check(ids == sorted(set(ids)) and ids and ids[0] == 1,
              f"ids were not reused after Redis lost its data ({ids[:3]}…{ids[-3:]})")
        cursors = {pa: ids[-1], pb: ids[-1]}
        await reaches_all([pa, pb], pb, "after the fault", ws, cursors, how="ws")
        for w in ws.values():
            await w.close()
    finally:
        for p in (a, b):
            log = u.stop(p)
            check("lost, reconnecting" in log and log.count("subscriber connected") >= 2,
                  "the process logged the loss and the reconnect")
        redis.kill()


def main():
    if not shutil.which("redis-server"):
        print("redis-server is not installed: skipped")
        raise SystemExit(77)
    case = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="squall-chat-")
    try:
        asyncio.run({"shared": shared, "faults": faults}[case](tmp))
    finally:
        shutil.rmtree(tmp, True)
    u.finish()


if __name__ == "__main__":
    main()
