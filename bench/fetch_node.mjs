// Node's built-in fetch (undici, keep-alive) as a load generator: CONCURRENCY async loops
// fetching URL again and again for SECONDS.  Prints the same line as bench/fetch_load.c.
// Usage: node fetch_node.mjs URL [SECONDS=10] [CONCURRENCY=100]
const [url, secsArg, concArg] = process.argv.slice(2);
const secs = Number(secsArg || 10);
const conc = Number(concArg || 100);
let ok = 0;
let err = 0;
const t0 = performance.now();
const c0 = process.cpuUsage();
const deadline = t0 + secs * 1000;

async function worker() {
  while (performance.now() < deadline) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.status === 200) ok++;
      else err++;
    } catch {
      err++;
    }
  }
}

await Promise.all(Array.from({ length: conc }, worker));
const dt = (performance.now() - t0) / 1000;
const c = process.cpuUsage(c0);
const cpu = (c.user + c.system) / 1e6;
console.log(
  `node: requests ${ok} errors ${err} seconds ${dt.toFixed(2)} rps ${(ok / dt).toFixed(1)} ` +
    `cpu_us_per_request ${(ok ? (cpu / ok) * 1e6 : 0).toFixed(2)}`,
);
