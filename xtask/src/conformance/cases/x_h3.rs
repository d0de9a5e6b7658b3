//! Cases beyond §8 for HTTP/3 (`X-H3-n`): the HTTP/3 (RFC 9114), QPACK (RFC 9204) and
//! extended CONNECT (RFC 9220) rules a WebTransport server depends on, and the wire
//! reference's dialect-detection and session-gone rules (§3.5, §3.10, §6.4). Each title names
//! the rule it checks.

use std::time::Duration;

use wt_core::codes::{wt_to_h3, CapsuleType};

use super::super::ctx::{ensure, fail, CaseResult, Context, Ctx, Verdict};
use super::super::peer::h3::{
    cat, code_name, codes, data_frame, headers_frame, headers_frame_huffman, ids, read_all,
    settings_frame, vi, End, H3Conn, H3Options,
};
use super::super::peer::PeerError;
use super::{case, close_capsule, expect_conn_close, h3_echo, Applies, Case};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!("X-H3-1", "handshake", "RFC 9114 6.2.1: second control stream is H3_STREAM_CREATION_ERROR", Applies::H3, second_control),
        case!("X-H3-2", "handshake", "RFC 9114 6.2.1: control stream not starting with SETTINGS is H3_MISSING_SETTINGS", Applies::H3, missing_settings),
        case!("X-H3-3", "handshake", "RFC 9114 6.2.1: closing the control stream is H3_CLOSED_CRITICAL_STREAM", Applies::H3, closed_control),
        case!("X-H3-4", "handshake", "RFC 9114 7.2.1: DATA on the control stream is H3_FRAME_UNEXPECTED", Applies::H3, data_on_control),
        case!("X-H3-5", "handshake", "RFC 9114 7.2.4: a second SETTINGS frame is H3_FRAME_UNEXPECTED", Applies::H3, second_settings),
        case!("X-H3-6", "handshake", "RFC 9114 7.2.4: a duplicate setting identifier is H3_SETTINGS_ERROR", Applies::H3, duplicate_setting),
        case!("X-H3-7", "handshake", "RFC 9114 7.2.4.1: HTTP/2 setting 0x02 in SETTINGS is H3_SETTINGS_ERROR", Applies::H3, h2_setting),
        case!("X-H3-8", "handshake", "RFC 9114 7.2.8: HTTP/2 frame type (PING 0x06) is H3_FRAME_UNEXPECTED", Applies::H3, h2_frame),
        case!("X-H3-9", "robustness", "RFC 9114 6.2: unknown uni stream type is ignored, no connection error", Applies::H3, unknown_uni),
        case!("X-H3-10", "robustness", "RFC 9114 6.2.2: push stream from a client is H3_STREAM_CREATION_ERROR", Applies::H3, client_push),
        case!("X-H3-11", "robustness", "RFC 9204 4.3.1: table capacity above the maximum (0) is QPACK_ENCODER_STREAM_ERROR", Applies::H3, qpack_capacity),
        case!("X-H3-12", "robustness", "RFC 9204 4.2: a second QPACK encoder stream is H3_STREAM_CREATION_ERROR", Applies::H3, second_encoder),
        case!("X-H3-13", "handshake", "RFC 9114 9: unknown frame with payload before HEADERS is skipped", Applies::H3_L, unknown_frame_first),
        case!("X-H3-14", "handshake", "RFC 9204 4.5.6: Huffman-encoded request fields are accepted", Applies::H3_L, huffman_request),
        case!("X-H3-15", "handshake", "RFC 9220 3: CONNECT without :authority, :path or :scheme is malformed", Applies::H3, missing_pseudo),
        case!("X-H3-16", "handshake", "RFC 9114 4.2: an upper-case field name makes the request malformed", Applies::H3, uppercase_name),
        case!("X-H3-17", "handshake", "RFC 9114 4.3: a pseudo-header after a regular field is malformed", Applies::H3, late_pseudo),
        case!("X-H3-18", "handshake", "RFC 9114 4.2: a connection-specific field (connection) is malformed", Applies::H3, connection_field),
        case!("X-H3-19", "handshake", "ref 6.4: webtransport-h3 with a draft-02 header is rejected with 400", Applies::H3, latest_with_draft02),
        case!("X-H3-20", "handshake", "ref 6.4: draft-07 client (0xc671706a, webtransport) accepted, no draft02 header", Applies::H3, draft07_client),
        case!("X-H3-21", "handshake", "ref 6.4: draft-13 client (0x14e9cd29, webtransport) accepted, no draft02 header", Applies::H3, draft13_client),
        case!("X-H3-22", "streams", "ref 3.5/3.10: WT stream for a closed session is reset or stopped with WT_SESSION_GONE", Applies::H3_L, gone_session_stream),
        case!("X-H3-23", "streams", "RFC 9114 4.1: DATA before HEADERS on a request stream is H3_FRAME_UNEXPECTED", Applies::H3, data_before_headers),
        case!("X-H3-24", "flow", "ref 3.8: uni stream beyond WT_MAX_STREAMS_UNI is WT_FLOW_CONTROL_ERROR", Applies::H3, uni_beyond_limit),
        case!("X-H3-25", "handshake", "ref 3.3: wt-available-protocols of tokens (not strings) is ignored on d15+", Applies::H3, token_offer_ignored),
        case!("X-H3-26", "reset", "ref 1.6: map(30) = 0x52e4a40fa8fa reaches the app as 30; reserved 0x52e4a40fa8f9 as no code", Applies::H3_L, mapping_edges),
    ]
}

