//! §8.5 Close and drain.

use wt_core::codes::CapsuleType;
use wt_core::{Connector, Session, SessionError};

use super::super::ctx::{ensure, fail, CaseResult, Context, Ctx, Tp, Verdict};
use super::super::ours;
use super::super::peer::h3::{codes, headers_frame, ids, read_all, End};
use super::super::peer::ContentEvent;
use super::{
    capsule, case, close_capsule, cmd, expect_connect_reset, expect_h2_session_error, h2_echo,
    h2_stream, h2_until, h3_echo, h3_session_end, hex, Applies, Case, H2View,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!("CL-1", "close", "server close (300, \"bye\"): 68 43 07 00 00 01 2c 62 79 65 + FIN, streams WT_SESSION_GONE", Applies::H3_L, cl1),
        case!("CL-2", "close", "server close (300, \"bye\") in DATA, then END_STREAM", Applies::H2_L, cl2),
        case!("CL-3", "close", "clean FIN without capsule ends the session (code 0, reason \"\")", Applies::BOTH, cl3),
        case!("CL-4", "close", "close reason of 1025 bytes or invalid UTF-8 is malformed", Applies::BOTH, cl4),
        case!("CL-5", "close", "bytes after WT_CLOSE_SESSION: H3_MESSAGE_ERROR", Applies::H3, cl5),
        case!("CL-6", "close", "CONNECT stream reset by the peer ends the session, streams WT_SESSION_GONE", Applies::BOTH, cl6),
        case!("CL-7", "close", "WT_DRAIN_SESSION 80 00 78 ae 00 both ways; session keeps working", Applies::BOTH, cl7),
        case!("CL-8", "close", "client: GOAWAY makes the session draining, session continues", Applies::H3, cl8),
        case!("CL-9", "close", "client: close capsule delivered before CONNECTION_CLOSE", Applies::H3, cl9),
        case!("CL-10", "close", "capsule truncated by FIN (68 43 07 00 00 FIN) is malformed", Applies::BOTH, cl10),
    ]
}

const BYE: [u8; 10] = [0x68, 0x43, 0x07, 0x00, 0x00, 0x01, 0x2c, b'b', b'y', b'e'];

async fn cl1(cx: &Ctx) -> CaseResult {
    let (conn, mut s, tok) = super::h3_session_tok(cx, "/echo").await?;
    // An open stream that must be reset with WT_SESSION_GONE when the session ends.
    let (mut a_send, mut a_recv) = conn.open_wt_bi(s.id).await?;
    a_send.write_all(b"open").await.ctx("write")?;
    let mut buf = [0u8; 4];
    cx.within("the echo on the open stream", a_recv.read_exact(&mut buf))
        .await?
        .ctx("echo")?;
    let (mut c_send, _c_recv) = conn.open_wt_bi(s.id).await?;
    c_send
        .write_all(&cmd("close 300 bye"))
        .await
        .ctx("command")?;
    let (close, end) = h3_session_end(cx, &mut s).await?;
    ensure(close.as_deref() == Some(&BYE[..]), || {
        format!(
            "expected WT_CLOSE_SESSION [{}], got {}",
            hex(&BYE),
            close
                .map(|c| format!("[{}]", hex(&c)))
                .unwrap_or_else(|| "no close capsule".into())
        )
    })?;
    ensure(matches!(end, ContentEvent::Fin), || {
        format!("expected FIN after the close capsule, got {end}")
    })?;
    let (_, a_end) = cx
        .within(
            "the open stream to be reset",
            read_all(&mut a_recv, 1 << 20),
        )
        .await?;
    ensure(a_end == End::Reset(codes::WT_SESSION_GONE), || {
        format!("expected the session's open stream reset with WT_SESSION_GONE (0x170d7b68), got {a_end}")
    })?;
    super::expect_observed(cx, tok, None, &format!("terminate {tok} closed 300 bye")).await?;
    // The other direction: our close capsule reaches the server's application as (300, "bye").
    let (_conn2, mut s2, tok2) = super::h3_session_tok(cx, "/echo").await?;
    s2.send_data(&BYE).await?;
    s2.finish();
    let (_, end) = h3_session_end(cx, &mut s2).await?;
    ensure(
        matches!(end, ContentEvent::Fin | ContentEvent::Reset(_)),
        || format!("expected the server to end its side after our close capsule, got {end}"),
    )?;
    super::expect_observed(
        cx,
        tok2,
        None,
        &format!("terminate {tok2} peer-closed 300 bye"),
    )
    .await
}

