//! §8.6 Flow control.

use std::time::Duration;

use wt_core::codes::CapsuleType;

use super::super::ctx::{ensure, skip, CaseResult, Ctx, Verdict};
use super::super::peer::h2::ids as h2ids;
use super::super::peer::h3::{codes, ids};
use super::{
    capsule, case, expect_connect_reset, expect_h2_session_error, h2_echo, h2_stream, h2_until,
    h3_echo, short, vi, Applies, Case, H2View,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "FC-1",
            "flow",
            "stream credit: WT_STREAMS_BLOCKED answered by WT_MAX_STREAMS",
            Applies::H3,
            fc1
        ),
        case!(
            "FC-2",
            "flow",
            "server stops at our WT_MAX_DATA, continues after an increase",
            Applies::H3,
            fc2
        ),
        case!(
            "FC-3",
            "flow",
            "stream beyond the limit or data beyond WT_MAX_DATA: WT_FLOW_CONTROL_ERROR",
            Applies::H3,
            fc3
        ),
        case!(
            "FC-4",
            "flow",
            "decreasing WT_MAX_DATA or WT_MAX_STREAMS > 2^60: WT_FLOW_CONTROL_ERROR",
            Applies::H3,
            fc4
        ),
        case!(
            "FC-5",
            "flow",
            "WT_MAX_STREAM_DATA / WT_STREAM_DATA_BLOCKED over HTTP/3: session error",
            Applies::H3,
            fc5
        ),
        case!(
            "FC-6",
            "flow",
            "flow control not negotiated: WT_MAX_DATA is ignored",
            Applies::H3_L,
            fc6
        ),
        case!(
            "FC-7",
            "flow",
            "no credit from the client: server sends nothing until credit arrives",
            Applies::H2,
            fc7
        ),
        case!(
            "FC-8",
            "flow",
            "data beyond the per-stream limit: WT_FLOW_CONTROL_ERROR",
            Applies::H2,
            fc8
        ),
        case!(
            "FC-9",
            "flow",
            "SETTINGS 0x2b63=100 and webtransport-init bl=500: larger wins",
            Applies::H2,
            fc9
        ),
        case!(
            "FC-10",
            "flow",
            "WT_MAX_STREAM_DATA after own WT_STOP_SENDING: WT_STREAM_STATE_ERROR",
            Applies::H2,
            fc10
        ),
        case!(
            "FC-11",
            "flow",
            "client SETTINGS changed mid-connection apply to new sessions only",
            Applies::H2,
            fc11
        ),
        case!(
            "FC-12",
            "flow",
            "HTTP/2 window exhausted by capsules: sender waits, no WT error",
            Applies::H2,
            fc12
        ),
    ]
}

/// Our flow-control SETTINGS (latest dialect, flow control on).
pub(super) fn fc_settings(max_data: u64, bidi: u64, uni: u64) -> Vec<(u64, u64)> {
    vec![
        (ids::QPACK_MAX_TABLE_CAPACITY, 0),
        (ids::H3_DATAGRAM, 1),
        (ids::WT_ENABLED, 1),
        (ids::WT_INITIAL_MAX_DATA, max_data),
        (ids::WT_INITIAL_MAX_STREAMS_UNI, uni),
        (ids::WT_INITIAL_MAX_STREAMS_BIDI, bidi),
    ]
}

/// The server's initial limits, or SKIP when it does not enable WT flow control.
pub(super) async fn server_fc(cx: &Ctx) -> Result<(u64, u64, u64), Verdict> {
    let mut opts = cx.h3_options();
    opts.settings = fc_settings(1 << 20, 100, 100);
    let mut conn = cx.h3_conn(opts).await?;
    let s = cx
        .within("the server's SETTINGS", conn.server_settings())
        .await??;
    let get = |id| s.get(id).unwrap_or(0);
    let l = (
        get(ids::WT_INITIAL_MAX_DATA),
        get(ids::WT_INITIAL_MAX_STREAMS_BIDI),
        get(ids::WT_INITIAL_MAX_STREAMS_UNI),
    );
    if l == (0, 0, 0) {
        return skip(
            "the server does not enable WT flow control (no non-zero 0x2b61/0x2b64/0x2b65)",
        );
    }
    Ok(l)
}

