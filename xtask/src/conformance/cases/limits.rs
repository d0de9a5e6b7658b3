//! §8.7 Session limits.

use std::time::Duration;

use wt_core::codes::CapsuleType;

use super::super::ctx::{ensure, fail, skip, CaseResult, Context, Ctx, Dl};
use super::super::peer::h3::{codes, ids, read_all, End};
use super::super::peer::PeerError;
use super::{case, expect_connect_reset, h3_echo, pattern, vi, Applies, Case};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "MS-1",
            "limits",
            "second CONNECT without flow control: H3_REQUEST_REJECTED or 429",
            Applies::H3,
            ms_surplus
        ),
        case!(
            "MS-2",
            "limits",
            "CONNECTs beyond max sessions rejected, connection stays up",
            Applies::H3_LEGACY,
            ms_surplus
        ),
        case!(
            "MS-3",
            "limits",
            "CONNECT beyond SETTINGS_MAX_CONCURRENT_STREAMS: REFUSED_STREAM, others unaffected",
            Applies::H2,
            ms3
        ),
        case!(
            "MS-4",
            "limits",
            "two sessions on one connection: WT_MAX_DATA and stream limits per session",
            Applies::H3,
            ms4
        ),
    ]
}

/// Opens sessions up to the server's limit, then one more: the surplus one must be refused
/// with H3_REQUEST_REJECTED or 429 while the others keep working.
async fn ms_surplus(cx: &Ctx) -> CaseResult {
    let mut conn = cx.h3_conn(cx.h3_options()).await?;
    let s = cx
        .within("the server's SETTINGS", conn.server_settings())
        .await??;
    // Without flow control (our SETTINGS enable none) at most one session is allowed; a
    // legacy max-sessions setting may only lower that.
    let limit = match cx.dl {
        Dl::Latest => 1,
        Dl::Legacy => s.get(ids::MAX_SESSIONS_D07).map_or(1, |n| n.clamp(1, 1)),
    };
    let mut sessions = Vec::new();
    for _ in 0..limit {
        sessions.push(cx.h3_accept(&conn, "/echo", &[]).await?.0);
    }
    let mut extra = cx.h3_request(&conn, "/echo", &[]).await?;
    match cx
        .within("the answer to the surplus CONNECT", extra.response())
        .await?
    {
        Ok(f) if f.status() == 429 => {}
        Ok(f) => {
            return fail(format!(
                "expected the surplus CONNECT refused (H3_REQUEST_REJECTED or 429), got :status {}",
                f.status()
            ))
        }
        Err(PeerError::Reset(c)) if c == codes::H3_REQUEST_REJECTED => {}
        Err(e) => {
            return fail(format!(
                "expected the surplus CONNECT reset with H3_REQUEST_REJECTED (0x10b), got {e}"
            ))
        }
    }
    ensure(conn.conn.close_reason().is_none(), || {
        "expected the connection to stay up".into()
    })?;
    let first = &sessions[0];
    h3_echo(cx, &conn, first.id, b"first session unaffected").await
}

async fn ms3(cx: &Ctx) -> CaseResult {
    let st = cx.h2_settings().await?;
    let Some(n) = st.get(0x3) else {
        return skip("the server sends no SETTINGS_MAX_CONCURRENT_STREAMS (no limit to exceed)");
    };
    if n == 0 || n > 200 {
        return skip(format!(
            "the server's SETTINGS_MAX_CONCURRENT_STREAMS is {n}; the case opens at most 201 CONNECTs"
        ));
    }
    let mut c = super::h2_raw(cx, &super::flow::h2_client_wt_settings(1 << 20)).await?;
    // One at a time, so the server's accept queue is never the limit that answers.
    let mut ids = Vec::new();
    for i in 0..n {
        let id = super::h2_raw_session(cx, &mut c, "/echo", &[], &[])
            .await
            .map_err(|v| super::prefix(v, &format!("CONNECT {} of {n} allowed", i + 1)))?;
        ids.push(id);
    }
    let fields = super::h2_raw_fields(cx, "/echo", &[]);
    let (last, answer) = super::h2_raw_request(cx, &mut c, &fields).await?;
    ensure(matches!(answer, Err(0x7) | Err(0x1)), || {
        format!("expected CONNECT {} (stream {last}) reset with REFUSED_STREAM (0x7; RFC 9113 also allows PROTOCOL_ERROR), got {}", n + 1, match answer {
            Ok(s) => format!(":status {s}"),
            Err(c) => format!("RST_STREAM {c:#x}"),
        })
    })?;
    // The first session is unaffected.
    let fm = super::super::ctx::Ctx::fin_mapping(cx);
    c.data(ids[0], &super::h2_stream(fm, 0, true, b"still here"), false)
        .await
        .ctx("sending WT_STREAM")?;
    let mut view = super::H2View::default();
    super::h2_raw_until(
        cx,
        &mut c,
        ids[0],
        &mut view,
        "the first session's echo",
        |v| v.stream(0).fin,
    )
    .await?;
    ensure(view.stream(0).data == b"still here", || {
        format!(
            "expected the first session to keep working, got {}{}",
            super::short(&view.stream(0).data),
            super::end_note(&view)
        )
    })
}

