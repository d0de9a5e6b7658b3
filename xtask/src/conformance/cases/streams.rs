//! §8.2 Streams and data.

use std::time::Duration;

use bytes::Bytes;
use wt_core::{Connector, RecvStream, SendStream, Session};

use super::super::ctx::{ensure, fail, CaseResult, Context, Ctx, Tp, Verdict};
use super::super::ours;
use super::super::peer::h3::{codes, headers_frame, read_all, End};
use super::super::peer::ContentEvent;
use super::{
    case, expect_conn_close, h2_echo, h2_stream, h2_until, h3_echo, pattern, short, vi, Applies,
    Case, H2View,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "ST-1",
            "streams",
            "bidi echo: 40 41 sid + data + FIN echoed raw on the same stream",
            Applies::H3_L,
            st1
        ),
        case!(
            "ST-2",
            "streams",
            "WT_STREAM(0, \"hello\", FIN) echoed as WT_STREAM(0, \"hello\", FIN)",
            Applies::H2_L,
            st2
        ),
        case!(
            "ST-3",
            "streams",
            "server-initiated bidi stream starts with 40 41 sid / is WT stream 1",
            Applies::BOTH.or(Applies::H2_L),
            st3
        ),
        case!(
            "ST-4",
            "streams",
            "uni streams both ways: 40 54 sid + data + FIN",
            Applies::H3_L,
            st4
        ),
        case!(
            "ST-5",
            "streams",
            "uni WT streams 2 (C) and 3 (S); writing on the peer's uni id is an error",
            Applies::H2_L,
            st5
        ),
        case!(
            "ST-6",
            "streams",
            "FIN with zero bytes is echoed as an empty stream",
            Applies::BOTH.or(Applies::H2_L),
            st6
        ),
        case!(
            "ST-7",
            "streams",
            "10 MiB each way on one stream and 100 parallel streams, byte-exact",
            Applies::BOTH,
            st7
        ),
        case!(
            "ST-8",
            "streams",
            "stream header with session ID 1/2/3: H3_ID_ERROR",
            Applies::H3,
            st8
        ),
        case!(
            "ST-9",
            "streams",
            "0x41 after HEADERS on a request stream: H3_FRAME_ERROR",
            Applies::H3,
            st9
        ),
        case!(
            "ST-10",
            "streams",
            "first WT_STREAM on id 8 implicitly opens 0 and 4",
            Applies::H2_L,
            st10
        ),
        case!(
            "ST-11",
            "streams",
            "empty WT_STREAM that neither opens nor closes: no crash",
            Applies::H2,
            st11
        ),
    ]
}

async fn st1(cx: &Ctx) -> CaseResult {
    let (conn, s) = cx.h3_session("/echo").await?;
    h3_echo(cx, &conn, s.id, b"hello").await
}

