//! §8.3 Reset / stop sending.

use wt_core::codes::{wt_to_h3, CapsuleType};
use wt_core::{Connector, RecvStream, SendStream, StreamError};

use super::super::ctx::{ensure, fail, skip, CaseResult, Context, Ctx, Dl, Tp};
use super::super::ours;
use super::super::peer::h3::{code_name, headers_frame, ids, read_all, End};
use super::{
    capsule, case, expect_h2_session_error, h2_stream, h2_until, short, vi, Applies, Case, H2View,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "RS-1",
            "reset",
            "reset after 5 bytes uses RESET_STREAM_AT with Reliable Size >= header",
            Applies::H3,
            rs1
        ),
        case!(
            "RS-2",
            "reset",
            "RESET_STREAM carries map(7) = 0x52e4a40fa8e2; peer app sees 7",
            Applies::H3_L.or(Applies::H2),
            rs2
        ),
        case!(
            "RS-3",
            "reset",
            "STOP_SENDING carries map(9) = 0x52e4a40fa8e4; server app sees 9",
            Applies::H3_L,
            rs3
        ),
        case!(
            "RS-4",
            "reset",
            "WT_RESET_STREAM(id, 7, 5) after 5 bytes; wrong Reliable Size is an error",
            Applies::H2_L,
            rs4
        ),
        case!(
            "RS-5",
            "reset",
            "code 0x1_0000_0000 in WT_RESET_STREAM / WT_STOP_SENDING: session error",
            Applies::H2,
            rs5
        ),
        case!(
            "RS-6",
            "reset",
            "second STOP_SENDING / second RESET / data after reset: session error",
            Applies::H2,
            rs6
        ),
        case!(
            "RS-7",
            "reset",
            "WT_STOP_SENDING(id, 9) answered by WT_RESET_STREAM(id, 9, bytes sent)",
            Applies::H2_L,
            rs7
        ),
        case!(
            "RS-8",
            "reset",
            "two-field WT_RESET_STREAM: malformed for draft-15, accepted by legacy",
            Applies::H2_L,
            rs8
        ),
    ]
}

async fn rs1(_cx: &Ctx) -> CaseResult {
    skip("quinn 0.11 has no RESET_STREAM_AT: neither side can send it, and the raw peer cannot observe a Reliable Size")
}

async fn rs2(cx: &Ctx) -> CaseResult {
    if cx.tp == Tp::H3 {
        // The server's RESET_STREAM code on the wire.
        let (conn, s) = cx.h3_session("/reset/7").await?;
        let (mut send, mut recv) = conn.open_wt_bi(s.id).await?;
        send.write_all(b"hello").await.ctx("write")?;
        let (_got, end) = cx
            .within("the server's reset", read_all(&mut recv, 1 << 20))
            .await?;
        ensure(end == End::Reset(wt_to_h3(7)), || {
            format!(
                "expected RESET_STREAM with {} (map(7)), got {end}",
                code_name(wt_to_h3(7))
            )
        })?;
    }
    // Our client unmaps it to 7.
    match cx.tp {
        Tp::H3 => client_sees_reset(cx, ours::h3_client(cx)?).await?,
        Tp::H2 => client_sees_reset(cx, ours::h2_client(cx)?).await?,
    }
    // An out-of-range code reaches our client as "no code" (embedded: raw server).
    if cx.tp == Tp::H3 && cx.target.embedded.is_some() {
        out_of_range_reset(cx).await?;
    }
    // The server's application sees the unmapped code of a client reset (and "no code",
    // recorded as 0, for a code outside the WebTransport range).
    server_sees_reset(cx).await
}

/// The raw client resets a stream after its echo arrived; the server must record the app code.
async fn server_sees_reset(cx: &Ctx) -> CaseResult {
    match cx.tp {
        Tp::H3 => {
            let (conn, s, tok) = super::h3_session_tok(cx, "/echo").await?;
            let mut seen = Vec::new();
            for (code, app) in [(wt_to_h3(7), 7u64), (0x10c, 0)] {
                let (mut send, mut recv) = conn.open_wt_bi(s.id).await?;
                send.write_all(b"abc").await.ctx("write")?;
                // The echo proves the server attributed the stream to the session before the
                // reset (a plain RESET_STREAM may overtake the stream header otherwise).
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
                .map_err(|v| super::prefix(v, &format!("RESET_STREAM {}", code_name(code))))?;
            }
            Ok(())
        }
        Tp::H2 => {
            let fm = cx.fin_mapping();
            let (_c, mut s, tok) = super::h2_session_tok(cx, "/echo").await?;
            s.send(h2_stream(fm, 0, false, b"abc"))?;
            let mut view = H2View::default();
            h2_until(cx, &mut s, &mut view, "the echo", |v| {
                v.stream(0).data.len() >= 3
            })
            .await?;
            s.send(capsule(
                CapsuleType::WT_RESET_STREAM.0,
                &[vi(0), vi(7), vi(3)].concat(),
            ))?;
            super::expect_observed(cx, tok, Some(0), &format!("stream-closed {tok} 0 reset 7"))
                .await
        }
    }
}