/// Raw options of the case's dialect with `send_settings` as given.
fn opts(cx: &Ctx, send_settings: bool) -> H3Options {
    let mut o = cx.h3_options();
    o.send_settings = send_settings;
    o
}

/// Our control stream bytes: type 0x00 then SETTINGS of the case's dialect.
fn control_prefix(cx: &Ctx) -> Vec<u8> {
    cat(&[&[0x00], &settings_frame(&cx.h3_settings())])
}

/// A raw connection (our SETTINGS sent as usual) that has the server's SETTINGS.
async fn ready(cx: &Ctx) -> Result<H3Conn, Verdict> {
    let mut conn = cx.h3_conn(cx.h3_options()).await?;
    cx.within("the server's SETTINGS", conn.server_settings())
        .await?
        .ctx("server SETTINGS")?;
    Ok(conn)
}

async fn second_control(cx: &Ctx) -> CaseResult {
    let conn = ready(cx).await?;
    let _s = conn.open_uni_raw(&control_prefix(cx)).await;
    expect_conn_close(cx, &conn, codes::H3_STREAM_CREATION_ERROR).await
}

async fn missing_settings(cx: &Ctx) -> CaseResult {
    let mut conn = cx.h3_conn(opts(cx, false)).await?;
    // MAX_PUSH_ID(0) as the first frame.
    conn.send_control_raw(&[0x00, 0x0d, 0x01, 0x00]).await?;
    expect_conn_close(cx, &conn, codes::H3_MISSING_SETTINGS).await
}

async fn closed_control(cx: &Ctx) -> CaseResult {
    let mut conn = ready(cx).await?;
    conn.finish_control();
    expect_conn_close(cx, &conn, codes::H3_CLOSED_CRITICAL_STREAM).await
}

async fn data_on_control(cx: &Ctx) -> CaseResult {
    let mut conn = ready(cx).await?;
    conn.send_control_raw(&data_frame(b"x")).await?;
    expect_conn_close(cx, &conn, codes::H3_FRAME_UNEXPECTED).await
}

async fn second_settings(cx: &Ctx) -> CaseResult {
    let mut conn = ready(cx).await?;
    conn.send_control_raw(&settings_frame(&[(ids::QPACK_MAX_TABLE_CAPACITY, 0)]))
        .await?;
    expect_conn_close(cx, &conn, codes::H3_FRAME_UNEXPECTED).await
}

/// Sends `settings_payload` as our only SETTINGS frame (hand-built) and expects `code`.
async fn bad_settings(cx: &Ctx, payload: &[u8], code: u64) -> CaseResult {
    let mut conn = cx.h3_conn(opts(cx, false)).await?;
    let bytes = cat(&[&[0x00, 0x04], &vi(payload.len() as u64), payload]);
    conn.send_control_raw(&bytes).await?;
    expect_conn_close(cx, &conn, code).await
}

async fn duplicate_setting(cx: &Ctx) -> CaseResult {
    // H3_DATAGRAM=1 twice.
    let payload = cat(&[&settings_payload_of(cx), &[0x33, 0x01]]);
    bad_settings(cx, &payload, codes::H3_SETTINGS_ERROR).await
}

async fn h2_setting(cx: &Ctx) -> CaseResult {
    // SETTINGS_ENABLE_PUSH (HTTP/2 0x02) = 0.
    let payload = cat(&[&settings_payload_of(cx), &[0x02, 0x00]]);
    bad_settings(cx, &payload, codes::H3_SETTINGS_ERROR).await
}