async fn ms4(cx: &Ctx) -> CaseResult {
    let (_, bidi, _) = super::flow::server_fc(cx).await?;
    if bidi == 0 || bidi > 50 {
        return skip(format!(
            "the server's initial bidi stream limit is {bidi}; the case needs 1..=50"
        ));
    }
    // Our WT_MAX_DATA of 400 (the sizes stay below the server's own limit) applies to each session separately.
    let mut opts = cx.h3_options();
    opts.settings = super::flow::fc_settings(400, 100, 100);
    let mut conn = cx.h3_conn(opts).await?;
    cx.within("the server's SETTINGS", conn.server_settings())
        .await??;
    let (mut a, _) = cx.h3_accept(&conn, "/echo", &[]).await?;
    let (mut b, _) = cx
        .h3_accept(&conn, "/echo", &[])
        .await
        .map_err(|v| super::prefix(v, "a second session with flow control on"))?;
    let (mut a_send, mut a_recv) = conn.open_wt_bi(a.id).await?;
    a_send.write_all(&pattern(600)).await.ctx("write")?;
    let _ = a_send.finish();
    let got = read_upto(
        cx,
        &mut a_recv,
        400,
        "session A: the first 400 echoed bytes",
    )
    .await?;
    quiet_stream(cx, &mut a_recv, "session A, before more credit").await?;
    // Session B has its own 400 bytes, untouched by A.
    let (mut b_send, mut b_recv) = conn.open_wt_bi(b.id).await?;
    b_send.write_all(&pattern(320)).await.ctx("write")?;
    let _ = b_send.finish();
    let (echo, end) = cx
        .within("session B: the 320-byte echo", read_all(&mut b_recv, 4096))
        .await?;
    ensure(echo == pattern(320) && end == End::Fin, || {
        format!("expected session B to echo 320 bytes + FIN with its own credit while session A is blocked, got {} bytes + {end}", echo.len())
    })?;
    let (mut b2_send, mut b2_recv) = conn.open_wt_bi(b.id).await?;
    b2_send.write_all(&pattern(120)).await.ctx("write")?;
    let _ = b2_send.finish();
    read_upto(
        cx,
        &mut b2_recv,
        80,
        "session B: the last 80 bytes of its credit",
    )
    .await?;
    quiet_stream(cx, &mut b2_recv, "session B at 400 bytes").await?;
    // Credit for A unblocks A only.
    a.send_capsule(CapsuleType::WT_MAX_DATA.0, &vi(800)).await?;
    let (rest, end) = cx
        .within(
            "session A: the rest of the echo",
            read_all(&mut a_recv, 4096),
        )
        .await?;
    ensure(got.len() + rest.len() == 600 && end == End::Fin, || {
        format!("expected session A to finish its 600-byte echo after WT_MAX_DATA(800), got {} bytes + {end}", got.len() + rest.len())
    })?;
    quiet_stream(cx, &mut b2_recv, "session B after credit for session A").await?;
    b.send_capsule(CapsuleType::WT_MAX_DATA.0, &vi(800)).await?;
    let (rest, end) = cx
        .within(
            "session B: the rest of the echo",
            read_all(&mut b2_recv, 4096),
        )
        .await?;
    ensure(rest.len() == 40 && end == End::Fin, || {
        format!("expected session B's last 40 bytes + FIN after its own WT_MAX_DATA(800), got {} bytes + {end}", rest.len())
    })?;
    // The server's stream limit also applies per session: `bidi` streams in each session are
    // fine, one more in session A closes A only.
    let (conn2, mut c) = fresh_pair(cx).await?;
    let (mut d, _) = cx.h3_accept(&conn2, "/echo", &[]).await?;
    let mut keep = Vec::new();
    for sid in [c.id, d.id] {
        for _ in 0..bidi {
            let (mut send, recv) = conn2.open_wt_bi(sid).await?;
            send.write_all(b"x").await.ctx("write")?;
            keep.push((sid, send, recv));
        }
    }
    for (sid, _, recv) in keep.iter_mut() {
        let mut one = [0u8; 1];
        cx.within("the echo on every stream of both sessions", recv.read_exact(&mut one))
            .await?
            .map_err(|e| {
                super::super::ctx::Verdict::Fail(format!(
                    "expected {bidi} streams in each of two sessions to be accepted, a stream of session {sid} got {e}"
                ))
            })?;
    }
    let (mut extra, _r) = conn2.open_wt_bi(d.id).await?;
    let _ = extra.write_all(b"x").await;
    expect_connect_reset(cx, &mut d, codes::WT_FLOW_CONTROL_ERROR)
        .await
        .map_err(|v| super::prefix(v, &format!("stream {} of session D", bidi + 1)))?;
    // Session C is unaffected: its open streams still echo.
    let (_, mut send, mut recv) = keep.remove(0);
    send.write_all(b"yz").await.ctx("write")?;
    let _ = send.finish();
    let (rest, end) = cx
        .within(
            "session C's stream after session D failed",
            read_all(&mut recv, 64),
        )
        .await?;
    ensure(rest == b"yz" && end == End::Fin, || {
        format!(
            "expected session C to keep working after session D's violation, got {} + {end}",
            super::short(&rest)
        )
    })?;
    let _ = &mut c;
    let _ = &mut b;
    Ok(())
}