async fn cl2(cx: &Ctx) -> CaseResult {
    let (_c, mut s, tok) = super::h2_session_tok(cx, "/echo").await?;
    s.send(h2_stream(cx.fin_mapping(), 0, false, &cmd("close 300 bye")))?;
    let mut view = H2View::default();
    h2_until(
        cx,
        &mut s,
        &mut view,
        "the close capsule and END_STREAM",
        |_| false,
    )
    .await?;
    ensure(view.close.as_deref() == Some(&BYE[..]), || {
        format!(
            "expected WT_CLOSE_SESSION [{}], got {:?}{}",
            hex(&BYE),
            view.close.as_ref().map(|c| hex(c)),
            super::end_note(&view)
        )
    })?;
    ensure(matches!(view.end, Some(ContentEvent::Fin)), || {
        format!(
            "expected END_STREAM after the close capsule{}",
            super::end_note(&view)
        )
    })?;
    super::expect_observed(cx, tok, None, &format!("terminate {tok} closed 300 bye")).await?;
    // The other direction: our close capsule + END_STREAM; the server replies END_STREAM and
    // its application sees (300, "bye").
    let (_c2, mut s2, tok2) = super::h2_session_tok(cx, "/echo").await?;
    s2.send_fin(BYE.to_vec())?;
    let mut view = H2View::default();
    h2_until(cx, &mut s2, &mut view, "END_STREAM in reply", |_| false).await?;
    ensure(matches!(view.end, Some(ContentEvent::Fin)), || {
        format!(
            "expected END_STREAM in reply to our close{}",
            super::end_note(&view)
        )
    })?;
    super::expect_observed(
        cx,
        tok2,
        None,
        &format!("terminate {tok2} peer-closed 300 bye"),
    )
    .await
}

async fn cl3(cx: &Ctx) -> CaseResult {
    match cx.tp {
        Tp::H3 => {
            let (conn, mut s, tok) = super::h3_session_tok(cx, "/echo").await?;
            let (mut a_send, mut a_recv) = conn.open_wt_bi(s.id).await?;
            a_send.write_all(b"open").await.ctx("write")?;
            let mut buf = [0u8; 4];
            cx.within("the echo", a_recv.read_exact(&mut buf))
                .await?
                .ctx("echo")?;
            s.finish();
            let (_close, end) = h3_session_end(cx, &mut s).await?;
            ensure(
                matches!(end, ContentEvent::Fin | ContentEvent::Reset(_)),
                || format!("expected the server to end its side of the CONNECT stream, got {end}"),
            )?;
            let (_, a_end) = cx
                .within(
                    "the open stream to be reset",
                    read_all(&mut a_recv, 1 << 20),
                )
                .await?;
            ensure(a_end == End::Reset(codes::WT_SESSION_GONE), || {
                format!("expected the open stream reset with WT_SESSION_GONE, got {a_end}")
            })?;
            super::expect_observed(cx, tok, None, &format!("terminate {tok} peer-closed 0 "))
                .await?;
            if cx.target.embedded.is_some() {
                client_sees_clean_fin(cx).await?;
            }
            Ok(())
        }
        Tp::H2 => {
            let (_c, mut s, tok) = super::h2_session_tok(cx, "/echo").await?;
            s.send_fin(Vec::new())?;
            let mut view = H2View::default();
            h2_until(cx, &mut s, &mut view, "the server's END_STREAM", |_| false).await?;
            ensure(matches!(view.end, Some(ContentEvent::Fin)), || {
                format!("expected END_STREAM in reply{}", super::end_note(&view))
            })?;
            super::expect_observed(cx, tok, None, &format!("terminate {tok} peer-closed 0 ")).await
        }
    }
}

/// Our client sees a clean FIN from a raw server as (0, "").
async fn client_sees_clean_fin(cx: &Ctx) -> CaseResult {
    let (server, client, req) = super::our_client_vs_raw(cx, true)?;
    let task = tokio::spawn(async move {
        let sess = client
            .connect(&req)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        Ok::<_, String>(sess.closed().await)
    });
    let conn = cx
        .within("the client's connection", server.accept(&raw_settings()))
        .await??;
    let (mut s, _) = cx
        .within("the client's CONNECT", conn.next_request())
        .await??;
    s.write(&headers_frame(&[(":status", "200")])).await?;
    s.finish();
    let r = cx
        .within("the client to see the session end", task)
        .await?
        .ctx("client task")?;
    match r {
        Ok(SessionError::ClosedByPeer { code: 0, reason }) if reason.is_empty() => Ok(()),
        other => fail(format!(
            "a clean FIN: expected our client to report ClosedByPeer(0, \"\"), got {other:?}"
        )),
    }
}

fn raw_settings() -> Vec<(u64, u64)> {
    vec![
        (ids::QPACK_MAX_TABLE_CAPACITY, 0),
        (ids::ENABLE_CONNECT_PROTOCOL, 1),
        (ids::H3_DATAGRAM, 1),
        (ids::WT_ENABLED, 1),
        (ids::ENABLE_WEBTRANSPORT, 1),
    ]
}

