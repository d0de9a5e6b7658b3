#!/usr/bin/env python3
"""WebTransport peer built on aioquic (PyPI `aioquic`), for `cargo xtask interop`.

aioquic speaks the draft-02 dialect: SETTINGS_ENABLE_WEBTRANSPORT (0x2b603742),
SETTINGS_H3_DATAGRAM (0x33), `:protocol webtransport`.

Server mode: an echo server. Bidi stream data is echoed on the same stream (FIN echoed as
FIN); a uni stream is collected and sent back on a new server uni stream at its FIN;
datagrams are echoed. When the client closes the session with WT_CLOSE_SESSION, the server
prints `CLOSE <code> <reason>` on stdout. The path `/close-me` makes the server close the
session with code 4242 and reason "aioquic says bye" after the first bidi echo.

Client mode: connects to URL and prints one `PASS name` / `FAIL name: why` line per check
(bidi, uni, datagram, close-sent, and with --close-url close-received: the server's close code
and reason arrive), then exits 0 only if everything passed.

    aioquic_wt.py server --port 4433 --cert cert.pem --key key.pem
    aioquic_wt.py client https://localhost:4433/echo --cacert cert.pem \
        [--close-url https://localhost:4433/close/4242/server%20bye]
"""

import argparse
import asyncio
import struct
import sys
from urllib.parse import urlparse

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.buffer import Buffer, encode_uint_var
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived, StreamReset

CLOSE_SESSION = 0x2843


def parse_capsules(buf: bytearray):
    """Yields (type, value) for each complete capsule and trims them from buf."""
    out = []
    while True:
        b = Buffer(data=bytes(buf))
        try:
            ctype = b.pull_uint_var()
            length = b.pull_uint_var()
            if b.capacity - b.tell() < length:
                break
            value = b.pull_bytes(length)
        except Exception:
            break
        del buf[: b.tell()]
        out.append((ctype, value))
    return out


def close_capsule(code: int, reason: bytes) -> bytes:
    value = struct.pack("!I", code) + reason
    return encode_uint_var(CLOSE_SESSION) + encode_uint_var(len(value)) + value


class ServerProtocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = None
        self.uni = {}
        self.sessions = {}
        self.capsules = {}

    def quic_event_received(self, event):
        if self.h3 is None:
            self.h3 = H3Connection(self._quic, enable_webtransport=True)
        if isinstance(event, ConnectionTerminated):
            return
        for ev in self.h3.handle_event(event):
            self.h3_event(ev)
        self.transmit()

    def h3_event(self, ev):
        if isinstance(ev, HeadersReceived):
            h = dict(ev.headers)
            if h.get(b":method") == b"CONNECT" and h.get(b":protocol") == b"webtransport":
                self.sessions[ev.stream_id] = h.get(b":path", b"/")
                self.capsules[ev.stream_id] = bytearray()
                self.h3.send_headers(
                    ev.stream_id,
                    [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")],
                )
            else:
                self.h3.send_headers(ev.stream_id, [(b":status", b"404")], end_stream=True)
        elif isinstance(ev, DataReceived) and ev.stream_id in self.sessions:
            buf = self.capsules[ev.stream_id]
            buf.extend(ev.data)
            for ctype, value in parse_capsules(buf):
                if ctype == CLOSE_SESSION and len(value) >= 4:
                    code = struct.unpack("!I", value[:4])[0]
                    print(f"CLOSE {code} {value[4:].decode('utf-8', 'replace')}", flush=True)
            if ev.stream_ended:
                self._quic.send_stream_data(ev.stream_id, b"", end_stream=True)
        elif isinstance(ev, WebTransportStreamDataReceived):
            sid = ev.stream_id
            if sid & 2:  # uni stream from the client: collect, answer at FIN
                self.uni.setdefault(sid, bytearray()).extend(ev.data)
                if ev.stream_ended:
                    data = bytes(self.uni.pop(sid))
                    out = self.h3.create_webtransport_stream(ev.session_id, is_unidirectional=True)
                    self._quic.send_stream_data(out, data, end_stream=True)
            else:
                self._quic.send_stream_data(sid, ev.data, end_stream=ev.stream_ended)
                if ev.stream_ended and self.sessions.get(ev.session_id) == b"/close-me":
                    self.h3._quic.send_stream_data(
                        ev.session_id,
                        encode_uint_var(0) + encode_uint_var(len(close_capsule(4242, b"aioquic says bye")))
                        + close_capsule(4242, b"aioquic says bye"),
                        end_stream=True,
                    )
        elif isinstance(ev, DatagramReceived):
            self.h3.send_datagram(ev.stream_id, ev.data)


async def run_server(args):
    config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536)
    config.load_cert_chain(args.cert, args.key)
    await serve(args.host, args.port, configuration=config, create_protocol=ServerProtocol)
    print(f"READY {args.port}", flush=True)
    await asyncio.Future()


class ClientProtocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.waiters = {}
        self.stream_data = {}
        self.datagrams = asyncio.Queue()
        self.new_uni = asyncio.Queue()
        self.session_capsules = bytearray()
        self.closed = asyncio.get_event_loop().create_future()
        self.response = asyncio.get_event_loop().create_future()
        self.session_ended = asyncio.get_event_loop().create_future()
        self.session_id = None

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            fut = self.waiters.get(event.stream_id)
            if fut and not fut.done():
                fut.set_exception(RuntimeError(f"stream reset {event.error_code:#x}"))
        # aioquic's H3Connection parses the reply direction of a bidi stream it opened itself
        # as HTTP/3 frames; that direction is raw WebTransport payload, so take it here.
        if isinstance(event, StreamDataReceived) and event.stream_id in self.waiters:
            buf = self.stream_data.setdefault(event.stream_id, bytearray())
            buf.extend(event.data)
            if event.end_stream:
                self.waiters.pop(event.stream_id).set_result(bytes(buf))
            return
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived) and ev.stream_id == self.session_id:
                if not self.response.done():
                    self.response.set_result(dict(ev.headers).get(b":status"))
            elif isinstance(ev, DataReceived) and ev.stream_id == self.session_id:
                self.session_capsules.extend(ev.data)
                for ctype, value in parse_capsules(self.session_capsules):
                    if ctype == CLOSE_SESSION and not self.closed.done():
                        code = struct.unpack("!I", value[:4])[0]
                        self.closed.set_result((code, value[4:].decode()))
                if ev.stream_ended and not self.session_ended.done():
                    self.session_ended.set_result(True)
            elif isinstance(ev, WebTransportStreamDataReceived):
                buf = self.stream_data.setdefault(ev.stream_id, bytearray())
                buf.extend(ev.data)
                if ev.stream_ended:
                    if ev.stream_id in self.waiters:
                        self.waiters.pop(ev.stream_id).set_result(bytes(buf))
                    else:
                        self.new_uni.put_nowait(bytes(buf))
            elif isinstance(ev, DatagramReceived):
                self.datagrams.put_nowait(ev.data)


