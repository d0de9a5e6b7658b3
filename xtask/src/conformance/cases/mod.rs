//! The cases, one small async function each, grouped as in the wire reference's §8 (plus the
//! `X-*` cases beyond it, in `x*.rs`), and the helpers they share (echo round trips, capsule
//! collection, expectations on codes, server observations, the raw HTTP/2 frame client).

pub mod close;
pub mod datagram;
pub mod flow;
pub mod handshake;
pub mod limits;
pub mod reset;
pub mod robustness;
pub mod streams;
pub mod x;
pub mod x_h2;
pub mod x_h3;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use wt_core::capsule::{encode_stream_header, FinMapping};
use wt_core::codes::CapsuleType;
use wt_core::varint;

use super::ctx::{ensure, fail, CaseResult, Context, Ctx, Dl, Tp, Verdict};
use super::peer::h2::H2Session;
use super::peer::h3::{self, code_name, read_all, End, H3Conn, H3Stream};
use super::peer::{hex, ContentEvent};

/// Which transports and dialects a case runs in.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Applies(u8);

impl Applies {
    /// HTTP/3, latest dialect.
    pub const H3: Applies = Applies(1);
    /// HTTP/3, legacy dialect only.
    pub const H3_LEGACY: Applies = Applies(2);
    /// HTTP/3, both dialects.
    pub const H3_L: Applies = Applies(1 | 2);
    /// HTTP/2, latest dialect.
    pub const H2: Applies = Applies(4);
    /// HTTP/2, both dialects.
    pub const H2_L: Applies = Applies(4 | 8);
    /// Both transports, latest dialect.
    pub const BOTH: Applies = Applies(1 | 4);

    /// Union.
    pub const fn or(self, other: Applies) -> Applies {
        Applies(self.0 | other.0)
    }

    /// Whether the case runs in `tp` / `dl`.
    pub fn contains(self, tp: Tp, dl: Dl) -> bool {
        let bit = match (tp, dl) {
            (Tp::H3, Dl::Latest) => 1,
            (Tp::H3, Dl::Legacy) => 2,
            (Tp::H2, Dl::Latest) => 4,
            (Tp::H2, Dl::Legacy) => 8,
        };
        self.0 & bit != 0
    }
}

/// A case's future.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>;

/// One case of the suite.
pub struct Case {
    /// ID from the wire reference (`HS-1`, …).
    pub id: &'static str,
    /// Group (`handshake`, `streams`, …).
    pub group: &'static str,
    /// What it checks.
    pub title: &'static str,
    /// Where it runs.
    pub applies: Applies,
    /// The case.
    pub run: for<'a> fn(&'a Ctx) -> CaseFuture<'a>,
}

macro_rules! case {
    ($id:literal, $group:literal, $title:literal, $applies:expr, $f:path) => {
        Case {
            id: $id,
            group: $group,
            title: $title,
            applies: $applies,
            run: |cx| Box::pin($f(cx)),
        }
    };
}

/// Every case, in table order.
pub fn all() -> &'static [Case] {
    static ALL: OnceLock<Vec<Case>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut v = Vec::new();
        v.extend(handshake::cases());
        v.extend(streams::cases());
        v.extend(reset::cases());
        v.extend(datagram::cases());
        v.extend(close::cases());
        v.extend(flow::cases());
        v.extend(limits::cases());
        v.extend(robustness::cases());
        v.extend(x::cases());
        v.extend(x_h3::cases());
        v.extend(x_h2::cases());
        v
    })
}

pub(crate) use case;

// ----- shared byte builders -----

/// A raw HTTP/3 server on loopback (advertising `max_datagram_frame_size` when
/// `datagram_tp`), our HTTP/3 client pinned to its certificate, and a request for `/echo` on
/// it: the set-up of every case that checks our client's behaviour against a raw server.
pub fn our_client_vs_raw(
    cx: &Ctx,
    datagram_tp: bool,
) -> Result<(h3::RawH3Server, wt_h3::Client, wt_core::ConnectRequest), Verdict> {
    let server = h3::RawH3Server::bind(datagram_tp)?;
    let client = super::ours::h3_client_pinned(cx, server.cert_hash)?;
    let req = super::ours::request_to(server.addr, "/echo");
    Ok((server, client, req))
}