async fn client_sees_reset<C: Connector>(cx: &Ctx, client: C) -> CaseResult {
    use wt_core::Session;
    let sess = cx
        .within("connect", client.connect(&ours::request(cx, "/reset/7")))
        .await?
        .ctx("our client: connect")?;
    let (mut send, mut recv) = cx.within("open_bi", sess.open_bi()).await?.ctx("open_bi")?;
    send.write_all(b"hello").await.ctx("write")?;
    let r = cx.within("the reset", recv.read_to_end(1 << 20)).await?;
    match r {
        Err(wt_core::ReadToEndError::Stream(StreamError::Reset(Some(7)))) => Ok(()),
        other => fail(format!(
            "expected our client to see the stream reset with code 7, got {other:?}"
        )),
    }
}

async fn out_of_range_reset(cx: &Ctx) -> CaseResult {
    let (server, client, req) = super::our_client_vs_raw(cx, true)?;
    let task = tokio::spawn(async move {
        use wt_core::Session;
        let sess = client
            .connect(&req)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut send, mut recv) = sess.open_bi().await.map_err(|e| format!("open_bi: {e}"))?;
        send.write_all(b"x")
            .await
            .map_err(|e| format!("write: {e}"))?;
        Ok::<_, String>(recv.read_to_end(1024).await)
    });
    let conn = cx
        .within(
            "the client's connection",
            server.accept(&[
                (ids::QPACK_MAX_TABLE_CAPACITY, 0),
                (ids::ENABLE_CONNECT_PROTOCOL, 1),
                (ids::H3_DATAGRAM, 1),
                (ids::WT_ENABLED, 1),
                (ids::ENABLE_WEBTRANSPORT, 1),
            ]),
        )
        .await??;
    let (mut s, _) = cx
        .within("the client's CONNECT", conn.next_request())
        .await??;
    s.write(&headers_frame(&[(":status", "200")])).await?;
    let (mut send, mut recv) = cx
        .within("the client's stream", conn.conn.accept_bi())
        .await?
        .ctx("accept_bi")?;
    let _ = super::super::peer::h3::read_varint(&mut recv).await;
    send.reset(quinn::VarInt::from_u32(0x10c)).ctx("reset")?;
    let r = cx
        .within("the client's read", task)
        .await?
        .ctx("client task")?;
    match r {
        Ok(Err(wt_core::ReadToEndError::Stream(StreamError::Reset(None)))) => Ok(()),
        other => fail(format!(
            "a RESET_STREAM with the non-WT code 0x10c: expected our client to report \"no code\" (Reset(None)), got {other:?}"
        )),
    }
}

async fn rs3(cx: &Ctx) -> CaseResult {
    let (conn, s) = cx.h3_session("/stop/9").await?;
    let (mut send, _recv) = conn.open_wt_bi(s.id).await?;
    send.write_all(b"hello").await.ctx("write")?;
    let stopped = cx.within("STOP_SENDING", send.stopped()).await?;
    match stopped {
        Ok(Some(code)) if code.into_inner() == wt_to_h3(9) => {}
        Ok(Some(code)) => {
            return fail(format!(
                "expected STOP_SENDING with {} (map(9)), got {}",
                code_name(wt_to_h3(9)),
                code_name(code.into_inner())
            ))
        }
        other => return fail(format!("expected STOP_SENDING with map(9), got {other:?}")),
    }
    // The other way: our STOP_SENDING with map(9) reaches the server's application as 9.
    let (conn, s, tok) = super::h3_session_tok(cx, "/echo").await?;
    let (mut send, mut recv) = conn.open_wt_bi(s.id).await?;
    send.write_all(b"abc").await.ctx("write")?;
    let mut buf = [0u8; 3];
    cx.within("the echo", recv.read_exact(&mut buf))
        .await?
        .ctx("echo")?;
    let id: u64 = recv.id().into();
    recv.stop(quinn::VarInt::from_u64(wt_to_h3(9)).ctx("code")?)
        .ctx("stop")?;
    super::expect_observed(
        cx,
        tok,
        Some(id),
        &format!("stream-closed {tok} {id} stop 9"),
    )
    .await
}

async fn rs4(cx: &Ctx) -> CaseResult {
    let fm = cx.fin_mapping();
    {
        let (_c, mut s) = cx.h2_session("/reset/7").await?;
        s.send(h2_stream(fm, 0, false, b"hello"))?;
        let mut view = H2View::default();
        h2_until(cx, &mut s, &mut view, "WT_RESET_STREAM on stream 0", |v| {
            v.stream(0).reset.is_some()
        })
        .await?;
        let reset = view
            .capsules
            .iter()
            .find(|(t, _)| *t == CapsuleType::WT_RESET_STREAM.0)
            .map(|(_, w)| w.clone());
        let st = view.stream(0);
        // Legacy servers (draft-05…08, quiche) send the two-field form.
        let expect: &[u8] = match cx.dl {
            Dl::Latest => &[0x99, 0x0b, 0x4d, 0x39, 0x03, 0x00, 0x07, 0x05],
            Dl::Legacy => &[0x99, 0x0b, 0x4d, 0x39, 0x02, 0x00, 0x07],
        };
        ensure(
            reset.as_deref() == Some(expect) && st.data == b"hello",
            || {
                format!(
                    "expected \"hello\" then WT_RESET_STREAM [{}], got {} then {}{}",
                    super::hex(expect),
                    short(&st.data),
                    reset
                        .map(|w| format!("[{}]", super::hex(&w)))
                        .unwrap_or_else(|| "no reset".into()),
                    super::end_note(&view)
                )
            },
        )?;
    }
    // Receiver side: Reliable Size (3) differs from the bytes sent (5).
    let (_c, mut s) = cx.h2_session("/echo").await?;
    s.send(h2_stream(fm, 4, false, b"hello"))?;
    s.send(capsule(
        CapsuleType::WT_RESET_STREAM.0,
        &[vi(4), vi(7), vi(3)].concat(),
    ))?;
    expect_h2_session_error(cx, &mut s, "a session error for a wrong Reliable Size").await?;
    Ok(())
}