async fn fc_session(
    cx: &Ctx,
    ours: Vec<(u64, u64)>,
) -> Result<(super::H3Conn, super::H3Stream), Verdict> {
    let mut opts = cx.h3_options();
    opts.settings = ours;
    let mut conn = cx.h3_conn(opts).await?;
    cx.within("the server's SETTINGS", conn.server_settings())
        .await??;
    let (s, _) = cx.h3_accept(&conn, "/echo", &[]).await?;
    Ok((conn, s))
}

async fn fc1(cx: &Ctx) -> CaseResult {
    let (_, bidi, _) = server_fc(cx).await?;
    if bidi == 0 || bidi > 50 {
        return skip(format!(
            "the server's initial bidi stream limit is {bidi}; the case needs 1..=50"
        ));
    }
    let (conn, mut s) = fc_session(cx, fc_settings(1 << 20, 100, 100)).await?;
    for _ in 0..bidi {
        h3_echo(cx, &conn, s.id, b"x").await?;
    }
    s.send_capsule(CapsuleType::WT_STREAMS_BLOCKED_BIDI.0, &vi(bidi))
        .await?;
    loop {
        match cx
            .within(
                "WT_MAX_STREAMS_BIDI above the initial limit",
                s.next_capsule(),
            )
            .await?
        {
            super::ContentEvent::Capsule { ty, value, .. }
                if ty == CapsuleType::WT_MAX_STREAMS_BIDI.0 =>
            {
                let mut v = &value[..];
                let n = wt_core::varint::decode(&mut v).unwrap_or(0);
                if n > bidi {
                    return Ok(());
                }
            }
            super::ContentEvent::Capsule { .. } => {}
            other => {
                return Err(Verdict::Fail(format!(
                    "expected WT_MAX_STREAMS_BIDI > {bidi}, got {other}"
                )))
            }
        }
    }
}

async fn fc2(cx: &Ctx) -> CaseResult {
    server_fc(cx).await?;
    let (conn, mut s) = fc_session(cx, fc_settings(400, 100, 100)).await?;
    let (mut send, mut recv) = conn.open_wt_bi(s.id).await?;
    let data = super::pattern(600);
    send.write_all(&data)
        .await
        .map_err(|e| Verdict::Fail(e.to_string()))?;
    let _ = send.finish();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < 400 {
        match cx
            .within("the first 400 echoed bytes", recv.read(&mut buf))
            .await?
        {
            Ok(Some(n)) => got.extend_from_slice(&buf[..n]),
            other => {
                return Err(Verdict::Fail(format!(
                    "expected 400 bytes of echo, got {} then {other:?}",
                    got.len()
                )))
            }
        }
    }
    ensure(got.len() == 400, || {
        format!(
            "expected the server to stop at 400 bytes (our WT_MAX_DATA), got {}",
            got.len()
        )
    })?;
    if let Some(Ok(Some(n))) = cx
        .quiet(Duration::from_millis(300), recv.read(&mut buf))
        .await
    {
        return Err(Verdict::Fail(format!(
            "expected the server to stop at 400 bytes, it sent {n} more"
        )));
    }
    s.send_capsule(CapsuleType::WT_MAX_DATA.0, &vi(800)).await?;
    let (rest, end) = cx
        .within("the rest of the echo", super::read_all(&mut recv, 4096))
        .await?;
    got.extend(rest);
    ensure(got == data && end == super::End::Fin, || {
        format!(
            "expected the full 600-byte echo + FIN after WT_MAX_DATA(800), got {} bytes + {end}",
            got.len()
        )
    })
}