async fn cl4(cx: &Ctx) -> CaseResult {
    let long = vec![b'r'; 1025];
    let bad = [0xff, 0xfe, b'x'];
    for (what, reason) in [
        ("a 1025-byte reason", &long[..]),
        ("an invalid UTF-8 reason", &bad[..]),
    ] {
        let cap = close_capsule(300, reason);
        match cx.tp {
            Tp::H3 => {
                let (_conn, mut s) = cx.h3_session("/echo").await?;
                s.send_data(&cap).await?;
                s.finish();
                expect_connect_reset(cx, &mut s, codes::H3_MESSAGE_ERROR)
                    .await
                    .map_err(|v| prefix(v, what))?;
            }
            Tp::H2 => {
                let (_c, mut s) = cx.h2_session("/echo").await?;
                s.send_fin(cap)?;
                expect_h2_session_error(
                    cx,
                    &mut s,
                    &format!("a session error (WT_ERROR) for {what}"),
                )
                .await?;
            }
        }
    }
    // Our client refuses to send an over-long reason.
    match cx.tp {
        Tp::H3 => long_reason(cx, ours::h3_client(cx)?).await,
        Tp::H2 => long_reason(cx, ours::h2_client(cx)?).await,
    }
}

fn prefix(v: Verdict, what: &str) -> Verdict {
    match v {
        Verdict::Fail(m) => Verdict::Fail(format!("{what}: {m}")),
        o => o,
    }
}

async fn long_reason<C: Connector>(cx: &Ctx, client: C) -> CaseResult {
    let sess = cx
        .within("connect", client.connect(&ours::request(cx, "/echo")))
        .await?
        .ctx("connect")?;
    let r = sess.close(1, &"x".repeat(1025));
    ensure(matches!(r, Err(SessionError::ReasonTooLong(1025))), || {
        format!("expected close with a 1025-byte reason to fail with ReasonTooLong, got {r:?}")
    })?;
    let _ = sess.close(0, "");
    Ok(())
}

async fn cl5(cx: &Ctx) -> CaseResult {
    let (_conn, mut s) = cx.h3_session("/echo").await?;
    let mut bytes = close_capsule(300, b"bye");
    bytes.extend(capsule(CapsuleType::WT_DRAIN_SESSION.0, &[]));
    s.send_data(&bytes).await?;
    expect_connect_reset(cx, &mut s, codes::H3_MESSAGE_ERROR).await
}

async fn cl6(cx: &Ctx) -> CaseResult {
    match cx.tp {
        Tp::H3 => {
            let (conn, mut s, tok) = super::h3_session_tok(cx, "/echo").await?;
            let (mut a_send, mut a_recv) = conn.open_wt_bi(s.id).await?;
            a_send.write_all(b"open").await.ctx("write")?;
            let mut buf = [0u8; 4];
            cx.within("the echo", a_recv.read_exact(&mut buf))
                .await?
                .ctx("echo")?;
            let _ = s.send.reset(quinn::VarInt::from_u32(0x10c));
            let _ = s.recv.stop(quinn::VarInt::from_u32(0x10c));
            let (_, a_end) = cx
                .within(
                    "the open stream to be reset",
                    read_all(&mut a_recv, 1 << 20),
                )
                .await?;
            ensure(a_end == End::Reset(codes::WT_SESSION_GONE), || {
                format!("expected the session's stream reset with WT_SESSION_GONE, got {a_end}")
            })?;
            reset_observed(cx, tok).await?;
            // The connection is unaffected.
            let (s2, _) = cx.h3_accept(&conn, "/echo", &[]).await?;
            h3_echo(cx, &conn, s2.id, b"new session").await
        }
        Tp::H2 => {
            let (mut c, mut s, tok) = super::h2_session_tok(cx, "/echo").await?;
            s.send(h2_stream(cx.fin_mapping(), 0, false, b"open"))?;
            s.reset(0x8);
            reset_observed(cx, tok).await?;
            let mut s2 = cx.h2_open(&mut c, "/echo", None, true).await?;
            ensure(s2.status == 200, || {
                format!(
                    "expected a new session on the same connection, got {}",
                    s2.status
                )
            })?;
            h2_echo(cx, &mut s2, 0, b"new session").await
        }
    }
}

/// A reset CONNECT stream ends the session on the server with no application close code:
/// the server records an error (not a close by either application, not a shutdown).
async fn reset_observed(cx: &Ctx, tok: u64) -> CaseResult {
    let end = super::observed_end(cx, tok).await?;
    let how = end.split(' ').nth(2).unwrap_or("");
    ensure(how == "error", || {
        format!("expected the server to record the reset as a session error (terminate {tok} error ...), got {end:?}")
    })
}