async fn rs5(cx: &Ctx) -> CaseResult {
    let fm = cx.fin_mapping();
    for (what, cap) in [
        (
            "WT_RESET_STREAM",
            capsule(
                CapsuleType::WT_RESET_STREAM.0,
                &[vi(0), vi(1 << 32), vi(2)].concat(),
            ),
        ),
        (
            "WT_STOP_SENDING",
            capsule(
                CapsuleType::WT_STOP_SENDING.0,
                &[vi(0), vi(1 << 32)].concat(),
            ),
        ),
    ] {
        let (_c, mut s) = cx.h2_session("/echo").await?;
        s.send(h2_stream(fm, 0, false, b"ab"))?;
        s.send(cap)?;
        expect_h2_session_error(
            cx,
            &mut s,
            &format!("a session error (WT_ERROR) for {what} with code 2^32"),
        )
        .await?;
    }
    Ok(())
}

async fn rs6(cx: &Ctx) -> CaseResult {
    let fm = cx.fin_mapping();
    let stop = capsule(CapsuleType::WT_STOP_SENDING.0, &[vi(0), vi(9)].concat());
    let reset = capsule(
        CapsuleType::WT_RESET_STREAM.0,
        &[vi(0), vi(7), vi(2)].concat(),
    );
    let variants: [(&str, Vec<u8>); 3] = [
        ("a second WT_STOP_SENDING", [stop.clone(), stop].concat()),
        (
            "a second WT_RESET_STREAM",
            [reset.clone(), reset.clone()].concat(),
        ),
        (
            "WT_STREAM after WT_RESET_STREAM",
            [reset, h2_stream(fm, 0, false, b"late")].concat(),
        ),
    ];
    for (what, bytes) in variants {
        let (_c, mut s) = cx.h2_session("/echo").await?;
        s.send(h2_stream(fm, 0, false, b"ab"))?;
        s.send(bytes)?;
        expect_h2_session_error(cx, &mut s, &format!("WT_STREAM_STATE_ERROR for {what}")).await?;
    }
    Ok(())
}

async fn rs7(cx: &Ctx) -> CaseResult {
    let fm = cx.fin_mapping();
    let (_c, mut s) = cx.h2_session("/echo").await?;
    s.send(h2_stream(fm, 0, false, b"hello"))?;
    let mut view = H2View::default();
    h2_until(cx, &mut s, &mut view, "the echo", |v| {
        v.stream(0).data.len() >= 5
    })
    .await?;
    s.send(capsule(
        CapsuleType::WT_STOP_SENDING.0,
        &[vi(0), vi(9)].concat(),
    ))?;
    h2_until(
        cx,
        &mut s,
        &mut view,
        "WT_RESET_STREAM in answer to WT_STOP_SENDING",
        |v| v.stream(0).reset.is_some(),
    )
    .await?;
    let st = view.stream(0);
    let rs = match cx.dl {
        Dl::Latest => Some(st.data.len() as u64),
        Dl::Legacy => None,
    };
    ensure(st.reset == Some((9, rs)), || {
        format!(
            "expected WT_RESET_STREAM(0, 9{}) (code copied, Reliable Size = bytes sent), got {:?}{}",
            rs.map(|n| format!(", {n}")).unwrap_or_default(),
            st.reset,
            super::end_note(&view)
        )
    })
}

async fn rs8(cx: &Ctx) -> CaseResult {
    let fm = cx.fin_mapping();
    let (_c, mut s) = cx.h2_session("/echo").await?;
    s.send(h2_stream(fm, 0, false, b"ab"))?;
    s.send(capsule(
        CapsuleType::WT_RESET_STREAM.0,
        &[vi(0), vi(7)].concat(),
    ))?;
    if cx.dl == Dl::Legacy {
        // Accepted: the session goes on.
        return super::h2_echo(cx, &mut s, 4, b"still here").await;
    }
    let code = expect_h2_session_error(
        cx,
        &mut s,
        "a session error for a two-field WT_RESET_STREAM",
    )
    .await?;
    ensure(code == 1, || {
        format!("expected RST_STREAM PROTOCOL_ERROR (0x1) for a malformed capsule, got {code:#x}")
    })
}
