// @fails-components/webtransport over HTTP/2 (its pure-JavaScript part), for `cargo xtask interop`.
//
//   node fails-check.mjs server --port 4433 --cert cert.pem --key key.pem
//     Echo server on /echo and /close-me: bidi echoed (FIN echoed), a uni stream answered on a
//     new server uni stream at its FIN, datagrams echoed. Prints `READY <port>`, and
//     `CLOSE <code> <reason>` when a client closes a session. On /close-me the server closes
//     with 4242 "fails says bye" after the first bidi echo.
//   node fails-check.mjs client --url https://127.0.0.1:4433/echo --hash <sha-256 hex>
//                        [--close-url https://127.0.0.1:4433/close/4242/server%20bye]
//     Runs the checks; one `PASS name` / `FAIL name: why` line each; exits non-zero on failure.
import { readFileSync } from 'node:fs';
import { Http2Server, WebTransport } from '@fails-components/webtransport';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const enc = new TextEncoder();
const dec = new TextDecoder();
const withTimeout = (p, ms, what) =>
  Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error('timeout: ' + what)), ms))]);
async function readAll(readable) {
  const reader = readable.getReader();
  let out = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return out;
    out += dec.decode(value, { stream: true });
  }
}

async function serveSession(session, path) {
  await session.ready;
  session.closed.then(
    (info) => console.log(`CLOSE ${info?.closeCode ?? 0} ${info?.reason ?? ''}`),
    (e) => console.log(`END ${e}`),
  );
  (async () => {
    const r = session.incomingBidirectionalStreams.getReader();
    for (;;) {
      const { value, done } = await r.read();
      if (done) return;
      (async () => {
        await value.readable.pipeTo(value.writable);
        if (path === '/close-me') session.close({ closeCode: 4242, reason: 'fails says bye' });
      })().catch((e) => console.error('bidi', e));
    }
  })().catch((e) => console.error('bidi accept', e));
  (async () => {
    const r = session.incomingUnidirectionalStreams.getReader();
    for (;;) {
      const { value, done } = await r.read();
      if (done) return;
      (async () => {
        const data = await readAll(value);
        const out = await session.createUnidirectionalStream();
        const w = out.getWriter();
        await w.write(enc.encode(data));
        await w.close();
      })().catch((e) => console.error('uni', e));
    }
  })().catch((e) => console.error('uni accept', e));
  (async () => {
    const r = session.datagrams.readable.getReader();
    const w = session.datagrams.writable.getWriter();
    for (;;) {
      const { value, done } = await r.read();
      if (done) return;
      await w.write(value);
    }
  })().catch((e) => console.error('datagrams', e));
}

async function server() {
  const port = Number(arg('port', '4433'));
  const srv = new Http2Server({
    port,
    host: '127.0.0.1',
    secret: 'interop-secret',
    cert: readFileSync(arg('cert'), 'utf8'),
    privKey: readFileSync(arg('key'), 'utf8'),
  });
  srv.startServer();
  await srv.ready;
  for (const path of ['/echo', '/close-me']) {
    (async () => {
      const r = (await srv.sessionStream(path)).getReader();
      for (;;) {
        const { value, done } = await r.read();
        if (done) return;
        serveSession(value, path).catch((e) => console.error('session', e));
      }
    })().catch((e) => console.error('sessions', e));
  }
  console.log(`READY ${port}`);
}

async function client() {
  const url = arg('url');
  const hash = arg('hash');
  const closeUrl = arg('close-url');
  const value = new Uint8Array(hash.match(/../g).map((b) => parseInt(b, 16)));
  const open = async (u) => {
    const wt = new WebTransport(u, {
      serverCertificateHashes: [{ algorithm: 'sha-256', value }],
      forceReliable: true,
    });
    wt.closed.catch(() => {});
    await withTimeout(wt.ready, 10000, 'ready');
    return wt;
  };
  let failed = 0;
  const report = (name, why) => {
    if (why === null) console.log(`PASS ${name}`);
    else { failed++; console.log(`FAIL ${name}: ${why}`); }
  };
  let wt;
  try { wt = await open(url); report('connect', null); } catch (e) { report('connect', String(e)); return 1; }
  try {
    const s = await wt.createBidirectionalStream();
    const w = s.writable.getWriter();
    await w.write(enc.encode('hello from fails'));
    await w.close();
    const got = await withTimeout(readAll(s.readable), 10000, 'bidi echo');
    report('bidi', got === 'hello from fails' ? null : 'echo was ' + JSON.stringify(got));
  } catch (e) { report('bidi', String(e)); }
  try {
    const incoming = wt.incomingUnidirectionalStreams.getReader();
    const u = await wt.createUnidirectionalStream();
    const w = u.getWriter();
    await w.write(enc.encode('uni from fails'));
    await w.close();
    const { value: rs } = await withTimeout(incoming.read(), 10000, 'server uni stream');
    const got = await withTimeout(readAll(rs), 10000, 'uni data');
    report('uni', got === 'uni from fails' ? null : 'answer was ' + JSON.stringify(got));
    incoming.releaseLock();
  } catch (e) { report('uni', String(e)); }
  try {
    const dw = wt.datagrams.writable.getWriter();
    const dr = wt.datagrams.readable.getReader();
    await dw.write(enc.encode('datagram from fails'));
    const { value: d } = await withTimeout(dr.read(), 10000, 'datagram');
    const got = dec.decode(d);
    report('datagram', got === 'datagram from fails' ? null : 'echo was ' + JSON.stringify(got));
    dr.releaseLock();
    dw.releaseLock();
  } catch (e) { report('datagram', String(e)); }
  try {
    wt.close({ closeCode: 4141, reason: 'fails client bye' });
    await withTimeout(wt.closed, 10000, 'closed');
    report('close-sent', null);
  } catch (e) { report('close-sent', String(e)); }
  if (closeUrl) {
    try {
      const wt2 = await open(closeUrl);
      const info = await withTimeout(wt2.closed, 10000, 'server close');
      report('close-received', info.closeCode === 4242 && info.reason === 'server bye'
        ? null : 'closed with ' + JSON.stringify(info));
    } catch (e) { report('close-received', String(e)); }
  }
  return failed ? 1 : 0;
}

const mode = process.argv[2];
if (mode === 'server') {
  server().catch((e) => { console.log(`FAIL server: ${e}`); process.exit(1); });
} else if (mode === 'client') {
  client().then((rc) => process.exit(rc), (e) => { console.log(`FAIL client: ${e}`); process.exit(1); });
} else {
  console.error('usage: fails-check.mjs server|client ...');
  process.exit(2);
}