/// Encodes a varint.
pub fn vi(v: u64) -> Vec<u8> {
    h3::vi(v)
}

/// A capsule's bytes.
pub fn capsule(ty: u64, value: &[u8]) -> Vec<u8> {
    h3::capsule(ty, value)
}

/// WT_CLOSE_SESSION bytes.
pub fn close_capsule(code: u32, reason: &[u8]) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(reason);
    capsule(CapsuleType::WT_CLOSE_SESSION.0, &v)
}

/// An H2 WT_STREAM capsule.
pub fn h2_stream(fm: FinMapping, id: u64, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_stream_header(id, fin, data.len(), fm, &mut out).expect("small stream id");
    out.extend_from_slice(data);
    out.to_vec()
}

/// The credit capsules the raw H2 client sends after CONNECT: WT_MAX_DATA 64 MiB and 100
/// streams of each kind (per-stream credit comes from `webtransport-init`).
pub fn h2_credit() -> Vec<u8> {
    let mut out = capsule(CapsuleType::WT_MAX_DATA.0, &vi(64 << 20));
    out.extend(capsule(CapsuleType::WT_MAX_STREAMS_BIDI.0, &vi(100)));
    out.extend(capsule(CapsuleType::WT_MAX_STREAMS_UNI.0, &vi(100)));
    out
}

/// The pattern bytes the echo server pushes: byte `i` is `i % 256`.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 256) as u8).collect()
}

/// A `WT-CMD` command line.
pub fn cmd(line: &str) -> Vec<u8> {
    format!("WT-CMD {line}\n").into_bytes()
}

// ----- HTTP/3 helpers -----

/// Opens a WT bidi stream on session `sid`, sends `data` + FIN, and checks the echo is
/// exactly `data` + FIN on the same stream.
pub async fn h3_echo(cx: &Ctx, conn: &H3Conn, sid: u64, data: &[u8]) -> CaseResult {
    let (mut send, mut recv) = cx
        .within("opening a bidi stream", conn.open_wt_bi(sid))
        .await?
        .ctx("opening a bidi stream")?;
    send.write_all(data).await.ctx("writing echo data")?;
    let _ = send.finish();
    let (got, end) = cx
        .within("the echo", read_all(&mut recv, data.len() + 1024))
        .await?;
    ensure(got == data && end == End::Fin, || {
        format!(
            "expected the echo {} + FIN on the same stream, got {} + {end}",
            short(data),
            short(&got)
        )
    })
}

/// `"hello"` or a hex dump for binary data.
pub fn short(b: &[u8]) -> String {
    if b.len() <= 64 && b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        format!("{:?}", String::from_utf8_lossy(b))
    } else if b.len() > 64 {
        format!("{} bytes", b.len())
    } else {
        format!("[{}]", hex(b))
    }
}

/// Waits for the connection to be closed with HTTP/3 code `code`.
pub async fn expect_conn_close(cx: &Ctx, conn: &H3Conn, code: u64) -> CaseResult {
    let closed = cx
        .within(
            &format!("CONNECTION_CLOSE with {}", code_name(code)),
            conn.closed(),
        )
        .await?;
    ensure(closed.app_code() == Some(code), || {
        format!(
            "expected CONNECTION_CLOSE with {}, got {closed}",
            code_name(code)
        )
    })
}

/// Reads the CONNECT stream until it is reset; the code must be `code`.
pub async fn expect_connect_reset(cx: &Ctx, s: &mut H3Stream, code: u64) -> CaseResult {
    let what = format!("the CONNECT stream to be reset with {}", code_name(code));
    loop {
        let ev = cx.within(&what, s.next_capsule()).await?;
        match ev {
            ContentEvent::Capsule { .. } => continue,
            ContentEvent::Reset(c) if c == code => return Ok(()),
            other => {
                return fail(format!(
                    "expected the CONNECT stream to be reset with {}, got {}",
                    code_name(code),
                    match other {
                        ContentEvent::Reset(c) => format!("RESET_STREAM {}", code_name(c)),
                        o => o.to_string(),
                    }
                ))
            }
        }
    }
}

