#!/usr/bin/env node
// The demo's /chat page in a real browser: headless Chromium (Debian's /usr/bin/chromium)
// driven by playwright-core (tests/node/node_modules).
//
// Proves: two pages open /chat and connect their WebSocket; a message typed into one page
// appears in the other (and in the first); a message posted to /chat/send appears in both;
// the browser's own WebSocket talks to /ws/prime.  Exit 77 (ctest: skipped) when chromium
// or playwright-core is missing.
'use strict';
const fs = require('fs');
const path = require('path');
const http = require('http');
const { spawn } = require('child_process');

const src = process.env.SQ_SOURCE_DIR || path.join(__dirname, '..', '..');
const chromiumPath = process.env.SQ_CHROMIUM || '/usr/bin/chromium';
let chromium;
try {
  ({ chromium } = require(path.join(src, 'tests', 'node', 'node_modules', 'playwright-core')));
} catch (e) {
  console.log('skipped: playwright-core not installed (cd tests/node && npm ci)');
  process.exit(77);
}
if (!fs.existsSync(chromiumPath)) {
  console.log('skipped: ' + chromiumPath + ' not installed (Debian package chromium)');
  process.exit(77);
}

function startDemo() {
  const bin = path.join(process.env.SQ_BUILD_DIR, 'examples', 'demo');
  const proc = spawn(bin, ['0', path.join(src, 'examples', 'demo', 'static')],
    { stdio: ['ignore', 'pipe', 'pipe'] });
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
    proc.on('exit', (code) => reject(new Error('demo exited ' + code + ': ' + err)));
  });
}

function postForm(port, pathname, text) {
  return new Promise((resolve, reject) => {
    const body = 'text=' + encodeURIComponent(text);
    const req = http.request({
      host: '127.0.0.1', port, path: pathname, method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded',
                 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      let data = '';
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function main() {
  const { proc, port } = await startDemo();
  const base = `http://127.0.0.1:${port}`;
  let browser;
  let failed = null;
  try {
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync',
             '--disable-dev-shm-usage'],
      timeout: 30000,
    });
    const ctx = await browser.newContext();
    const a = await ctx.newPage();
    const b = await ctx.newPage();
    for (const p of [a, b]) {
      await p.goto(base + '/chat', { timeout: 15000 });
      await p.waitForFunction(() => document.getElementById('status').textContent === 'connected',
        null, { timeout: 15000 });
    }
    console.log('ok: two pages connected to /ws/chat');

    const text = 'hello from page a ' + Date.now() + ' ✓ <b>not bold</b>';
    await a.fill('#text', text);
    await a.press('#text', 'Enter');
    for (const [name, p] of [['b', b], ['a', a]]) {
      await p.waitForFunction((t) => [...document.querySelectorAll('#messages li')]
        .some((li) => li.textContent.endsWith(t)), text, { timeout: 15000 });
      console.log(`ok: page ${name} shows the message typed in page a`);
    }
    // Shown as text, not markup.
    const bold = await b.evaluate(() => document.querySelectorAll('#messages b').length);
    if (bold !== 0) throw new Error('message text was rendered as HTML');
    if (await a.inputValue('#text') !== '') throw new Error('input not cleared after send');

    const posted = 'posted to /chat/send ' + Date.now();
    const r = await postForm(port, '/chat/send', posted);
    if (r.status !== 200 || JSON.parse(r.body).text !== posted)
      throw new Error('/chat/send: ' + r.status + ' ' + r.body);
    for (const p of [a, b]) {
      await p.waitForFunction((t) => [...document.querySelectorAll('#messages li')]
        .some((li) => li.textContent.endsWith(t)), posted, { timeout: 15000 });
    }
    console.log('ok: a message posted to /chat/send appears in both pages');

    // The browser's WebSocket against /ws/prime.
    const answers = await a.evaluate(() => new Promise((resolve, reject) => {
      const ws = new WebSocket('ws://' + location.host + '/ws/prime');
      const got = [];
      ws.onopen = () => { ws.send('97'); ws.send('18446744073709551557'); ws.send('nope'); };
      ws.onmessage = (e) => {
        got.push(JSON.parse(e.data));
        if (got.length === 3) { ws.close(); resolve(got); }
      };
      ws.onerror = () => reject(new Error('websocket error'));
      setTimeout(() => reject(new Error('timeout')), 15000);
    }));
    if (!(answers[0].prime === true && answers[0].n === '97' && answers[1].prime === true &&
          answers[1].on === 'executor' && answers[2].error))
      throw new Error('/ws/prime from the browser: ' + JSON.stringify(answers));
    console.log('ok: /ws/prime from the browser: ' + JSON.stringify(answers));
  } catch (e) {
    failed = e;
  }
  if (browser) await browser.close().catch(() => {});
  const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  proc.kill('SIGTERM');
  let timer;
  const killer = new Promise((resolve) => {
    timer = setTimeout(() => { proc.kill('SIGKILL'); resolve(-1); }, 15000);
  });
  const status = await Promise.race([exited, killer]);
  clearTimeout(timer);
  const err = proc.errText();
  if (failed) {
    console.error(err.slice(-3000));
    throw failed;
  }
  if (status !== 0 || /Sanitizer|runtime error/.test(err))
    throw new Error('demo exit status ' + status + ': ' + err.slice(-3000));
  console.log('OK');
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