/// A raw connection with flow control on (generous credit) and one session.
async fn fresh_pair(
    cx: &Ctx,
) -> Result<(super::H3Conn, super::H3Stream), super::super::ctx::Verdict> {
    let mut opts = cx.h3_options();
    opts.settings = super::flow::fc_settings(1 << 20, 100, 100);
    let mut conn = cx.h3_conn(opts).await?;
    cx.within("the server's SETTINGS", conn.server_settings())
        .await??;
    let (s, _) = cx.h3_accept(&conn, "/echo", &[]).await?;
    Ok((conn, s))
}

/// Reads exactly `n` bytes (more is a failure).
async fn read_upto(
    cx: &Ctx,
    recv: &mut quinn::RecvStream,
    n: usize,
    what: &str,
) -> Result<Vec<u8>, super::super::ctx::Verdict> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < n {
        match cx.within(what, recv.read(&mut buf)).await? {
            Ok(Some(k)) => got.extend_from_slice(&buf[..k]),
            other => {
                return fail(format!(
                    "{what}: expected {n} bytes, got {} then {other:?}",
                    got.len()
                ))
            }
        }
    }
    ensure(got.len() == n, || {
        format!(
            "{what}: expected the server to stop at {n} bytes, got {}",
            got.len()
        )
    })?;
    Ok(got)
}

/// Nothing more arrives on `recv` for a moment.
async fn quiet_stream(cx: &Ctx, recv: &mut quinn::RecvStream, what: &str) -> CaseResult {
    let mut buf = [0u8; 4096];
    match cx
        .quiet(Duration::from_millis(200), recv.read(&mut buf))
        .await
    {
        Some(Ok(Some(k))) => fail(format!(
            "{what}: expected the server to wait for credit, it sent {k} more bytes"
        )),
        Some(Ok(None)) => fail(format!(
            "{what}: expected the server to wait for credit, it sent FIN"
        )),
        _ => Ok(()),
    }
}