const DRAIN: [u8; 5] = [0x80, 0x00, 0x78, 0xae, 0x00];

async fn cl7(cx: &Ctx) -> CaseResult {
    match cx.tp {
        Tp::H3 => {
            let (conn, mut s) = cx.h3_session("/drain").await?;
            match cx.within("WT_DRAIN_SESSION", s.next_capsule()).await? {
                ContentEvent::Capsule { wire, .. } if wire[..] == DRAIN => {}
                other => {
                    return fail(format!(
                        "expected WT_DRAIN_SESSION [80 00 78 ae 00], got {other}"
                    ))
                }
            }
            h3_echo(cx, &conn, s.id, b"after drain").await?;
            s.send_data(&DRAIN).await?;
            h3_echo(cx, &conn, s.id, b"after our drain").await
        }
        Tp::H2 => {
            let (_c, mut s) = cx.h2_session("/drain").await?;
            let mut view = H2View::default();
            h2_until(cx, &mut s, &mut view, "WT_DRAIN_SESSION", |v| {
                v.drain.is_some()
            })
            .await?;
            ensure(view.drain.as_deref() == Some(&DRAIN[..]), || {
                format!(
                    "expected WT_DRAIN_SESSION [80 00 78 ae 00], got {:?}{}",
                    view.drain.as_ref().map(|d| hex(d)),
                    super::end_note(&view)
                )
            })?;
            h2_echo(cx, &mut s, 0, b"after drain").await?;
            s.send(DRAIN.to_vec())?;
            h2_echo(cx, &mut s, 4, b"after our drain").await
        }
    }
}

async fn cl8(cx: &Ctx) -> CaseResult {
    cx.embedded()?;
    let (server, client, req) = super::our_client_vs_raw(cx, true)?;
    let sess_task =
        tokio::spawn(async move { client.connect(&req).await.map_err(|e| e.to_string()) });
    let mut conn = cx
        .within("the client's connection", server.accept(&raw_settings()))
        .await??;
    let (mut s, _) = cx
        .within("the client's CONNECT", conn.next_request())
        .await??;
    s.write(&headers_frame(&[(":status", "200")])).await?;
    let sess = cx
        .within("the client's session", sess_task)
        .await?
        .ctx("client task")?
        .map_err(Verdict::Fail)?;
    conn.goaway(s.id + 4).await?;
    cx.within(
        "the session to report draining after GOAWAY",
        sess.draining(),
    )
    .await?;
    ensure(
        cx.quiet(std::time::Duration::from_millis(100), sess.closed())
            .await
            .is_none(),
        || "expected the session to continue after GOAWAY, it ended".into(),
    )
}

async fn cl9(cx: &Ctx) -> CaseResult {
    cx.embedded()?;
    let (server, client, req) = super::our_client_vs_raw(cx, true)?;
    let task = tokio::spawn(async move {
        let sess = client.connect(&req).await.map_err(|e| e.to_string())?;
        sess.close(300, "bye").map_err(|e| e.to_string())?;
        drop(sess);
        drop(client);
        Ok::<(), String>(())
    });
    let conn = cx
        .within("the client's connection", server.accept(&raw_settings()))
        .await??;
    let (mut s, _) = cx
        .within("the client's CONNECT", conn.next_request())
        .await??;
    s.write(&headers_frame(&[(":status", "200")])).await?;
    cx.within("the client", task)
        .await?
        .ctx("client task")?
        .map_err(Verdict::Fail)?;
    let (close, end) = h3_session_end(cx, &mut s).await?;
    ensure(close.as_deref() == Some(&BYE[..]), || {
        format!("expected the client's WT_CLOSE_SESSION [{}] before the connection closed, got {:?} then {end}", hex(&BYE), close.map(|c| hex(&c)))
    })
}

async fn cl10(cx: &Ctx) -> CaseResult {
    let truncated = [0x68, 0x43, 0x07, 0x00, 0x00];
    match cx.tp {
        Tp::H3 => {
            let (_conn, mut s) = cx.h3_session("/echo").await?;
            s.send_data(&truncated).await?;
            s.finish();
            expect_connect_reset(cx, &mut s, codes::H3_MESSAGE_ERROR).await
        }
        Tp::H2 => {
            let (_c, mut s) = cx.h2_session("/echo").await?;
            s.send_fin(truncated.to_vec())?;
            let code = expect_h2_session_error(
                cx,
                &mut s,
                "RST_STREAM PROTOCOL_ERROR for a truncated capsule",
            )
            .await?;
            ensure(code == 1, || {
                format!("expected RST_STREAM PROTOCOL_ERROR (0x1), got {code:#x}")
            })
        }
    }
}