/// The payload of the case's SETTINGS frame (without frame type and length).
fn settings_payload_of(cx: &Ctx) -> Vec<u8> {
    cx.h3_settings()
        .iter()
        .flat_map(|(i, v)| cat(&[&vi(*i), &vi(*v)]))
        .collect()
}

async fn h2_frame(cx: &Ctx) -> CaseResult {
    let mut conn = ready(cx).await?;
    // PING (HTTP/2 frame type 0x06) with an 8-byte payload.
    conn.send_control_raw(&cat(&[&[0x06, 0x08], &[0u8; 8]]))
        .await?;
    expect_conn_close(cx, &conn, codes::H3_FRAME_UNEXPECTED).await
}

async fn unknown_uni(cx: &Ctx) -> CaseResult {
    let conn = ready(cx).await?;
    // Reserved stream type 0x21 + 0x1f*2 with some bytes.
    let mut s = conn
        .open_uni_raw(&cat(&[&vi(0x1f * 2 + 0x21), b"ignore me"]))
        .await?;
    let _ = s.finish();
    let (sess, _) = cx.h3_accept(&conn, "/echo", &[]).await?;
    h3_echo(cx, &conn, sess.id, b"still fine").await?;
    ensure(conn.conn.close_reason().is_none(), || {
        "expected no connection error for an unknown stream type".into()
    })
}

async fn client_push(cx: &Ctx) -> CaseResult {
    let conn = ready(cx).await?;
    let _s = conn.open_uni_raw(&[0x01, 0x00]).await;
    expect_conn_close(cx, &conn, codes::H3_STREAM_CREATION_ERROR).await
}

async fn qpack_capacity(cx: &Ctx) -> CaseResult {
    let conn = ready(cx).await?;
    // Encoder stream (0x02): Set Dynamic Table Capacity 100 (001 + 5-bit prefix: 0x3f 0x45).
    let _s = conn.open_uni_raw(&[0x02, 0x3f, 0x45]).await;
    expect_conn_close(cx, &conn, codes::QPACK_ENCODER_STREAM_ERROR).await
}

async fn second_encoder(cx: &Ctx) -> CaseResult {
    let conn = ready(cx).await?;
    let _a = conn.open_uni_raw(&[0x02]).await?;
    // Let the first one be seen first.
    let (sess, _) = cx.h3_accept(&conn, "/echo", &[]).await?;
    h3_echo(cx, &conn, sess.id, b"one encoder stream").await?;
    let _b = conn.open_uni_raw(&[0x02]).await;
    expect_conn_close(cx, &conn, codes::H3_STREAM_CREATION_ERROR).await
}

async fn unknown_frame_first(cx: &Ctx) -> CaseResult {
    let conn = ready(cx).await?;
    let fields = cx.h3_connect_fields("/echo", &[]);
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut s = conn.open_bi_raw().await?;
    // Reserved frame type 0x21 + 0x1f*7 with a 5-byte payload, then HEADERS.
    let unknown = cat(&[&vi(0x1f * 7 + 0x21), &vi(5), b"abcde"]);
    s.write(&cat(&[&unknown, &headers_frame(&refs)])).await?;
    let resp = cx.within("the response", s.response()).await??;
    ensure(resp.status() == 200, || {
        format!(
            "expected 200 after an unknown frame before HEADERS, got {}",
            resp.status()
        )
    })?;
    h3_echo(cx, &conn, s.id, b"after unknown frame").await
}

async fn huffman_request(cx: &Ctx) -> CaseResult {
    let conn = ready(cx).await?;
    let fields = cx.h3_connect_fields("/echo", &[]);
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let bytes = headers_frame_huffman(&refs);
    if bytes == headers_frame(&refs) {
        return fail("case error: the Huffman encoding came out identical to the literal one");
    }
    let mut s = conn.open_bi_raw().await?;
    s.write(&bytes).await?;
    let resp = cx.within("the response", s.response()).await??;
    ensure(resp.status() == 200, || {
        format!(
            "expected 200 for a Huffman-encoded request, got {}",
            resp.status()
        )
    })?;
    h3_echo(cx, &conn, s.id, b"huffman").await
}

