#!/usr/bin/env node
// squall's WebSocket server against npm's ws client (tests/node/node_modules, `npm ci`).
//
// Proves, with perMessageDeflate on and off: text, binary, fragmented (send with
// {fin:false}) and 1 MiB messages echo byte for byte; the extension is negotiated only when
// both sides want it; close codes and reasons travel both ways; and the close code the
// client sees for each violation ws can be made to send: an unmasked frame (1002), invalid
// UTF-8 in a text message (1007), a message over max_message_size (1009).
// Exit 77 (ctest: skipped) when node_modules is missing.
'use strict';
const path = require('path');
const crypto = require('crypto');
const { spawn } = require('child_process');

const src = process.env.SQ_SOURCE_DIR || path.join(__dirname, '..', '..');
let WebSocket;
try {
  WebSocket = require(path.join(src, 'tests', 'node', 'node_modules', 'ws'));
} catch (e) {
  console.log('skipped: npm ws not installed (cd tests/node && npm ci)');
  process.exit(77);
}

let checks = 0;
function ok(cond, what) {
  if (!cond) throw new Error('FAIL: ' + what);
  checks++;
}
function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error('timeout: ' + what)), ms); }),
  ]).finally(() => clearTimeout(t));
}

function startServer() {
  const bin = path.join(process.env.SQ_BUILD_DIR, 'tests', 'ws_test_server');
  const proc = spawn(bin, ['0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  proc.errText = () => err;
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on port (\d+)/.exec(out);
      if (m) resolve({ proc, port: Number(m[1]) });
    });
    proc.on('exit', (code) => reject(new Error('server exited ' + code + ': ' + err)));
  });
}

// A client whose messages arrive through `next()`, in order.
function connect(url, opts) {
  const ws = new WebSocket(url, ['chat'], opts);
  const queue = [];
  const waiters = [];
  ws.on('message', (data, isBinary) => {
    const m = { data, isBinary };
    if (waiters.length) waiters.shift()(m); else queue.push(m);
  });
  ws.closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  ws.on('error', () => {}); // the 'close' event carries what the tests check
  ws.next = () => (queue.length ? Promise.resolve(queue.shift())
    : new Promise((resolve) => waiters.push(resolve)));
  return withTimeout(new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', (e) => reject(e));
  }), 10000, 'open ' + url);
}

async function echo(ws, data, binary, what) {
  ws.send(data, { binary });
  const m = await withTimeout(ws.next(), 30000, what);
  const want = Buffer.isBuffer(data) ? data : Buffer.from(data);
  ok(m.isBinary === binary, what + ': type');
  ok(Buffer.compare(Buffer.from(m.data), want) === 0, what + ': bytes');
}