/// Reads the CONNECT stream until the session ends: returns the close capsule seen (if any)
/// and how the stream ended.
pub async fn h3_session_end(
    cx: &Ctx,
    s: &mut H3Stream,
) -> Result<(Option<Bytes>, ContentEvent), Verdict> {
    let mut close = None;
    loop {
        match cx
            .within("the end of the session", s.next_capsule())
            .await?
        {
            ContentEvent::Capsule { ty, wire, .. } if ty == CapsuleType::WT_CLOSE_SESSION.0 => {
                close = Some(wire)
            }
            ContentEvent::Capsule { .. } => {}
            end => return Ok((close, end)),
        }
    }
}

// ----- HTTP/2 helpers -----

/// What the raw H2 client collected from the CONNECT stream.
#[derive(Debug, Default)]
pub struct H2View {
    /// Per WT stream: data, FIN seen, reset (code, reliable size).
    pub streams: HashMap<u64, H2StreamView>,
    /// DATAGRAM capsules.
    pub datagrams: Vec<Bytes>,
    /// WT_CLOSE_SESSION (wire bytes).
    pub close: Option<Bytes>,
    /// WT_DRAIN_SESSION seen (wire bytes).
    pub drain: Option<Bytes>,
    /// Every capsule in order: (type, wire bytes).
    pub capsules: Vec<(u64, Bytes)>,
    /// How the CONNECT stream ended, if it did.
    pub end: Option<ContentEvent>,
}

/// One WT stream seen by the raw H2 client.
#[derive(Debug, Default, Clone)]
pub struct H2StreamView {
    /// Data received.
    pub data: Vec<u8>,
    /// FIN received.
    pub fin: bool,
    /// WT_RESET_STREAM received: (code, reliable size; None for the 2-field form).
    pub reset: Option<(u64, Option<u64>)>,
    /// WT_STOP_SENDING received (code).
    pub stop: Option<u64>,
    /// The WT_STREAM capsules' wire bytes.
    pub wires: Vec<Bytes>,
}

impl H2View {
    fn absorb(&mut self, fm: FinMapping, ty: u64, value: Bytes, wire: Bytes) -> Result<(), String> {
        self.capsules.push((ty, wire.clone()));
        let t = CapsuleType(ty);
        let mut v = &value[..];
        match t {
            CapsuleType::DATAGRAM => self.datagrams.push(value.clone()),
            CapsuleType::WT_CLOSE_SESSION => self.close = Some(wire),
            CapsuleType::WT_DRAIN_SESSION => self.drain = Some(wire),
            CapsuleType::WT_STREAM_3B | CapsuleType::WT_STREAM_3C => {
                let id = varint::decode(&mut v).map_err(|_| "WT_STREAM without stream id")?;
                let s = self.streams.entry(id).or_default();
                if s.data.len() + v.len() > 32 << 20 {
                    return Err("more than 32 MiB on one stream".into());
                }
                s.data.extend_from_slice(v);
                s.wires.push(wire);
                if fm.is_fin(t) {
                    s.fin = true;
                }
            }
            CapsuleType::WT_RESET_STREAM => {
                let id = varint::decode(&mut v).map_err(|_| "WT_RESET_STREAM without id")?;
                let code = varint::decode(&mut v).map_err(|_| "WT_RESET_STREAM without code")?;
                let rs = varint::decode(&mut v).ok();
                self.streams.entry(id).or_default().reset = Some((code, rs));
            }
            CapsuleType::WT_STOP_SENDING => {
                let id = varint::decode(&mut v).map_err(|_| "WT_STOP_SENDING without id")?;
                let code = varint::decode(&mut v).map_err(|_| "WT_STOP_SENDING without code")?;
                self.streams.entry(id).or_default().stop = Some(code);
            }
            _ => {}
        }
        Ok(())
    }