/// Sends `fields` as a request and expects it treated as malformed: the stream reset with
/// H3_MESSAGE_ERROR, or a 4xx response (RFC 9114 §4.1.2 allows answering first).
async fn malformed_request(cx: &Ctx, fields: &[(String, String)], what: &str) -> CaseResult {
    let conn = ready(cx).await?;
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut s = conn.open_bi_raw().await?;
    s.write(&headers_frame(&refs)).await?;
    match cx.within("the answer", s.response()).await? {
        Err(PeerError::Reset(c)) if c == codes::H3_MESSAGE_ERROR => Ok(()),
        Ok(f) if (400..500).contains(&f.status()) => Ok(()),
        Ok(f) => fail(format!("{what}: expected a malformed request (reset H3_MESSAGE_ERROR or 4xx), got :status {}", f.status())),
        Err(e) => fail(format!("{what}: expected the request stream reset with H3_MESSAGE_ERROR (0x10e) or a 4xx, got {e}")),
    }
}

async fn missing_pseudo(cx: &Ctx) -> CaseResult {
    for name in [":authority", ":path", ":scheme"] {
        let mut f = cx.h3_connect_fields("/echo", &[]);
        f.retain(|(n, _)| n != name);
        malformed_request(cx, &f, &format!("CONNECT without {name}")).await?;
    }
    Ok(())
}

async fn uppercase_name(cx: &Ctx) -> CaseResult {
    let f = cx.h3_connect_fields("/echo", &[("X-Upper", "1")]);
    malformed_request(cx, &f, "a field named X-Upper").await
}

async fn late_pseudo(cx: &Ctx) -> CaseResult {
    let mut f = cx.h3_connect_fields("/echo", &[]);
    let path = f.iter().position(|(n, _)| n == ":path").unwrap_or(0);
    let p = f.remove(path);
    f.push(p);
    malformed_request(cx, &f, ":path after origin").await
}

async fn connection_field(cx: &Ctx) -> CaseResult {
    let f = cx.h3_connect_fields("/echo", &[("connection", "keep-alive")]);
    malformed_request(cx, &f, "connection: keep-alive").await
}

async fn latest_with_draft02(cx: &Ctx) -> CaseResult {
    let conn = ready(cx).await?;
    let mut s = cx
        .h3_request(&conn, "/echo", &[("sec-webtransport-http3-draft02", "1")])
        .await?;
    let resp = cx.within("the response", s.response()).await??;
    ensure(resp.status() == 400, || {
        format!("expected 400 for :protocol webtransport-h3 with sec-webtransport-http3-draft02, got {}", resp.status())
    })
}

/// A legacy client advertising `setting` (and the RFC datagram setting) sends a
/// `webtransport` CONNECT without the draft-02 header: accepted, answered without
/// `sec-webtransport-http3-draft`, usable.
async fn legacy_client(cx: &Ctx, setting: u64, what: &str) -> CaseResult {
    let mut o = cx.h3_options();
    o.settings = vec![
        (ids::QPACK_MAX_TABLE_CAPACITY, 0),
        (ids::H3_DATAGRAM, 1),
        (setting, 1),
    ];
    let mut conn = cx.h3_conn(o).await?;
    cx.within("the server's SETTINGS", conn.server_settings())
        .await??;
    let mut f = cx.h3_connect_fields("/echo", &[]);
    for (n, v) in f.iter_mut() {
        if n == ":protocol" {
            *v = "webtransport".into();
        }
    }
    let refs: Vec<(&str, &str)> = f.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let mut s = cx.within("CONNECT", conn.request(&refs)).await??;
    let resp = cx.within("the response", s.response()).await??;
    ensure(resp.status() == 200, || {
        format!("{what}: expected 200, got {}", resp.status())
    })?;
    ensure(resp.get("sec-webtransport-http3-draft").is_none(), || {
        format!(
            "{what}: expected no sec-webtransport-http3-draft header (draft-02 only), got {:?}",
            resp.get("sec-webtransport-http3-draft")
        )
    })?;
    h3_echo(cx, &conn, s.id, what.as_bytes()).await
}

async fn draft07_client(cx: &Ctx) -> CaseResult {
    legacy_client(cx, ids::MAX_SESSIONS_D07, "draft-07 client").await
}

async fn draft13_client(cx: &Ctx) -> CaseResult {
    legacy_client(cx, ids::MAX_SESSIONS_D13, "draft-13 client").await
}