async function exchanges(base, route, deflate) {
  const kind = `${route} perMessageDeflate=${deflate}`;
  const ws = await connect(base + route, { perMessageDeflate: deflate, maxPayload: 16 << 20 });
  const negotiated = /permessage-deflate/.test(ws.extensions);
  ok(negotiated === (deflate && route === '/echo-deflate'), `${kind}: negotiated=${negotiated}`);
  ok(ws.protocol === 'chat', `${kind}: subprotocol ${ws.protocol}`);
  await echo(ws, 'hello', false, kind + ' text');
  await echo(ws, 'ünïcödé ✓ 𝄞', false, kind + ' unicode text');
  await echo(ws, '', false, kind + ' empty text');
  await echo(ws, Buffer.from([0, 1, 2, 255]), true, kind + ' binary');
  await echo(ws, crypto.randomBytes(1 << 20), true, kind + ' 1 MiB binary');
  await echo(ws, 'squall websocket '.repeat(70000).slice(0, 1 << 20), false, kind + ' 1 MiB text');
  // Fragmented: three frames, one message.
  ws.send('frag', { fin: false });
  ws.send('ment', { fin: false });
  ws.send('ed ✓', { fin: true });
  let m = await withTimeout(ws.next(), 10000, kind + ' fragmented');
  ok(!m.isBinary && m.data.toString() === 'fragmented ✓', `${kind}: fragmented text ${m.data}`);
  ws.send(Buffer.alloc(70000, 2), { binary: true, fin: false });
  ws.send(Buffer.from([3]), { binary: true, fin: true });
  m = await withTimeout(ws.next(), 10000, kind + ' fragmented binary');
  ok(m.isBinary && m.data.length === 70001 && m.data[69999] === 2 && m.data[70000] === 3,
     `${kind}: fragmented binary`);
  // Many in flight: order kept.
  for (let i = 0; i < 50; i++) ws.send('m' + i);
  for (let i = 0; i < 50; i++) {
    m = await withTimeout(ws.next(), 10000, kind + ' pipelined');
    ok(m.data.toString() === 'm' + i, `${kind}: pipelined m${i}`);
  }
  // A ping gets a pong.
  const pong = new Promise((resolve) => ws.once('pong', (d) => resolve(d.toString())));
  ws.ping('are you there');
  ok(await withTimeout(pong, 10000, 'pong') === 'are you there', `${kind}: pong`);
  // Client-initiated close with code and reason: the server saw them.
  ws.close(4002, 'client done');
  let c = await withTimeout(ws.closed, 10000, kind + ' close');
  ok(c.code === 4002, `${kind}: close echoed ${c.code}`);
  const ws2 = await connect(base + route, { perMessageDeflate: deflate });
  ws2.send('!lastclose');
  m = await withTimeout(ws2.next(), 10000, 'lastclose');
  ok(m.data.toString() === '4002 client done', `${kind}: server saw ${m.data}`);
  // Server-initiated close: the client sees code and reason.
  ws2.send('!close 4001 server says bye');
  c = await withTimeout(ws2.closed, 10000, kind + ' server close');
  ok(c.code === 4001 && c.reason === 'server says bye',
     `${kind}: server close ${c.code} ${c.reason}`);
  console.log('ok: ws exchanges on ' + kind);
}

async function violation(base, route, what, code, act) {
  const ws = await connect(base + route, { perMessageDeflate: false });
  act(ws);
  const c = await withTimeout(ws.closed, 10000, what);
  ok(c.code === code, `${what}: close code ${c.code}, expected ${code}`);
  console.log(`ok: ${what} -> ${c.code}`);
}

async function main() {
  const { proc, port } = await startServer();
  const base = `ws://127.0.0.1:${port}`;
  let failed = null;
  try {
    for (const route of ['/echo', '/echo-deflate'])
      for (const deflate of [false, true]) await exchanges(base, route, deflate);
    await violation(base, '/echo', 'unmasked frame', 1002,
      (ws) => ws.send('hello', { mask: false }));
    await violation(base, '/echo', 'invalid UTF-8 text', 1007,
      (ws) => ws.send(Buffer.from([0x6f, 0x6b, 0xff, 0xfe]), { binary: false }));
    await violation(base, '/small', 'over max_message_size', 1009,
      (ws) => ws.send(Buffer.alloc(2000, 1), { binary: true }));
    await violation(base, '/small', 'fragments over max_message_size', 1009, (ws) => {
      ws.send(Buffer.alloc(600, 1), { binary: true, fin: false });
      ws.send(Buffer.alloc(600, 1), { binary: true, fin: true });
    });
    // Still serving after that, and 50 clients at once.
    await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const ws = await connect(base + '/echo-deflate', { perMessageDeflate: true });
      await echo(ws, `client ${i}`, false, `concurrent client ${i}`);
      ws.close(1000);
      await withTimeout(ws.closed, 10000, 'close');
    }));
    console.log('ok: 50 concurrent clients');
  } catch (e) {
    failed = e;
  }
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve(code)));
  proc.kill('SIGTERM');
  const status = await withTimeout(exited, 15000, 'server exit').catch(() => {
    proc.kill('SIGKILL');
    return -1;
  });
  const err = proc.errText();
  if (err.trim()) console.error(err.slice(-4000));
  if (failed) throw failed;
  ok(status === 0, 'server exit status ' + status);
  ok(!/Sanitizer|runtime error/.test(err), 'sanitizer report from the server');
  console.log(`OK (${checks} checks)`);
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
