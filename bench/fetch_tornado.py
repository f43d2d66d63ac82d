#!/usr/bin/env python3
"""Tornado's AsyncHTTPClient (simple_httpclient, max_clients=CONCURRENCY) as a load
generator: CONCURRENCY coroutines fetching URL again and again for SECONDS.  Prints the same
line as bench/fetch_load.c.  Usage: fetch_tornado.py URL [SECONDS=10] [CONCURRENCY=100]"""
import asyncio
import resource
import sys
import time

from tornado.httpclient import AsyncHTTPClient


def cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def main(url, secs, conc):
    AsyncHTTPClient.configure("tornado.simple_httpclient.SimpleAsyncHTTPClient",
                              max_clients=conc)
    client = AsyncHTTPClient()
    counts = {"ok": 0, "err": 0}
    deadline = time.monotonic() + secs

    async def worker():
        while time.monotonic() < deadline:
            try:
                r = await client.fetch(url, raise_error=False)
                counts["ok" if r.code == 200 else "err"] += 1
            except Exception:
                counts["err"] += 1

    c0, t0 = cpu(), time.monotonic()
    await asyncio.gather(*(worker() for _ in range(conc)))
    dt, used = time.monotonic() - t0, cpu() - c0
    n = counts["ok"]
    print("tornado: requests %d errors %d seconds %.2f rps %.1f cpu_us_per_request %.2f"
          % (n, counts["err"], dt, n / dt, used / n * 1e6 if n else 0.0))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 10.0,
                     int(sys.argv[3]) if len(sys.argv) > 3 else 100))