    /// The view of stream `id`.
    pub fn stream(&self, id: u64) -> H2StreamView {
        self.streams.get(&id).cloned().unwrap_or_default()
    }
}

/// Reads capsules from the raw H2 session into `view` until `done(view)` or the CONNECT
/// stream ends.
pub async fn h2_until(
    cx: &Ctx,
    s: &mut H2Session,
    view: &mut H2View,
    what: &str,
    done: impl Fn(&H2View) -> bool,
) -> CaseResult {
    let fm = cx.fin_mapping();
    while !done(view) {
        if view.end.is_some() {
            return Ok(());
        }
        match cx.within(what, s.next_capsule()).await? {
            ContentEvent::Capsule { ty, value, wire } => {
                view.absorb(fm, ty, value, wire).map_err(Verdict::Fail)?
            }
            end => view.end = Some(end),
        }
    }
    Ok(())
}

/// Sends `data` + FIN on WT stream `id` of a raw H2 session and checks the echo is exactly
/// `data` + FIN on the same stream.
pub async fn h2_echo(cx: &Ctx, s: &mut H2Session, id: u64, data: &[u8]) -> CaseResult {
    s.send(h2_stream(cx.fin_mapping(), id, true, data))
        .ctx("sending WT_STREAM")?;
    let mut view = H2View::default();
    h2_until(cx, s, &mut view, "the echo", |v| {
        v.stream(id).fin || v.stream(id).reset.is_some()
    })
    .await?;
    let st = view.stream(id);
    ensure(st.fin && st.data == data, || {
        format!(
            "expected the echo {} + FIN on WT stream {id}, got {} (fin {}, reset {:?}){}",
            short(data),
            short(&st.data),
            st.fin,
            st.reset,
            end_note(&view)
        )
    })
}

/// Prefixes a failure message with `what: `.
pub fn prefix(v: Verdict, what: &str) -> Verdict {
    match v {
        Verdict::Fail(m) => Verdict::Fail(format!("{what}: {m}")),
        o => o,
    }
}

/// ", then the CONNECT stream ended: …" when it did.
pub fn end_note(view: &H2View) -> String {
    match &view.end {
        Some(e) => format!("; then the CONNECT stream ended: {e}"),
        None => String::new(),
    }
}

/// Waits until the H2 CONNECT stream is reset (RST_STREAM, any code): a session error.
/// Returns the code.
pub async fn expect_h2_session_error(
    cx: &Ctx,
    s: &mut H2Session,
    what: &str,
) -> Result<u64, Verdict> {
    let mut view = H2View::default();
    h2_until(cx, s, &mut view, what, |_| false).await?;
    match view.end {
        Some(ContentEvent::Reset(code)) => Ok(code),
        Some(other) => fail(format!(
            "expected {what} (RST_STREAM on the CONNECT stream), got {other}{}",
            if view.close.is_some() {
                " after WT_CLOSE_SESSION"
            } else {
                ""
            }
        )),
        None => fail(format!("expected {what}, the stream did not end")),
    }
}

// ----- server observations (wt-testserver conventions) -----

/// Response header carrying the session's observation token.
pub const TOKEN_HEADER: &str = "wt-testserver-token";

/// Parses the observation token from the response header value `v`.
pub fn token_of(v: Option<&str>) -> Result<u64, Verdict> {
    match v.and_then(|t| t.trim().parse::<u64>().ok()) {
        Some(t) if t > 0 => Ok(t),
        _ => fail(format!(
            "expected a {TOKEN_HEADER} response header with the session's observation token, got {v:?}"
        )),
    }
}

/// A raw HTTP/3 session on `path` and its observation token.
pub async fn h3_session_tok(cx: &Ctx, path: &str) -> Result<(H3Conn, H3Stream, u64), Verdict> {
    let mut conn = cx.h3_conn(cx.h3_options()).await?;
    cx.within("the server's SETTINGS", conn.server_settings())
        .await?
        .ctx("server SETTINGS")?;
    let (s, resp) = cx.h3_accept(&conn, path, &[]).await?;
    let tok = token_of(resp.get(TOKEN_HEADER))?;
    Ok((conn, s, tok))
}