async fn fc3(cx: &Ctx) -> CaseResult {
    let (max_data, bidi, _) = server_fc(cx).await?;
    if bidi == 0 || bidi > 50 || max_data == 0 || max_data > 4 << 20 {
        return skip(format!(
            "the server's initial limits (WT_MAX_DATA {max_data}, bidi streams {bidi}) are outside what the case reaches (1..=4 MiB, 1..=50)"
        ));
    }
    // A stream beyond the stream limit.
    {
        let (conn, mut s) = fc_session(cx, fc_settings(1 << 20, 100, 100)).await?;
        let mut keep = Vec::new();
        for _ in 0..=bidi {
            keep.push(conn.open_wt_bi(s.id).await?);
        }
        for (send, _) in keep.iter_mut() {
            let _ = send.write_all(b"x").await;
        }
        expect_connect_reset(cx, &mut s, codes::WT_FLOW_CONTROL_ERROR)
            .await
            .map_err(|v| {
                super::prefix(v, &format!("bidi stream {} of {bidi} allowed", bidi + 1))
            })?;
    }
    // Data beyond WT_MAX_DATA: max_data + 1 payload bytes on one bidi stream, sent at once;
    // we read the echo as it comes so the server's application keeps reading.
    //
    // A receiver judges arriving bytes against the credit it has advertised so far; if its
    // application consumes and re-grants while the overrun is still in flight, the last byte
    // is legal by the time it arrives. The check is exact only when the overrun arrives in one
    // QUIC packet (WT_MAX_DATA ≤ 1100, as on the embedded server); above that a server that
    // re-grants early can pass the byte, and the case says so when it fails.
    let one_packet = max_data <= 1100;
    let (conn, mut s) = fc_session(cx, fc_settings(64 << 20, 100, 100)).await?;
    let (mut send, mut recv) = conn.open_wt_bi(s.id).await?;
    let data = vec![0x5a; max_data as usize + 1];
    let writer = tokio::spawn(async move {
        let _ = send.write_all(&data).await;
        send
    });
    let echoed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        let echoed = echoed.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 << 10];
            while let Ok(Some(n)) = recv.read(&mut buf).await {
                echoed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    // Record the WT_MAX_DATA updates the server sends meanwhile, for the diagnosis.
    let mut raised = Vec::new();
    let wait = cx.timeout.min(Duration::from_secs(5));
    let outcome = tokio::time::timeout(wait, async {
        loop {
            match s.next_capsule().await {
                super::ContentEvent::Capsule { ty, value, .. }
                    if ty == CapsuleType::WT_MAX_DATA.0 =>
                {
                    let mut v = &value[..];
                    raised.push(wt_core::varint::decode(&mut v).unwrap_or(0));
                }
                super::ContentEvent::Capsule { .. } => {}
                end => return end,
            }
        }
    })
    .await;
    writer.abort();
    reader.abort();
    let echoed = echoed.load(std::sync::atomic::Ordering::Relaxed);
    match outcome {
        Ok(super::ContentEvent::Reset(c)) if c == codes::WT_FLOW_CONTROL_ERROR => Ok(()),
        other => Err(Verdict::Fail(format!(
            "{} payload bytes sent at once{} with WT_MAX_DATA {max_data}: expected the CONNECT stream reset with {}, got {} ({echoed} bytes echoed; WT_MAX_DATA updates from the server meanwhile: {raised:?})",
            max_data + 1,
            if one_packet { " in one packet" } else { " (over several packets: a server that re-grants while they are in flight may legally accept the last byte)" },
            super::code_name(codes::WT_FLOW_CONTROL_ERROR),
            match other {
                Ok(e) => e.to_string(),
                Err(_) => format!("nothing within {wait:?}"),
            }
        ))),
    }
}

async fn fc4(cx: &Ctx) -> CaseResult {
    server_fc(cx).await?;
    for (what, cap) in [
        (
            "a decreasing WT_MAX_DATA",
            capsule(CapsuleType::WT_MAX_DATA.0, &vi(10)),
        ),
        (
            "WT_MAX_STREAMS_BIDI above 2^60",
            capsule(CapsuleType::WT_MAX_STREAMS_BIDI.0, &vi((1 << 60) + 1)),
        ),
    ] {
        let (_conn, mut s) = fc_session(cx, fc_settings(1 << 20, 100, 100)).await?;
        s.send_data(&cap).await?;
        expect_connect_reset(cx, &mut s, codes::WT_FLOW_CONTROL_ERROR)
            .await
            .map_err(|v| match v {
                Verdict::Fail(m) => Verdict::Fail(format!("{what}: {m}")),
                o => o,
            })?;
    }
    Ok(())
}

