#!/usr/bin/env node
// The demo over HTTPS in a real browser: headless Chromium (Debian's /usr/bin/chromium)
// driven by playwright-core (tests/node/node_modules) speaks HTTP/2 to squall by ALPN.
//
// Proves, through the browser's own Performance API (nextHopProtocol): the navigation to
// https://localhost:M/ and the stylesheet the index page loads (/static/style.css) came over
// "h2", and the stylesheet applies; 30 concurrent fetches from the page (/json, a static
// file, /cookie) are all answered over h2 with the right bodies; a 256 KiB multipart upload
// (fetch POST /form, a request body beyond the initial stream window) reaches the handler
// whole; /chat over HTTPS connects its wss:// WebSocket (HTTP/1.1 beside the h2
// connection).  The certificate is the demo's self-signed one, trusted by its SPKI hash
// (--ignore-certificate-errors-spki-list), not by ignoring every certificate error; the hash
// is taken from the certificate served (node's tls, which also sees ALPN pick h2).  The
// demo then exits 0 on SIGTERM without a sanitizer report.  Exit 77 (ctest: skipped) when
// chromium or playwright-core is missing.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const tls = require('tls');
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

// The demo on ephemeral ports: HTTP (unused here) and HTTPS; resolves once both are up and
// the certificate's path is known.
function startDemo() {
  const bin = path.join(process.env.SQ_BUILD_DIR, 'examples', 'demo');
  const proc = spawn(bin, ['0', path.join(src, 'examples', 'demo', 'static')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: Object.assign({}, process.env, { SQUALL_DEMO_HTTPS_PORT: '0' }),
  });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  proc.errText = () => err;
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const https = /https on port (\d+)/.exec(out);
      const cert = /^certificate ([^,\n]+)/m.exec(out);
      if (https && cert) resolve({ proc, port: Number(https[1]), cert: cert[1] });
    });
    proc.on('exit', (code) => reject(new Error('demo exited ' + code + ': ' + err + out)));
  });
}

// base64(SHA-256(SubjectPublicKeyInfo)) of the certificate the demo serves on `port` (what
// --ignore-certificate-errors-spki-list takes), checked against the file it named: taken
// from the handshake, since a demo started at the same moment elsewhere may rewrite the
// shared file (build/<dir>/demo-tls) after this one loaded it.
function spkiHash(port, certFile) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost',
                               rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => {
      const served = sock.getPeerX509Certificate();
      const alpn = sock.alpnProtocol;
      sock.end();
      if (alpn !== 'h2') return reject(new Error('ALPN chose ' + alpn + ', not h2'));
      const file = new crypto.X509Certificate(fs.readFileSync(certFile));
      if (!served.checkIssued(served) || served.subject !== file.subject)
        return reject(new Error('the demo serves an unexpected certificate: ' + served.subject));
      const spki = served.publicKey.export({ type: 'spki', format: 'der' });
      resolve(crypto.createHash('sha256').update(spki).digest('base64'));
    });
    sock.on('error', reject);
  });
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function main() {
  const { proc, port, cert } = await startDemo();
  const base = `https://localhost:${port}`;
  let browser;
  let failed = null;
  try {
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync',
             '--disable-dev-shm-usage', '--ignore-certificate-errors-spki-list=' + await spkiHash(port, cert)],
      timeout: 30000,
    });
    const page = await (await browser.newContext()).newPage();

    // The index page and its stylesheet.
    const resp = await page.goto(base + '/', { waitUntil: 'load', timeout: 15000 });
    check(resp.status() === 200, 'GET / status ' + resp.status());
    const timing = await page.evaluate(() => ({
      nav: performance.getEntriesByType('navigation').map((e) => e.nextHopProtocol),
      res: performance.getEntriesByType('resource').map((e) => [new URL(e.name).pathname, e.nextHopProtocol]),
      rules: [...document.styleSheets].reduce((n, s) => n + s.cssRules.length, 0),
    }));
    check(timing.nav.length === 1 && timing.nav[0] === 'h2', 'navigation protocol ' + JSON.stringify(timing.nav));
    console.log('ok: navigation to ' + base + '/ over ' + timing.nav[0]);
    const css = timing.res.filter(([p]) => p === '/static/style.css');
    check(css.length === 1, 'the index page loaded no /static/style.css: ' + JSON.stringify(timing.res));
    for (const [p, proto] of timing.res) check(proto === 'h2', p + ' came over ' + JSON.stringify(proto));
    check(timing.rules > 0, 'the stylesheet has no rules in the page');
    console.log('ok: the page\'s assets over h2: ' + JSON.stringify(timing.res) + ', ' + timing.rules + ' CSS rules applied');

    // Many requests at once on the one connection.
    const burst = await page.evaluate(async () => {
      performance.clearResourceTimings();
      const paths = [];
      for (let i = 0; i < 10; i++) paths.push('/json?i=' + i, '/static/hello.txt?i=' + i, '/cookie?i=' + i);
      const bodies = await Promise.all(paths.map((p) => fetch(p).then(async (r) => [p, r.status, await r.text()])));
      const protos = performance.getEntriesByType('resource')
        .filter((e) => /[?]i=\d+$/.test(e.name)) /* (not a late /favicon.ico) */
        .map((e) => e.nextHopProtocol);
      return { bodies, protos };
    });
    check(burst.bodies.length === 30 && burst.bodies.every(([, s]) => s === 200),
      'burst statuses ' + JSON.stringify(burst.bodies.map(([p, s]) => [p, s])));
    const hello = fs.readFileSync(path.join(src, 'examples', 'demo', 'static', 'hello.txt'), 'utf8');
    for (const [p, , body] of burst.bodies) {
      if (p.startsWith('/json')) check(typeof JSON.parse(body) === 'object', p + ': ' + body);
      if (p.startsWith('/static')) check(body === hello, p + ': ' + body);
      if (p.startsWith('/cookie')) check(/You have been here \d+ time/.test(body), p + ': ' + body);
    }
    check(burst.protos.length === 30 && burst.protos.every((p) => p === 'h2'),
      'burst protocols ' + JSON.stringify(burst.protos));
    console.log('ok: 30 concurrent fetches (/json, /static/hello.txt, /cookie) all 200 over h2');

    // A request body larger than the initial stream window.
    const upload = await page.evaluate(async () => {
      const fd = new FormData();
      fd.append('name', 'h2 upload');
      fd.append('file', new Blob([new Uint8Array(256 * 1024).fill(65)], { type: 'application/octet-stream' }), 'a.bin');
      const r = await fetch('/form', { method: 'POST', body: fd });
      const text = await r.text(); /* the entry is there once the body is read */
      const e = performance.getEntriesByName(r.url).pop();
      return { status: r.status, text, proto: e ? e.nextHopProtocol : null };
    });
    check(upload.status === 200 && upload.text.includes('name: h2 upload') &&
          upload.text.includes('a.bin (262144 bytes, application/octet-stream)'),
      'upload: ' + upload.status + ' ' + upload.text);
    check(upload.proto === 'h2', 'upload protocol ' + upload.proto);
    console.log('ok: a 256 KiB multipart upload over h2 reached the handler whole');

    // The chat page over HTTPS: its WebSocket (wss://) beside the h2 connection.
    await page.goto(base + '/chat', { timeout: 15000 });
    await page.waitForFunction(() => document.getElementById('status').textContent === 'connected',
      null, { timeout: 15000 });
    const chatProto = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    check(chatProto === 'h2', '/chat over ' + chatProto);
    console.log('ok: /chat over h2 connected its wss:// WebSocket');
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
  console.log('OK: the demo exited 0');
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
