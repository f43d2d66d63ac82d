"""examples/cluster.sh (make cluster) end to end: redis-server, two demo instances of two
processes each, nginx in front.  WebSocket clients through nginx and long polls on each
instance all get a message posted through nginx; SIGTERM stops every piece."""
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import chat_cluster as cc  # noqa: E402

u = cc.u
check = u.check


async def main():
    if not shutil.which("redis-server") or not shutil.which("nginx"):
        print("redis-server or nginx is not installed: skipped")
        raise SystemExit(77)
    lb, rp, d0, d1 = (cc.free_port() for _ in range(4))
    env = dict(os.environ, CLUSTER_PORT=str(lb), CLUSTER_REDIS_PORT=str(rp),
               CLUSTER_DEMO_PORTS=f"{d0} {d1}", CLUSTER_SECONDS="120",
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=1")
    script = os.path.join(u.SRC, "examples", "cluster.sh")
    proc = subprocess.Popen(["bash", script, u.BUILD], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    lines = []
    ready = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if line.startswith("cluster: ready"):
            ready = True
            break
    check(ready, "cluster.sh said ready (" + " | ".join(lines[-3:]) + ")")
    for piece in ("redis: redis-server", "demo0: ", "demo1: ", "nginx: nginx"):
        check(any(piece in ln for ln in lines), f"it printed the command of '{piece.split(':')[0]}'")
    try:
        if ready:
            wss = [await cc.ws_connect(lb) for _ in range(4)]
            await asyncio.sleep(0.5)
            polls = [asyncio.create_task(cc.poll_for(p, 0, "through the cluster")) for p in (d0, d1)]
            recvs = [asyncio.create_task(cc.ws_texts(w, ["through the cluster"])) for w in wss]
            await asyncio.sleep(0.3)
            st, m = await asyncio.to_thread(cc.post, lb, "through the cluster")
            check(st == 200 and m.get("id") == 1, f"POST through nginx: {st} id {m.get('id')}")
            got = [await t for t in polls]
            check(all(g is not None for g in got), "long polls on both instances got it")
            got = [await t for t in recvs]
            check(all("through the cluster" in g for g in got), "4 WebSockets through nginx got it")
            for w in wss:
                await w.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM) if proc.poll() is None else None
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
    check(rc == 0, f"cluster.sh stopped cleanly on SIGTERM ({rc})")
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", f"--port {d0}|--port {rp}|--port {d1}"],
                          capture_output=True, text=True).stdout.split()
    check(not left, f"no piece left running ({left})")


asyncio.run(main())
u.finish()