async fn fc5(cx: &Ctx) -> CaseResult {
    for (what, cap) in [
        (
            "WT_MAX_STREAM_DATA",
            capsule(
                CapsuleType::WT_MAX_STREAM_DATA.0,
                &[vi(0), vi(1000)].concat(),
            ),
        ),
        (
            "WT_STREAM_DATA_BLOCKED",
            capsule(
                CapsuleType::WT_STREAM_DATA_BLOCKED.0,
                &[vi(0), vi(1000)].concat(),
            ),
        ),
    ] {
        let (_conn, mut s) = cx.h3_session("/echo").await?;
        s.send_data(&cap).await?;
        let (_close, end) = super::h3_session_end(cx, &mut s).await?;
        ensure(matches!(end, super::ContentEvent::Reset(_)), || {
            format!(
                "{what} over HTTP/3: expected a session error (CONNECT stream reset), got {end}"
            )
        })?;
    }
    Ok(())
}

async fn fc6(cx: &Ctx) -> CaseResult {
    let (conn, mut s) = cx.h3_session("/echo").await?;
    s.send_data(
        &[
            capsule(CapsuleType::WT_MAX_DATA.0, &vi(1)),
            capsule(CapsuleType::WT_MAX_STREAMS_BIDI.0, &vi(0)),
        ]
        .concat(),
    )
    .await?;
    h3_echo(cx, &conn, s.id, b"flow control is off").await
}

async fn fc7(cx: &Ctx) -> CaseResult {
    let s_settings = cx.h2_settings().await?;
    if s_settings
        .get(h2ids::WT_INITIAL_MAX_STREAMS_BIDI)
        .unwrap_or(0)
        == 0
        || s_settings.get(h2ids::WT_INITIAL_MAX_DATA).unwrap_or(0) < 5
        || s_settings
            .get(h2ids::WT_INITIAL_MAX_STREAM_DATA_BIDI_REMOTE)
            .unwrap_or(0)
            < 5
    {
        return skip(
            "the server grants no initial credit for a client bidi stream; the case needs some",
        );
    }
    let mut conn = cx.h2_conn().await?;
    let headers = vec![("origin".to_string(), cx.origin())];
    let mut s = cx.h2_open(&mut conn, "/echo", Some(headers), false).await?;
    ensure(s.status == 200, || {
        format!("expected 200, got {}", s.status)
    })?;
    s.send(h2_stream(cx.fin_mapping(), 0, true, b"hello"))?;
    let mut view = H2View::default();
    let _ = cx
        .quiet(
            Duration::from_millis(300),
            h2_until(cx, &mut s, &mut view, "data without credit", |v| {
                !v.stream(0).data.is_empty()
            }),
        )
        .await;
    ensure(view.stream(0).data.is_empty(), || {
        format!(
            "expected no stream data from the server before any credit, got {}",
            short(&view.stream(0).data)
        )
    })?;
    s.send(
        [
            capsule(CapsuleType::WT_MAX_DATA.0, &vi(100)),
            capsule(
                CapsuleType::WT_MAX_STREAM_DATA.0,
                &[vi(0), vi(100)].concat(),
            ),
        ]
        .concat(),
    )?;
    h2_until(cx, &mut s, &mut view, "the echo after credit", |v| {
        v.stream(0).fin
    })
    .await?;
    let st = view.stream(0);
    ensure(st.data == b"hello" && st.fin, || {
        format!(
            "expected \"hello\" + FIN after credit, got {} fin {}{}",
            short(&st.data),
            st.fin,
            super::end_note(&view)
        )
    })
}