/// A raw HTTP/2 session on `path` and its observation token.
pub async fn h2_session_tok(
    cx: &Ctx,
    path: &str,
) -> Result<(super::peer::h2::H2Conn, H2Session, u64), Verdict> {
    let (c, s) = cx.h2_session(path).await?;
    let tok = token_of(s.header(TOKEN_HEADER).as_deref())?;
    Ok((c, s, tok))
}

/// The server's observations of session `token` (once it ended, or once one is about
/// `stream`), read from a new `/observed/...` session over the case's transport: one entry a
/// line.
pub async fn observed(cx: &Ctx, token: u64, stream: Option<u64>) -> Result<Vec<String>, Verdict> {
    let path = match stream {
        Some(id) => format!("/observed/{token}/{id}"),
        None => format!("/observed/{token}"),
    };
    let bytes = match cx.tp {
        Tp::H3 => {
            let (mut conn, s) = cx.h3_session(&path).await?;
            loop {
                let mut inc = cx
                    .within(
                        "the observations on a server uni stream",
                        conn.accept_wt_uni(),
                    )
                    .await?
                    .ctx("the observations")?;
                if inc.session_id != s.id {
                    continue;
                }
                let (got, end) = cx
                    .within("the observations", read_all(&mut inc.recv, 256 << 10))
                    .await?;
                ensure(end == End::Fin, || {
                    format!("expected the observations to end with FIN, got {end}")
                })?;
                conn.shutdown().await;
                break got;
            }
        }
        Tp::H2 => {
            let (_c, mut s) = cx.h2_session(&path).await?;
            let mut view = H2View::default();
            h2_until(
                cx,
                &mut s,
                &mut view,
                "the observations on a server uni stream",
                |v| v.streams.values().any(|st| st.fin),
            )
            .await?;
            match view.streams.values().find(|st| st.fin) {
                Some(st) => st.data.clone(),
                None => {
                    return fail(format!(
                        "expected the observations on a server uni stream{}",
                        end_note(&view)
                    ))
                }
            }
        }
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| Verdict::Fail("the observations are not UTF-8".into()))?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// Checks that the server recorded `want` (an exact line) for session `token`.
pub async fn expect_observed(cx: &Ctx, token: u64, stream: Option<u64>, want: &str) -> CaseResult {
    let lines = observed(cx, token, stream).await?;
    ensure(lines.iter().any(|l| l == want), || {
        format!("expected the server to record {want:?}, it recorded {lines:?}")
    })
}

/// The `terminate` line of session `token` as the server recorded it.
pub async fn observed_end(cx: &Ctx, token: u64) -> Result<String, Verdict> {
    let lines = observed(cx, token, None).await?;
    match lines.iter().find(|l| l.starts_with("terminate ")) {
        Some(l) => Ok(l.clone()),
        None => fail(format!(
            "expected a terminate line for session {token} once it ended, the server recorded {lines:?}"
        )),
    }
}

// ----- raw frame-level HTTP/2 client helpers -----

/// A raw frame-level HTTP/2 connection with our `settings`, once the server's SETTINGS and
/// the ACK of ours arrived.
pub async fn h2_raw(
    cx: &Ctx,
    settings: &[(u16, u32)],
) -> Result<super::peer::h2::RawH2Client, Verdict> {
    let t = &cx.target;
    let mut c = cx
        .within(
            "the HTTP/2 handshake",
            super::peer::h2::RawH2Client::connect(cx.h2_addr(), &t.host, &t.tls, settings),
        )
        .await?
        .ctx("raw HTTP/2 connection")?;
    cx.within(
        "the server's SETTINGS and ACK",
        c.until(|c| c.server_settings.is_some() && c.acks >= 1),
    )
    .await?
    .ctx("HTTP/2 handshake")?;
    Ok(c)
}

/// The extended CONNECT fields of the raw HTTP/2 client for `path`, plus `extra`.
pub fn h2_raw_fields(cx: &Ctx, path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = vec![
        (":method".into(), "CONNECT".into()),
        (":protocol".into(), "webtransport".into()),
        (":scheme".into(), "https".into()),
        (":authority".into(), cx.target.authority.clone()),
        (":path".into(), cx.path(path)),
        ("origin".into(), cx.origin()),
    ];
    for (n, v) in extra {
        f.push(((*n).into(), (*v).into()));
    }
    f
}

/// Sends `fields` as a request on the raw client and waits for the response status (or the
/// stream's reset).
pub async fn h2_raw_request(
    cx: &Ctx,
    c: &mut super::peer::h2::RawH2Client,
    fields: &[(String, String)],
) -> Result<(u32, Result<u16, u32>), Verdict> {
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let id = c.request(&refs).await.ctx("sending HEADERS")?;
    cx.within(
        "the response",
        c.until(|c| {
            c.streams
                .get(&id)
                .is_some_and(|s| s.status.is_some() || s.reset.is_some())
        }),
    )
    .await?
    .ctx("waiting for the response")?;
    let st = c.stream(id);
    Ok((
        id,
        match (st.status, st.reset) {
            (Some(s), _) => Ok(s),
            (None, r) => Err(r.unwrap_or(0)),
        },
    ))
}

/// Opens a WT session with the raw client (extra headers `extra`, then `first` content
/// bytes); fails unless 200.
pub async fn h2_raw_session(
    cx: &Ctx,
    c: &mut super::peer::h2::RawH2Client,
    path: &str,
    extra: &[(&str, &str)],
    first: &[u8],
) -> Result<u32, Verdict> {
    let fields = h2_raw_fields(cx, path, extra);
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let id = c.request(&refs).await.ctx("sending HEADERS")?;
    if !first.is_empty() {
        c.data(id, first, false).await.ctx("sending capsules")?;
    }
    cx.within(
        "the response",
        c.until(|c| {
            c.streams
                .get(&id)
                .is_some_and(|s| s.status.is_some() || s.reset.is_some())
        }),
    )
    .await?
    .ctx("waiting for the response")?;
    let st = c.stream(id);
    ensure(st.status == Some(200), || {
        format!(
            "expected :status 200 for CONNECT {path}, got {:?} (RST_STREAM {:?})",
            st.status, st.reset
        )
    })?;
    Ok(id)
}

/// Reads the raw client's session `id` into `view` until `done(view)` or the stream ends.
pub async fn h2_raw_until(
    cx: &Ctx,
    c: &mut super::peer::h2::RawH2Client,
    id: u32,
    view: &mut H2View,
    what: &str,
    done: impl Fn(&H2View) -> bool,
) -> CaseResult {
    let fm = cx.fin_mapping();
    let go = async {
        loop {
            loop {
                let st = c.stream(id);
                match st.content.next() {
                    Ok(Some(ContentEvent::Capsule { ty, value, wire })) => {
                        view.absorb(fm, ty, value, wire).map_err(Verdict::Fail)?
                    }
                    Ok(_) => break,
                    Err(e) => {
                        view.end = Some(ContentEvent::Error(e));
                        return Ok(());
                    }
                }
            }
            if done(view) {
                return Ok(());
            }
            let st = c.stream(id);
            if let Some(code) = st.reset {
                view.end = Some(ContentEvent::Reset(code as u64));
                return Ok(());
            }
            if st.end_stream {
                view.end = Some(st.content.at_fin());
                return Ok(());
            }
            match c.step().await {
                Ok(true) => {}
                Ok(false) => {
                    view.end = Some(ContentEvent::Error(super::peer::PeerError::Closed(
                        "connection ended".into(),
                    )));
                    return Ok(());
                }
                Err(e) => {
                    view.end = Some(ContentEvent::Error(e));
                    return Ok(());
                }
            }
        }
    };
    cx.within(what, go).await?
}