async fn gone_session_stream(cx: &Ctx) -> CaseResult {
    let conn = ready(cx).await?;
    let (mut s, _) = cx.h3_accept(&conn, "/echo", &[]).await?;
    s.send_data(&close_capsule(0, b"")).await?;
    s.finish();
    let (_, end) = super::h3_session_end(cx, &mut s).await?;
    let _ = end;
    let (mut send, mut recv) = conn.open_wt_bi(s.id).await?;
    let _ = send.write_all(b"late").await;
    let _ = send.finish();
    let (got, end) = cx
        .within(
            "the stream for the closed session to be refused",
            read_all(&mut recv, 1024),
        )
        .await?;
    let stopped = match cx.quiet(Duration::from_millis(100), send.stopped()).await {
        Some(Ok(Some(c))) => Some(c.into_inner()),
        _ => None,
    };
    ensure(
        got.is_empty()
            && (end == End::Reset(codes::WT_SESSION_GONE)
                || stopped == Some(codes::WT_SESSION_GONE)),
        || {
            format!(
                "expected the stream reset or stopped with WT_SESSION_GONE (0x170d7b68), got {} + {end} (STOP_SENDING {:?})",
                super::short(&got),
                stopped.map(code_name)
            )
        },
    )?;
    ensure(conn.conn.close_reason().is_none(), || {
        "expected no connection error for a stream of a closed session".into()
    })
}

async fn data_before_headers(cx: &Ctx) -> CaseResult {
    let conn = ready(cx).await?;
    let mut s = conn.open_bi_raw().await?;
    s.write(&data_frame(b"too early")).await?;
    expect_conn_close(cx, &conn, codes::H3_FRAME_UNEXPECTED).await
}

async fn uni_beyond_limit(cx: &Ctx) -> CaseResult {
    let (_, _, uni) = super::flow::server_fc(cx).await?;
    if uni == 0 || uni > 50 {
        return super::super::ctx::skip(format!(
            "the server's initial uni stream limit is {uni}; the case needs 1..=50"
        ));
    }
    let mut o = cx.h3_options();
    o.settings = super::flow::fc_settings(1 << 20, 100, 100);
    let mut conn = cx.h3_conn(o).await?;
    cx.within("the server's SETTINGS", conn.server_settings())
        .await??;
    let (mut s, _) = cx.h3_accept(&conn, "/echo", &[]).await?;
    let mut keep = Vec::new();
    for _ in 0..=uni {
        let mut u = conn.open_wt_uni(s.id).await?;
        let _ = u.write_all(b"x").await;
        keep.push(u);
    }
    super::expect_connect_reset(cx, &mut s, codes::WT_FLOW_CONTROL_ERROR)
        .await
        .map_err(|v| super::prefix(v, &format!("uni stream {} of {uni} allowed", uni + 1)))
}

async fn token_offer_ignored(cx: &Ctx) -> CaseResult {
    let conn = ready(cx).await?;
    let (_s, resp) = cx
        .h3_accept(&conn, "/echo", &[("wt-available-protocols", "a, b")])
        .await?;
    ensure(resp.get("wt-protocol").is_none(), || {
        format!("expected an offer of tokens (not sf-strings) to be ignored (no wt-protocol), got wt-protocol: {:?}", resp.get("wt-protocol"))
    })
}

async fn mapping_edges(cx: &Ctx) -> CaseResult {
    let (conn, s, tok) = super::h3_session_tok(cx, "/echo").await?;
    let reserved = 0x52e4a40fa8f9u64;
    ensure(wt_to_h3(30) == 0x52e4a40fa8fa, || {
        "case error: map(30)".into()
    })?;
    let mut seen = Vec::new();
    for (code, app) in [(wt_to_h3(30), 30u64), (reserved, 0)] {
        let (mut send, mut recv) = conn.open_wt_bi(s.id).await?;
        send.write_all(b"abc").await.ctx("write")?;
        let mut buf = [0u8; 3];
        cx.within("the echo before the reset", recv.read_exact(&mut buf))
            .await?
            .ctx("echo")?;
        let id: u64 = send.id().into();
        send.reset(quinn::VarInt::from_u64(code).ctx("code")?)
            .ctx("reset")?;
        seen.push((id, app, code));
    }
    for (id, app, code) in seen {
        super::expect_observed(
            cx,
            tok,
            Some(id),
            &format!("stream-closed {tok} {id} reset {app}"),
        )
        .await
        .map_err(|v| super::prefix(v, &format!("RESET_STREAM {code:#x}")))?;
    }
    let _ = CapsuleType::WT_CLOSE_SESSION;
    Ok(())
}