async fn fc8(cx: &Ctx) -> CaseResult {
    let st = cx.h2_settings().await?;
    let md = u64::from(st.get(h2ids::WT_INITIAL_MAX_DATA).unwrap_or(0));
    // A per-stream limit below the session limit, so only the per-stream limit is crossed.
    let pick = [
        (h2ids::WT_INITIAL_MAX_STREAM_DATA_UNI, 2u64, "uni"),
        (h2ids::WT_INITIAL_MAX_STREAM_DATA_BIDI_REMOTE, 0, "bidi"),
    ]
    .into_iter()
    .map(|(id, stream, kind)| (u64::from(st.get(id).unwrap_or(0)), stream, kind))
    .find(|(limit, _, _)| *limit > 0 && *limit < md && *limit <= 4 << 20);
    let Some((limit, stream, kind)) = pick else {
        return skip(format!("no per-stream limit of the server for client streams is in 1..min(4 MiB, its session limit {md}); the case needs one"));
    };
    let (_c, mut s) = cx.h2_session("/echo").await?;
    s.send(h2_stream(
        cx.fin_mapping(),
        stream,
        false,
        &vec![0u8; limit as usize + 1],
    ))?;
    let code = expect_h2_session_error(
        cx,
        &mut s,
        &format!("WT_FLOW_CONTROL_ERROR for {} bytes on a {kind} stream with a per-stream limit of {limit}", limit + 1),
    )
    .await?;
    ensure(code == 3, || {
        format!("expected RST_STREAM FLOW_CONTROL_ERROR (0x3, the WT_FLOW_CONTROL_ERROR default), got {code:#x}")
    })
}

/// The WebTransport SETTINGS a raw HTTP/2 client sends: `bidi_local` bytes per client-opened
/// bidi stream for the server, 1 MiB of session data, 100 streams of each kind.
pub(super) fn h2_client_wt_settings(bidi_local: u32) -> Vec<(u16, u32)> {
    vec![
        (h2ids::WT_INITIAL_MAX_DATA, 1 << 20),
        (h2ids::WT_INITIAL_MAX_STREAM_DATA_UNI, 1 << 20),
        (h2ids::WT_INITIAL_MAX_STREAM_DATA_BIDI_LOCAL, bidi_local),
        (h2ids::WT_INITIAL_MAX_STREAM_DATA_BIDI_REMOTE, 1 << 20),
        (h2ids::WT_INITIAL_MAX_STREAMS_UNI, 100),
        (h2ids::WT_INITIAL_MAX_STREAMS_BIDI, 100),
    ]
}

/// On raw session `sid`, sends `n` bytes + FIN on WT stream 0 and checks the server echoes
/// exactly `limit` of them, then the rest once WT_MAX_STREAM_DATA(0, n) arrives.
pub(super) async fn h2_raw_stops_at(
    cx: &Ctx,
    c: &mut super::super::peer::h2::RawH2Client,
    sid: u32,
    n: usize,
    limit: usize,
    what: &str,
) -> CaseResult {
    let fm = cx.fin_mapping();
    let data = super::pattern(n);
    c.data(sid, &h2_stream(fm, 0, true, &data), false)
        .await
        .map_err(|e| Verdict::Fail(e.to_string()))?;
    let mut view = H2View::default();
    super::h2_raw_until(
        cx,
        c,
        sid,
        &mut view,
        &format!("{what}: the first {limit} echoed bytes"),
        |v| v.stream(0).data.len() >= limit || v.stream(0).fin,
    )
    .await?;
    let _ = cx
        .quiet(
            Duration::from_millis(200),
            super::h2_raw_until(cx, c, sid, &mut view, "more echo", |v| {
                v.stream(0).data.len() > limit || v.stream(0).fin
            }),
        )
        .await;
    let st = view.stream(0);
    ensure(st.data.len() == limit && !st.fin, || {
        format!(
            "{what}: expected the server to send exactly {limit} bytes on WT stream 0 and wait for credit, got {} bytes (fin {}){}",
            st.data.len(),
            st.fin,
            super::end_note(&view)
        )
    })?;
    c.data(
        sid,
        &capsule(
            CapsuleType::WT_MAX_STREAM_DATA.0,
            &[vi(0), vi(n as u64)].concat(),
        ),
        false,
    )
    .await
    .map_err(|e| Verdict::Fail(e.to_string()))?;
    super::h2_raw_until(
        cx,
        c,
        sid,
        &mut view,
        &format!("{what}: the rest of the echo"),
        |v| v.stream(0).fin,
    )
    .await?;
    let st = view.stream(0);
    ensure(st.fin && st.data == data, || {
        format!(
            "{what}: expected the whole {n}-byte echo + FIN after WT_MAX_STREAM_DATA, got {} bytes (fin {}){}",
            st.data.len(),
            st.fin,
            super::end_note(&view)
        )
    })
}