async fn st2(cx: &Ctx) -> CaseResult {
    let (_c, mut s) = cx.h2_session("/echo").await?;
    let fm = cx.fin_mapping();
    s.send(h2_stream(fm, 0, true, b"hello"))?;
    let mut view = H2View::default();
    // Stop at the first data (or a FIN, or a reset) so a swapped FIN codepoint shows quickly.
    h2_until(cx, &mut s, &mut view, "the echo of WT stream 0", |v| {
        let st = v.stream(0);
        st.data.len() >= 5 || st.fin || st.reset.is_some()
    })
    .await?;
    if !view.stream(0).fin && view.end.is_none() {
        // The data came without FIN; give the FIN a moment in its own capsule.
        let _ = cx
            .quiet(
                Duration::from_millis(500),
                h2_until(cx, &mut s, &mut view, "FIN", |v| v.stream(0).fin),
            )
            .await;
    }
    let st = view.stream(0);
    let fin_type = fm.stream_type(true).0;
    let wires = |st: &super::H2StreamView| {
        st.wires
            .iter()
            .map(|w| super::hex(w))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    ensure(st.data == b"hello" && st.fin, || {
        format!(
            "expected WT_STREAM(0, \"hello\") with FIN (type {fin_type:#x}), got {} fin {} in capsules [{}]{}",
            short(&st.data),
            st.fin,
            wires(&st),
            super::end_note(&view)
        )
    })?;
    // Data and FIN in separate capsules: the echo of data without FIN must not carry FIN
    // (a peer with the swapped codepoints would both miss our FIN and send a FIN here).
    s.send(h2_stream(fm, 4, false, b"abc"))?;
    h2_until(cx, &mut s, &mut view, "the echo of WT stream 4", |v| {
        v.stream(4).data.len() >= 3 || v.stream(4).fin
    })
    .await?;
    let st = view.stream(4);
    ensure(st.data == b"abc" && !st.fin, || {
        format!(
            "expected WT_STREAM(4, \"abc\") without FIN (type {:#x}), got {} fin {} in capsules [{}]{}",
            fm.stream_type(false).0,
            short(&st.data),
            st.fin,
            wires(&st),
            super::end_note(&view)
        )
    })?;
    s.send(h2_stream(fm, 4, true, b""))?;
    h2_until(cx, &mut s, &mut view, "the FIN of WT stream 4", |v| {
        v.stream(4).fin
    })
    .await?;
    ensure(view.stream(4).fin, || {
        format!(
            "expected the FIN of WT stream 4 echoed{}",
            super::end_note(&view)
        )
    })
}

async fn st3(cx: &Ctx) -> CaseResult {
    match cx.tp {
        Tp::H3 => {
            let (mut conn, s) = cx.h3_session("/open-bidi/5").await?;
            let mut inc = cx
                .within("a server-initiated bidi stream", conn.accept_wt_bi())
                .await??;
            ensure(inc.session_id == s.id, || {
                format!(
                    "expected 40 41 {:02x} on the server's stream, got session ID {}",
                    s.id, inc.session_id
                )
            })?;
            let id: u64 = inc.recv.id().into();
            ensure(id & 3 == 1, || {
                format!("expected a server-initiated bidi QUIC stream, got id {id}")
            })?;
            let (got, end) = cx
                .within("the pushed bytes", read_all(&mut inc.recv, 1024))
                .await?;
            ensure(got == pattern(5) && end == End::Fin, || {
                format!("expected 00 01 02 03 04 + FIN, got {} + {end}", short(&got))
            })
        }
        Tp::H2 => {
            let (_c, mut s) = cx.h2_session("/open-bidi/5").await?;
            let mut view = H2View::default();
            h2_until(cx, &mut s, &mut view, "WT stream 1 from the server", |v| {
                v.stream(1).fin || v.streams.keys().any(|k| *k != 1)
            })
            .await?;
            ensure(view.streams.keys().all(|k| *k == 1), || {
                format!(
                    "expected the server's first bidi stream to be WT stream 1, got ids {:?}",
                    view.streams.keys().collect::<Vec<_>>()
                )
            })?;
            let st = view.stream(1);
            ensure(st.data == pattern(5) && st.fin, || {
                format!(
                    "expected 00 01 02 03 04 + FIN on WT stream 1, got {} fin {}{}",
                    short(&st.data),
                    st.fin,
                    super::end_note(&view)
                )
            })
        }
    }
}

async fn st4(cx: &Ctx) -> CaseResult {
    let (mut conn, s) = cx.h3_session("/echo").await?;
    let mut send = conn.open_wt_uni(s.id).await?;
    send.write_all(b"uni-data")
        .await
        .ctx("writing the uni stream")?;
    let _ = send.finish();
    let mut inc = cx
        .within("the echo on a server uni stream", conn.accept_wt_uni())
        .await??;
    ensure(inc.session_id == s.id, || {
        format!(
            "expected 40 54 {:02x} on the server's uni stream, got session ID {}",
            s.id, inc.session_id
        )
    })?;
    let id: u64 = inc.recv.id().into();
    ensure(id & 3 == 3, || {
        format!("expected a server-initiated uni QUIC stream, got id {id}")
    })?;
    let (got, end) = cx
        .within("the uni echo", read_all(&mut inc.recv, 1024))
        .await?;
    ensure(got == b"uni-data" && end == End::Fin, || {
        format!("expected \"uni-data\" + FIN, got {} + {end}", short(&got))
    })
}

async fn st5(cx: &Ctx) -> CaseResult {
    let (_c, mut s) = cx.h2_session("/echo").await?;
    let fm = cx.fin_mapping();
    s.send(h2_stream(fm, 2, true, b"uni-data"))?;
    let mut view = H2View::default();
    h2_until(cx, &mut s, &mut view, "the echo on WT stream 3", |v| {
        v.stream(3).fin
    })
    .await?;
    let st = view.stream(3);
    ensure(st.data == b"uni-data" && st.fin, || {
        format!(
            "expected \"uni-data\" + FIN on WT stream 3, got {} fin {} (streams {:?}){}",
            short(&st.data),
            st.fin,
            view.streams.keys().collect::<Vec<_>>(),
            super::end_note(&view)
        )
    })?;
    // Writing on the server's uni stream 3 is a WT_STREAM_STATE_ERROR.
    s.send(h2_stream(fm, 3, false, b"wrong way"))?;
    let code = super::expect_h2_session_error(
        cx,
        &mut s,
        "a session error for data on the server's uni stream",
    )
    .await?;
    let _ = code;
    Ok(())
}

async fn st6(cx: &Ctx) -> CaseResult {
    match cx.tp {
        Tp::H3 => {
            let (conn, s) = cx.h3_session("/echo").await?;
            h3_echo(cx, &conn, s.id, b"").await
        }
        Tp::H2 => {
            let (_c, mut s) = cx.h2_session("/echo").await?;
            h2_echo(cx, &mut s, 0, b"").await
        }
    }
}

async fn st7(cx: &Ctx) -> CaseResult {
    let big = if cfg!(debug_assertions) {
        1 << 20
    } else {
        10 << 20
    };
    match cx.tp {
        Tp::H3 => large(cx, ours::h3_client(cx)?, big).await,
        Tp::H2 => large(cx, ours::h2_client(cx)?, big).await,
    }
}

async fn large<C: Connector>(cx: &Ctx, client: C, big: usize) -> CaseResult {
    let sess = cx
        .within("connect", client.connect(&ours::request(cx, "/echo")))
        .await?
        .ctx("connect")?;
    let data = Bytes::from(pattern(big));
    let (mut send, mut recv) = cx.within("open_bi", sess.open_bi()).await?.ctx("open_bi")?;
    let writer = {
        let data = data.clone();
        tokio::spawn(async move {
            send.write_chunk(data).await?;
            send.finish()
        })
    };
    let got = cx
        .within("the 10 MiB echo", recv.read_to_end(big + 1))
        .await?
        .ctx("reading the echo")?;
    cx.within("the writer", writer)
        .await?
        .ctx("writer task")?
        .ctx("writing")?;
    ensure(got == data, || {
        let at = got.iter().zip(data.iter()).position(|(a, b)| a != b);
        format!(
            "expected a byte-exact echo of {big} bytes, got {} bytes (first difference at {at:?})",
            got.len()
        )
    })?;
    // 100 parallel streams of 10 KiB.
    let mut tasks = Vec::new();
    for i in 0..100u32 {
        let sess = sess.clone();
        tasks.push(tokio::spawn(async move {
            let payload: Vec<u8> = (0..10_240u32).map(|j| (i + j) as u8).collect();
            let (mut send, mut recv) = sess.open_bi().await.map_err(|e| format!("open_bi: {e}"))?;
            let w = {
                let p = payload.clone();
                tokio::spawn(async move {
                    send.write_all(&p).await?;
                    send.finish()
                })
            };
            let got = recv
                .read_to_end(20_000)
                .await
                .map_err(|e| format!("read: {e}"))?;
            w.await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("write: {e}"))?;
            if got != payload {
                return Err(format!("stream {i}: echo differs ({} bytes)", got.len()));
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        cx.within("100 parallel echoes", t)
            .await?
            .ctx("task")?
            .map_err(Verdict::Fail)?;
    }
    let _ = sess.close(0, "");
    Ok(())
}

async fn st8(cx: &Ctx) -> CaseResult {
    for (bidi, sid) in [(true, 1u64), (false, 2), (true, 3)] {
        let (conn, _s) = cx.h3_session("/echo").await?;
        // The server may close the connection as soon as it reads the header: a failing
        // write is fine, the close code is what counts.
        if bidi {
            if let Ok((mut send, _recv)) = conn.open_wt_bi(sid).await {
                let _ = send.write_all(b"x").await;
            }
        } else if let Ok(mut send) = conn.open_wt_uni(sid).await {
            let _ = send.write_all(b"x").await;
        }
        expect_conn_close(cx, &conn, codes::H3_ID_ERROR)
            .await
            .map_err(|v| match v {
                Verdict::Fail(m) => Verdict::Fail(format!(
                    "{} stream for session ID {sid}: {m}",
                    if bidi { "bidi" } else { "uni" }
                )),
                o => o,
            })?;
    }
    Ok(())
}

async fn st9(cx: &Ctx) -> CaseResult {
    let mut conn = cx.h3_conn(cx.h3_options()).await?;
    cx.within("the server's SETTINGS", conn.server_settings())
        .await??;
    let fields = cx.h3_connect_fields("/echo", &[]);
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut s = conn.open_bi_raw().await?;
    let mut bytes = headers_frame(&refs);
    bytes.extend(vi(0x41));
    bytes.extend(vi(s.id));
    bytes.extend_from_slice(b"data");
    s.write(&bytes).await?;
    expect_conn_close(cx, &conn, codes::H3_FRAME_ERROR).await
}

async fn st10(cx: &Ctx) -> CaseResult {
    let (_c, mut s) = cx.h2_session("/echo").await?;
    let fm = cx.fin_mapping();
    s.send(h2_stream(fm, 8, true, b"eight"))?;
    // 0 and 4 are implicitly open: data on them is accepted and echoed.
    s.send(h2_stream(fm, 0, true, b"zero"))?;
    s.send(h2_stream(fm, 4, true, b"four"))?;
    let mut view = H2View::default();
    h2_until(
        cx,
        &mut s,
        &mut view,
        "echoes on WT streams 8, 0 and 4",
        |v| v.stream(8).fin && v.stream(0).fin && v.stream(4).fin,
    )
    .await?;
    for (id, want) in [(8u64, &b"eight"[..]), (0, b"zero"), (4, b"four")] {
        let st = view.stream(id);
        ensure(st.fin && st.data == want, || {
            format!(
                "expected {} + FIN echoed on WT stream {id}, got {} fin {} reset {:?}{}",
                short(want),
                short(&st.data),
                st.fin,
                st.reset,
                super::end_note(&view)
            )
        })?;
    }
    Ok(())
}

async fn st11(cx: &Ctx) -> CaseResult {
    let (mut c, mut s) = cx.h2_session("/echo").await?;
    let fm = cx.fin_mapping();
    s.send(h2_stream(fm, 0, false, b"abc"))?;
    s.send(h2_stream(fm, 0, false, b""))?;
    s.send(h2_stream(fm, 0, true, b"def"))?;
    let mut view = H2View::default();
    h2_until(cx, &mut s, &mut view, "the echo or a session error", |v| {
        v.stream(0).fin
    })
    .await?;
    match &view.end {
        None => {
            let st = view.stream(0);
            ensure(st.data == b"abcdef", || {
                format!("expected \"abcdef\" echoed, got {}", short(&st.data))
            })?;
        }
        Some(ContentEvent::Reset(_)) => {}
        Some(other) => return fail(format!("expected the echo or a session error, got {other}")),
    }
    // The connection survives: a new session works.
    if let Some(e) = c.ended() {
        return fail(format!("the connection ended: {e}"));
    }
    let mut s2 = cx.h2_open(&mut c, "/echo", None, true).await?;
    ensure(s2.status == 200, || {
        format!(
            "expected a new session on the same connection, got {}",
            s2.status
        )
    })?;
    h2_echo(cx, &mut s2, 0, b"still alive").await
}