async def run_client(args):
    url = urlparse(args.url)
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536)
    if args.cacert:
        config.load_verify_locations(args.cacert)
    else:
        import ssl

        config.verify_mode = ssl.CERT_NONE
    ok = True

    def report(name, err=None):
        nonlocal ok
        if err is None:
            print(f"PASS {name}", flush=True)
        else:
            ok = False
            print(f"FAIL {name}: {err}", flush=True)

    async with connect(url.hostname, url.port or 443, configuration=config,
                       create_protocol=ClientProtocol, wait_connected=True) as client:
        loop = asyncio.get_event_loop()
        sid = client._quic.get_next_available_stream_id()
        client.session_id = sid
        client.h3.send_headers(sid, [
            (b":method", b"CONNECT"), (b":scheme", b"https"),
            (b":authority", url.netloc.encode()), (b":path", (url.path or "/").encode()),
            (b":protocol", b"webtransport"), (b"sec-webtransport-http3-draft02", b"1"),
            (b"origin", b"https://" + url.netloc.encode()),
        ])
        client.transmit()
        status = await asyncio.wait_for(client.response, 10)
        if status != b"200":
            report("connect", f"status {status!r}")
            return 1
        # bidi echo
        try:
            s = client.h3.create_webtransport_stream(sid)
            client.waiters[s] = loop.create_future()
            client._quic.send_stream_data(s, b"hello bidi", end_stream=True)
            client.transmit()
            got = await asyncio.wait_for(client.waiters[s], 10)
            report("bidi", None if got == b"hello bidi" else f"echo {got!r}")
        except Exception as e:  # noqa: BLE001
            report("bidi", repr(e))
        # uni stream answered by a server uni stream
        try:
            u = client.h3.create_webtransport_stream(sid, is_unidirectional=True)
            client._quic.send_stream_data(u, b"hello uni", end_stream=True)
            client.transmit()
            got = await asyncio.wait_for(client.new_uni.get(), 10)
            report("uni", None if got == b"hello uni" else f"echo {got!r}")
        except Exception as e:  # noqa: BLE001
            report("uni", repr(e))
        # datagram echo, resent a few times (datagrams may be lost)
        err = "no echo"
        for _ in range(10):
            client.h3.send_datagram(sid, b"hello datagram")
            client.transmit()
            try:
                got = await asyncio.wait_for(client.datagrams.get(), 1)
                err = None if got == b"hello datagram" else f"echo {got!r}"
                break
            except asyncio.TimeoutError:
                continue
        report("datagram", err)
        # close with a code and reason; the server reports what it saw (checked by xtask)
        capsule = close_capsule(4141, b"aioquic client bye")
        client._quic.send_stream_data(sid, encode_uint_var(0) + encode_uint_var(len(capsule)) + capsule,
                                      end_stream=True)
        client.transmit()
        # Let the server answer with its FIN before the connection goes away, so the close
        # is not overtaken by our CONNECTION_CLOSE.
        try:
            await asyncio.wait_for(client.session_ended, 5)
        except asyncio.TimeoutError:
            pass
        report("close-sent")
    # the server closes a session: the code and reason must arrive
    if args.close_url:
        report("close-received", await close_received(args, config))
    return 0 if ok else 1


async def close_received(args, config):
    """Opens a session on --close-url and waits for the server's WT_CLOSE_SESSION."""
    url = urlparse(args.close_url)
    try:
        async with connect(url.hostname, url.port or 443, configuration=config,
                           create_protocol=ClientProtocol, wait_connected=True) as client:
            sid = client._quic.get_next_available_stream_id()
            client.session_id = sid
            client.h3.send_headers(sid, [
                (b":method", b"CONNECT"), (b":scheme", b"https"),
                (b":authority", url.netloc.encode()), (b":path", (url.path or "/").encode()),
                (b":protocol", b"webtransport"), (b"sec-webtransport-http3-draft02", b"1"),
                (b"origin", b"https://" + url.netloc.encode()),
            ])
            client.transmit()
            status = await asyncio.wait_for(client.response, 10)
            if status != b"200":
                return f"status {status!r}"
            code, reason = await asyncio.wait_for(client.closed, 10)
            want = (args.close_code, args.close_reason)
            return None if (code, reason) == want else f"closed with {code} {reason!r}, expected {want!r}"
    except Exception as e:  # noqa: BLE001
        return repr(e)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=4433)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    c = sub.add_parser("client")
    c.add_argument("url")
    c.add_argument("--cacert")
    c.add_argument("--close-url", help="a URL where the server closes the session at once")
    c.add_argument("--close-code", type=int, default=4242)
    c.add_argument("--close-reason", default="server bye")
    args = p.parse_args()
    if args.mode == "server":
        asyncio.run(run_server(args))
    else:
        sys.exit(asyncio.run(run_client(args)))


if __name__ == "__main__":
    main()
