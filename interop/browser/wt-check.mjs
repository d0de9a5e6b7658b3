// Headless Chromium against a WebTransport echo server, for `cargo xtask interop`.
//
//   node wt-check.mjs --url https://127.0.0.1:4433/echo --hash <sha-256 hex of the server cert>
//                     [--close-url https://127.0.0.1:4433/close/4242/server%20bye]
//                     [--close-command 'WT-CMD close 4242 server bye']
//                     [--chromium /usr/bin/chromium]
//
// Serves a tiny page on http://127.0.0.1:<random port>/ (a secure context: loopback), opens it
// in Chromium through playwright-core, and runs the checks in the page with
// `serverCertificateHashes` pinning the server's certificate. Prints one `PASS name` or
// `FAIL name: why` line per check and exits non-zero if any failed.
import http from 'node:http';
import { chromium } from 'playwright-core';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const url = arg('url');
const hash = arg('hash');
const closeUrl = arg('close-url');
const closeCommand = arg('close-command');
const executablePath = arg('chromium', '/usr/bin/chromium');
if (!url || !hash) {
  console.error('usage: wt-check.mjs --url URL --hash HEX [--close-url URL]');
  process.exit(2);
}

// The checks, run inside the page. Each returns null on success or a string saying why not.
const pageScript = `
const hex = (s) => new Uint8Array(s.match(/../g).map((b) => parseInt(b, 16)));
const enc = new TextEncoder();
const dec = new TextDecoder();
async function readAll(readable) {
  const reader = readable.getReader();
  let out = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return out;
    out += dec.decode(value, { stream: true });
  }
}
function withTimeout(p, ms, what) {
  return Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error('timeout: ' + what)), ms))]);
}
async function open(u) {
  const wt = new WebTransport(u, { serverCertificateHashes: [{ algorithm: 'sha-256', value: hex(window.CERT_HASH) }] });
  await withTimeout(wt.ready, 10000, 'ready');
  return wt;
}
window.runChecks = async (u, closeU, closeCmd) => {
  const results = {};
  let wt;
  try {
    wt = await open(u);
    results.connect = null;
  } catch (e) {
    results.connect = String(e);
    return results;
  }
  try {
    const s = await wt.createBidirectionalStream();
    const w = s.writable.getWriter();
    await w.write(enc.encode('hello from chromium'));
    await w.close();
    const got = await withTimeout(readAll(s.readable), 10000, 'bidi echo');
    results.bidi = got === 'hello from chromium' ? null : 'echo was ' + JSON.stringify(got);
  } catch (e) { results.bidi = String(e); }
  try {
    const incoming = wt.incomingUnidirectionalStreams.getReader();
    const u1 = await wt.createUnidirectionalStream();
    const w = u1.getWriter();
    await w.write(enc.encode('uni from chromium'));
    await w.close();
    const { value } = await withTimeout(incoming.read(), 10000, 'server uni stream');
    const got = await withTimeout(readAll(value), 10000, 'uni data');
    results.uni = got === 'uni from chromium' ? null : 'answer was ' + JSON.stringify(got);
    incoming.releaseLock();
  } catch (e) { results.uni = String(e); }
  try {
    const dw = wt.datagrams.writable.getWriter();
    const dr = wt.datagrams.readable.getReader();
    let got = null;
    for (let i = 0; i < 20 && got === null; i++) {
      await dw.write(enc.encode('datagram from chromium'));
      try {
        const { value } = await withTimeout(dr.read(), 500, 'datagram');
        got = dec.decode(value);
      } catch (e) { /* lost: resend */ }
    }
    results.datagram = got === 'datagram from chromium' ? null : 'echo was ' + JSON.stringify(got);
  } catch (e) { results.datagram = String(e); }
  try {
    wt.close({ closeCode: 4242, reason: 'chromium says bye' });
    await withTimeout(wt.closed, 10000, 'closed');
    results['close-sent'] = null;
  } catch (e) { results['close-sent'] = String(e); }
  // The server closes the session with 4242 "server bye": at once on --close-url (checked as
  // close-at-accept), or when asked with --close-command on a bidi stream of a fresh session
  // on --url (close-received).
  const expectClose = async (wt2) => {
    const info = await withTimeout(wt2.closed, 10000, 'server close');
    return info.closeCode === 4242 && info.reason === 'server bye'
      ? null : 'closed with ' + JSON.stringify(info);
  };
  if (closeCmd) {
    try {
      const wt2 = await open(u + (u.includes('?') ? '&' : '?') + 'close-command');
      const s = await wt2.createBidirectionalStream();
      const w = s.writable.getWriter();
      await w.write(enc.encode(closeCmd + '\\n'));
      results['close-received'] = await expectClose(wt2);
    } catch (e) { results['close-received'] = String(e); }
  }
  if (closeU) {
    const name = closeCmd ? 'close-at-accept' : 'close-received';
    try {
      results[name] = await expectClose(await open(closeU));
    } catch (e) { results[name] = String(e); }
  }
  return results;
};
`;

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end(`<!doctype html><title>wt interop</title><script>window.CERT_HASH=${JSON.stringify(hash)};${pageScript}</script>`);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const pagePort = server.address().port;

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
let failed = 0;
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.error('[page]', m.text()));
  await page.goto(`http://127.0.0.1:${pagePort}/`);
  const results = await page.evaluate(([u, c, k]) => window.runChecks(u, c, k), [url, closeUrl || null, closeCommand || null]);
  for (const [name, why] of Object.entries(results)) {
    if (why === null) console.log(`PASS ${name}`);
    else { failed++; console.log(`FAIL ${name}: ${why}`); }
  }
} catch (e) {
  failed++;
  console.log(`FAIL browser: ${e}`);
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