async fn fc9(cx: &Ctx) -> CaseResult {
    for (setting, header, what) in [
        (
            100u32,
            "bl=500",
            "SETTINGS 0x2b63=100 and webtransport-init bl=500",
        ),
        (
            500,
            "bl=100",
            "SETTINGS 0x2b63=500 and webtransport-init bl=100",
        ),
    ] {
        let mut c = super::h2_raw(cx, &h2_client_wt_settings(setting)).await?;
        let sid = super::h2_raw_session(cx, &mut c, "/echo", &[("webtransport-init", header)], &[])
            .await?;
        h2_raw_stops_at(cx, &mut c, sid, 600, 500, what).await?;
    }
    Ok(())
}

async fn fc10(cx: &Ctx) -> CaseResult {
    let (_c, mut s) = cx.h2_session("/echo").await?;
    let fm = cx.fin_mapping();
    s.send(h2_stream(fm, 0, false, b"abc"))?;
    let mut view = H2View::default();
    h2_until(cx, &mut s, &mut view, "the echo", |v| {
        v.stream(0).data.len() >= 3
    })
    .await?;
    s.send(capsule(
        CapsuleType::WT_STOP_SENDING.0,
        &[vi(0), vi(9)].concat(),
    ))?;
    s.send(capsule(
        CapsuleType::WT_MAX_STREAM_DATA.0,
        &[vi(0), vi(10 << 20)].concat(),
    ))?;
    expect_h2_session_error(
        cx,
        &mut s,
        "WT_STREAM_STATE_ERROR for WT_MAX_STREAM_DATA after our WT_STOP_SENDING",
    )
    .await?;
    Ok(())
}

async fn fc11(cx: &Ctx) -> CaseResult {
    // Session 1 is opened once the server acknowledged 0x2b63=10, session 2 once it
    // acknowledged 0x2b63=20; each keeps the value in force when it was accepted.
    let mut c = super::h2_raw(cx, &h2_client_wt_settings(10)).await?;
    let s1 = super::h2_raw_session(cx, &mut c, "/echo", &[], &[]).await?;
    c.send_settings(&[(h2ids::WT_INITIAL_MAX_STREAM_DATA_BIDI_LOCAL, 20)])
        .await
        .map_err(|e| Verdict::Fail(e.to_string()))?;
    cx.within("the ACK of our second SETTINGS", c.until(|c| c.acks >= 2))
        .await?
        .map_err(|e| Verdict::Fail(e.to_string()))?;
    let s2 = super::h2_raw_session(cx, &mut c, "/echo", &[], &[]).await?;
    h2_raw_stops_at(cx, &mut c, s2, 30, 20, "the session opened after 0x2b63=20").await?;
    h2_raw_stops_at(cx, &mut c, s1, 30, 10, "the session opened under 0x2b63=10").await
}

async fn fc12(cx: &Ctx) -> CaseResult {
    let st = cx.h2_settings().await?;
    let limit = st
        .get(h2ids::WT_INITIAL_MAX_STREAM_DATA_BIDI_REMOTE)
        .unwrap_or(0) as usize;
    let total = limit.min(160 * 1024);
    if total < 100 * 1024 {
        return skip(format!(
            "the server's per-stream limit ({limit}) is below the 100 KiB the case sends"
        ));
    }
    let mut conn = cx.h2_conn_window(65_535).await?;
    let mut s = cx.h2_open(&mut conn, "/echo", None, true).await?;
    ensure(s.status == 200, || {
        format!("expected 200, got {}", s.status)
    })?;
    h2_echo(cx, &mut s, 0, &super::pattern(total)).await
}
