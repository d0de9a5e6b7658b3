//! Cases beyond §8 for HTTP/2 (`X-H2-n`): every capsule rule of the wire reference's §4.4–4.6
//! as its own case (each violation alone, each limit at and beyond its boundary), the
//! `webtransport-init` variants of §4.3, and the HTTP/2 rules (RFC 9113, RFC 8441) the
//! binding relies on. Each title names the rule it checks.

use std::time::Duration;

use wt_core::codes::CapsuleType;

use super::super::ctx::{ensure, fail, skip, CaseResult, Context, Ctx, Verdict};
use super::super::peer::h2::{ids as h2ids, H2Conn, H2Session};
use super::{
    capsule, case, end_note, expect_h2_session_error, h2_credit, h2_echo, h2_stream, h2_until,
    pattern, short, vi, Applies, Case, H2View,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!("X-H2-1", "flow", "ref 4.6: WT_STREAM data beyond WT_MAX_DATA (one capsule): WT_FLOW_CONTROL_ERROR", Applies::H2, beyond_max_data),
        case!("X-H2-2", "flow", "ref 4.6: bidi stream beyond WT_MAX_STREAMS_BIDI: WT_FLOW_CONTROL_ERROR", Applies::H2, beyond_bidi),
        case!("X-H2-3", "flow", "ref 4.6: uni stream beyond WT_MAX_STREAMS_UNI: WT_FLOW_CONTROL_ERROR", Applies::H2, beyond_uni),
        case!("X-H2-4", "streams", "ref 4.5: WT_STREAM after FIN: WT_STREAM_STATE_ERROR", Applies::H2_L, stream_after_fin),
        case!("X-H2-5", "flow", "ref 4.4: decreasing WT_MAX_DATA: WT_FLOW_CONTROL_ERROR", Applies::H2, max_data_decrease),
        case!("X-H2-6", "flow", "ref 4.4: decreasing WT_MAX_STREAM_DATA: WT_FLOW_CONTROL_ERROR", Applies::H2, max_stream_data_decrease),
        case!("X-H2-7", "flow", "ref 4.4: WT_MAX_STREAMS bidi or uni above 2^60: WT_FLOW_CONTROL_ERROR", Applies::H2, max_streams_too_big),
        case!("X-H2-8", "flow", "ref 4.4: decreasing WT_MAX_STREAMS bidi or uni: WT_FLOW_CONTROL_ERROR", Applies::H2, max_streams_decrease),
        case!("X-H2-9", "flow", "ref 4.4: WT_STREAMS_BLOCKED above 2^60: WT_FLOW_CONTROL_ERROR", Applies::H2, streams_blocked_too_big),
        case!("X-H2-10", "flow", "ref 4.4: BLOCKED capsules with valid values are advisory, no error", Applies::H2_L, blocked_advisory),
        case!("X-H2-11", "streams", "ref 4.5: WT_STREAM_DATA_BLOCKED after our FIN: WT_STREAM_STATE_ERROR", Applies::H2, data_blocked_after_fin),
        case!("X-H2-12", "reset", "ref 4.4: WT_RESET_STREAM after the stream's FIN: WT_STREAM_STATE_ERROR", Applies::H2, reset_after_fin),
        case!("X-H2-13", "streams", "ref 4.5: WT_STREAM on a server stream ID never opened: WT_STREAM_STATE_ERROR", Applies::H2, unopened_server_stream),
        case!("X-H2-14", "handshake", "ref 4.3: unknown webtransport-init keys are ignored", Applies::H2_L, init_unknown_keys),
        case!("X-H2-15", "handshake", "ref 4.3: webtransport-init with a negative value: 4xx", Applies::H2, init_negative),
        case!("X-H2-16", "handshake", "ref 4.3: webtransport-init that is not an sf-dictionary: 4xx", Applies::H2, init_unparsable),
        case!("X-H2-17", "flow", "ref 4.3: webtransport-init bl=5: server sends 5 bytes on our bidi stream, then waits", Applies::H2_L, init_bl),
        case!("X-H2-18", "flow", "ref 4.3: webtransport-init u=3: server sends 3 bytes on its uni stream, then waits", Applies::H2_L, init_u),
        case!("X-H2-19", "flow", "ref 4.3: webtransport-init br=4: server sends 4 bytes on its bidi stream, then waits", Applies::H2_L, init_br),
        case!("X-H2-20", "datagram", "ref 4.6: DATAGRAM capsules are not charged to WT_MAX_DATA", Applies::H2_L, datagrams_not_charged),
        case!("X-H2-21", "robustness", "ref 4.4: PADDING of zero bytes is ignored", Applies::H2_L, zero_padding),
        case!("X-H2-22", "flow", "ref 4.6: data exactly at the uni per-stream limit is accepted", Applies::H2, exactly_at_limit),
        case!("X-H2-23", "flow", "ref 4.6: server re-grants WT_MAX_DATA as it consumes; data beyond the initial limit flows", Applies::H2, regrant_max_data),
        case!("X-H2-24", "flow", "ref 4.6: server opens no uni stream beyond our WT_MAX_STREAMS_UNI", Applies::H2_L, our_uni_stream_limit),
        case!("X-H2-25", "handshake", "RFC 9113 6.5.2: unknown SETTINGS identifiers from the client are ignored", Applies::H2, unknown_client_settings),
        case!("X-H2-26", "handshake", "RFC 8441 4: extended CONNECT without :path is malformed", Applies::H2, connect_without_path),
        case!("X-H2-27", "flow", "ref 4.2: client SETTINGS_WT_INITIAL_MAX_DATA=10 bounds the server's session data", Applies::H2, client_initial_max_data),
    ]
}

/// The RST_STREAM code of WT_FLOW_CONTROL_ERROR the suite expects (the draft leaves it TBD;
/// FLOW_CONTROL_ERROR is the conservative default of the wire reference §4.7).
const FLOW_ERR: u64 = 0x3;

/// A session on /echo whose headers carry `webtransport-init: init`, with the usual credit
/// capsules.
async fn session_with_init(cx: &Ctx, init: &str) -> Result<(H2Conn, H2Session), Verdict> {
    let mut conn = cx.h2_conn().await?;
    let headers = vec![
        ("origin".to_string(), cx.origin()),
        ("webtransport-init".to_string(), init.to_string()),
    ];
    let s = cx.h2_open(&mut conn, "/echo", Some(headers), true).await?;
    ensure(s.status == 200, || {
        format!(
            "expected 200 with webtransport-init: {init}, got {}",
            s.status
        )
    })?;
    Ok((conn, s))
}

/// Sends `bytes` on a fresh /echo session and expects a session error; with `code`, that
/// RST_STREAM code.
async fn session_error(cx: &Ctx, bytes: Vec<u8>, what: &str, code: Option<u64>) -> CaseResult {
    let (_c, mut s) = cx.h2_session("/echo").await?;
    s.send(bytes)?;
    let got = expect_h2_session_error(cx, &mut s, what).await?;
    if let Some(c) = code {
        ensure(got == c, || {
            format!("{what}: expected RST_STREAM {c:#x}, got {got:#x}")
        })?;
    }
    Ok(())
}

/// The server's initial limit `id`, or SKIP when it lies outside `lo..=hi`.
async fn server_limit(cx: &Ctx, id: u16, lo: u64, hi: u64, name: &str) -> Result<u64, Verdict> {
    let st = cx.h2_settings().await?;
    let v = u64::from(st.get(id).unwrap_or(0));
    if v < lo || v > hi {
        return skip(format!(
            "the server's {name} ({id:#x}) is {v}; the case needs {lo}..={hi}"
        ));
    }
    Ok(v)
}

async fn beyond_max_data(cx: &Ctx) -> CaseResult {
    let md = server_limit(
        cx,
        h2ids::WT_INITIAL_MAX_DATA,
        1,
        4 << 20,
        "WT_INITIAL_MAX_DATA",
    )
    .await?;
    let br = cx
        .h2_settings()
        .await?
        .get(h2ids::WT_INITIAL_MAX_STREAM_DATA_BIDI_REMOTE)
        .unwrap_or(0);
    if u64::from(br) <= md {
        return skip(format!(
            "the server's per-stream limit ({br}) is not above its session limit ({md}): one capsule cannot cross the session limit alone"
        ));
    }
    session_error(
        cx,
        h2_stream(cx.fin_mapping(), 0, false, &vec![0u8; md as usize + 1]),
        &format!(
            "WT_FLOW_CONTROL_ERROR for {} bytes with WT_MAX_DATA {md}",
            md + 1
        ),
        Some(FLOW_ERR),
    )
    .await
}

async fn beyond_bidi(cx: &Ctx) -> CaseResult {
    beyond_streams(
        cx,
        h2ids::WT_INITIAL_MAX_STREAMS_BIDI,
        "WT_INITIAL_MAX_STREAMS_BIDI",
        0,
        "bidi",
    )
    .await
}

async fn beyond_uni(cx: &Ctx) -> CaseResult {
    beyond_streams(
        cx,
        h2ids::WT_INITIAL_MAX_STREAMS_UNI,
        "WT_INITIAL_MAX_STREAMS_UNI",
        2,
        "uni",
    )
    .await
}

/// Opens one client stream more than the server's initial stream limit (`setting`), each
/// carrying one byte; the server must end the session with WT_FLOW_CONTROL_ERROR.
/// `first_id` is the kind's first client stream id (0 bidi, 2 uni).
async fn beyond_streams(
    cx: &Ctx,
    setting: u16,
    setting_name: &str,
    first_id: u64,
    kind: &str,
) -> CaseResult {
    let n = server_limit(cx, setting, 1, 1000, setting_name).await?;
    let fm = cx.fin_mapping();
    let bytes: Vec<u8> = (0..=n)
        .flat_map(|i| h2_stream(fm, 4 * i + first_id, false, b"x"))
        .collect();
    session_error(
        cx,
        bytes,
        &format!("WT_FLOW_CONTROL_ERROR for {kind} stream {} of {n}", n + 1),
        Some(FLOW_ERR),
    )
    .await
}

async fn stream_after_fin(cx: &Ctx) -> CaseResult {
    let fm = cx.fin_mapping();
    let (_c, mut s) = cx.h2_session("/echo").await?;
    s.send(h2_stream(fm, 0, true, b"done"))?;
    let mut view = H2View::default();
    h2_until(cx, &mut s, &mut view, "the echo", |v| v.stream(0).fin).await?;
    s.send(h2_stream(fm, 0, false, b"more"))?;
    expect_h2_session_error(cx, &mut s, "WT_STREAM_STATE_ERROR for WT_STREAM after FIN").await?;
    Ok(())
}

async fn max_data_decrease(cx: &Ctx) -> CaseResult {
    // h2_credit granted 64 MiB.
    session_error(
        cx,
        capsule(CapsuleType::WT_MAX_DATA.0, &vi(1000)),
        "WT_FLOW_CONTROL_ERROR for WT_MAX_DATA 64 MiB -> 1000",
        Some(FLOW_ERR),
    )
    .await
}

async fn max_stream_data_decrease(cx: &Ctx) -> CaseResult {
    let fm = cx.fin_mapping();
    let (_c, mut s) = cx.h2_session("/echo").await?;
    // webtransport-init bl=1 MiB gave the server 1 MiB on our stream 0.
    s.send(h2_stream(fm, 0, false, b"ab"))?;
    s.send(capsule(
        CapsuleType::WT_MAX_STREAM_DATA.0,
        &[vi(0), vi(10)].concat(),
    ))?;
    let code = expect_h2_session_error(
        cx,
        &mut s,
        "WT_FLOW_CONTROL_ERROR for WT_MAX_STREAM_DATA 1 MiB -> 10",
    )
    .await?;
    ensure(code == FLOW_ERR, || {
        format!("expected RST_STREAM {FLOW_ERR:#x}, got {code:#x}")
    })
}

async fn max_streams_too_big(cx: &Ctx) -> CaseResult {
    for ty in [
        CapsuleType::WT_MAX_STREAMS_BIDI,
        CapsuleType::WT_MAX_STREAMS_UNI,
    ] {
        session_error(
            cx,
            capsule(ty.0, &vi((1 << 60) + 1)),
            &format!("WT_FLOW_CONTROL_ERROR for capsule {:#x} with 2^60+1", ty.0),
            Some(FLOW_ERR),
        )
        .await?;
    }
    Ok(())
}

async fn max_streams_decrease(cx: &Ctx) -> CaseResult {
    // h2_credit granted 100 of each.
    for ty in [
        CapsuleType::WT_MAX_STREAMS_BIDI,
        CapsuleType::WT_MAX_STREAMS_UNI,
    ] {
        session_error(
            cx,
            capsule(ty.0, &vi(5)),
            &format!("WT_FLOW_CONTROL_ERROR for capsule {:#x} 100 -> 5", ty.0),
            Some(FLOW_ERR),
        )
        .await?;
    }
    Ok(())
}

async fn streams_blocked_too_big(cx: &Ctx) -> CaseResult {
    session_error(
        cx,
        capsule(CapsuleType::WT_STREAMS_BLOCKED_BIDI.0, &vi((1 << 60) + 1)),
        "WT_FLOW_CONTROL_ERROR for WT_STREAMS_BLOCKED_BIDI 2^60+1",
        Some(FLOW_ERR),
    )
    .await
}

async fn blocked_advisory(cx: &Ctx) -> CaseResult {
    let fm = cx.fin_mapping();
    let (_c, mut s) = cx.h2_session("/echo").await?;
    s.send(h2_stream(fm, 0, false, b"ab"))?;
    s.send(
        [
            capsule(CapsuleType::WT_DATA_BLOCKED.0, &vi(2)),
            capsule(
                CapsuleType::WT_STREAM_DATA_BLOCKED.0,
                &[vi(0), vi(2)].concat(),
            ),
            capsule(CapsuleType::WT_STREAMS_BLOCKED_BIDI.0, &vi(1)),
            capsule(CapsuleType::WT_STREAMS_BLOCKED_UNI.0, &vi(0)),
        ]
        .concat(),
    )?;
    s.send(h2_stream(fm, 0, true, b"cd"))?;
    let mut view = H2View::default();
    h2_until(
        cx,
        &mut s,
        &mut view,
        "the echo after BLOCKED capsules",
        |v| v.stream(0).fin,
    )
    .await?;
    ensure(view.stream(0).data == b"abcd" && view.end.is_none(), || {
        format!(
            "expected \"abcd\" + FIN echoed after advisory BLOCKED capsules, got {}{}",
            short(&view.stream(0).data),
            end_note(&view)
        )
    })
}

async fn data_blocked_after_fin(cx: &Ctx) -> CaseResult {
    let fm = cx.fin_mapping();
    let (_c, mut s) = cx.h2_session("/echo").await?;
    s.send(h2_stream(fm, 0, true, b"ab"))?;
    let mut view = H2View::default();
    h2_until(cx, &mut s, &mut view, "the echo", |v| v.stream(0).fin).await?;
    s.send(capsule(
        CapsuleType::WT_STREAM_DATA_BLOCKED.0,
        &[vi(0), vi(2)].concat(),
    ))?;
    expect_h2_session_error(
        cx,
        &mut s,
        "WT_STREAM_STATE_ERROR for WT_STREAM_DATA_BLOCKED after FIN",
    )
    .await?;
    Ok(())
}

async fn reset_after_fin(cx: &Ctx) -> CaseResult {
    let fm = cx.fin_mapping();
    let (_c, mut s) = cx.h2_session("/echo").await?;
    s.send(h2_stream(fm, 0, true, b"ab"))?;
    let mut view = H2View::default();
    h2_until(cx, &mut s, &mut view, "the echo", |v| v.stream(0).fin).await?;
    s.send(capsule(
        CapsuleType::WT_RESET_STREAM.0,
        &[vi(0), vi(7), vi(2)].concat(),
    ))?;
    expect_h2_session_error(
        cx,
        &mut s,
        "WT_STREAM_STATE_ERROR for WT_RESET_STREAM after FIN",
    )
    .await?;
    Ok(())
}

async fn unopened_server_stream(cx: &Ctx) -> CaseResult {
    // On /echo the server opens no stream of its own: WT stream 1 does not exist.
    session_error(
        cx,
        h2_stream(cx.fin_mapping(), 1, false, b"x"),
        "WT_STREAM_STATE_ERROR for data on server bidi stream 1, never opened",
        None,
    )
    .await
}

async fn init_unknown_keys(cx: &Ctx) -> CaseResult {
    let (_c, mut s) =
        session_with_init(cx, "u=1048576, bl=1048576, br=1048576, zz=5, x-y=?1").await?;
    h2_echo(cx, &mut s, 0, b"unknown keys ignored").await
}

async fn init_rejected(cx: &Ctx, init: &str) -> CaseResult {
    let mut conn = cx.h2_conn().await?;
    let headers = vec![
        ("origin".to_string(), cx.origin()),
        ("webtransport-init".to_string(), init.to_string()),
    ];
    let s = cx.h2_open(&mut conn, "/echo", Some(headers), false).await?;
    ensure((400..500).contains(&s.status), || {
        format!(
            "expected a 4xx for webtransport-init: {init}, got {}",
            s.status
        )
    })
}

async fn init_negative(cx: &Ctx) -> CaseResult {
    init_rejected(cx, "u=1000, bl=-5, br=1000").await
}

async fn init_unparsable(cx: &Ctx) -> CaseResult {
    init_rejected(cx, "u=1000,, bl=1000").await
}

/// Collects `view` until `done` (or the stream ends), then checks nothing more comes for a
/// moment on `id` beyond `limit` bytes.
async fn stops_at(
    cx: &Ctx,
    s: &mut H2Session,
    view: &mut H2View,
    id: u64,
    limit: usize,
    what: &str,
) -> CaseResult {
    h2_until(cx, s, view, what, |v| {
        v.stream(id).data.len() >= limit || v.stream(id).fin
    })
    .await?;
    let _ = cx
        .quiet(
            Duration::from_millis(200),
            h2_until(cx, s, view, "more data", |v| {
                v.stream(id).data.len() > limit || v.stream(id).fin
            }),
        )
        .await;
    let st = view.stream(id);
    ensure(st.data.len() == limit && !st.fin, || {
        format!(
            "{what}: expected exactly {limit} bytes on WT stream {id}, then a wait for credit, got {} bytes (fin {}){}",
            st.data.len(),
            st.fin,
            end_note(view)
        )
    })
}

/// Grants `n` bytes on stream `id` and expects the rest (`full`) + FIN.
async fn then_rest(
    cx: &Ctx,
    s: &mut H2Session,
    view: &mut H2View,
    id: u64,
    full: &[u8],
) -> CaseResult {
    s.send(capsule(
        CapsuleType::WT_MAX_STREAM_DATA.0,
        &[vi(id), vi(full.len() as u64)].concat(),
    ))?;
    h2_until(cx, s, view, "the rest after WT_MAX_STREAM_DATA", |v| {
        v.stream(id).fin
    })
    .await?;
    let st = view.stream(id);
    ensure(st.fin && st.data == full, || {
        format!(
            "expected all {} bytes + FIN on WT stream {id} after WT_MAX_STREAM_DATA, got {} bytes (fin {}){}",
            full.len(),
            st.data.len(),
            st.fin,
            end_note(view)
        )
    })
}

async fn init_bl(cx: &Ctx) -> CaseResult {
    let (_c, mut s) = session_with_init(cx, "u=1048576, bl=5, br=1048576").await?;
    let data = pattern(12);
    s.send(h2_stream(cx.fin_mapping(), 0, true, &data))?;
    let mut view = H2View::default();
    stops_at(cx, &mut s, &mut view, 0, 5, "bl=5").await?;
    then_rest(cx, &mut s, &mut view, 0, &data).await
}

async fn init_u(cx: &Ctx) -> CaseResult {
    let (_c, mut s) = session_with_init(cx, "u=3, bl=1048576, br=1048576").await?;
    let data = b"abcdef";
    s.send(h2_stream(cx.fin_mapping(), 2, true, data))?;
    let mut view = H2View::default();
    let server_uni = 3;
    stops_at(cx, &mut s, &mut view, server_uni, 3, "u=3").await?;
    then_rest(cx, &mut s, &mut view, server_uni, data).await
}

async fn init_br(cx: &Ctx) -> CaseResult {
    let mut conn = cx.h2_conn().await?;
    let headers = vec![
        ("origin".to_string(), cx.origin()),
        (
            "webtransport-init".to_string(),
            "u=1048576, bl=1048576, br=4".to_string(),
        ),
    ];
    let mut s = cx
        .h2_open(&mut conn, "/open-bidi/10", Some(headers), true)
        .await?;
    ensure(s.status == 200, || {
        format!("expected 200, got {}", s.status)
    })?;
    let mut view = H2View::default();
    stops_at(cx, &mut s, &mut view, 1, 4, "br=4").await?;
    then_rest(cx, &mut s, &mut view, 1, &pattern(10)).await
}

async fn datagrams_not_charged(cx: &Ctx) -> CaseResult {
    let st = cx.h2_settings().await?;
    let md = st.get(h2ids::WT_INITIAL_MAX_DATA).unwrap_or(0) as usize;
    if md > 2 << 20 {
        return skip(format!("the server's WT_INITIAL_MAX_DATA ({md}) is above the 2 MiB of datagrams the case sends"));
    }
    let (_c, mut s) = cx.h2_session("/echo").await?;
    let each = 1200;
    let count = md / each + 20;
    for i in 0..count {
        s.send(capsule(
            CapsuleType::DATAGRAM.0,
            &vec![(i % 251) as u8; each],
        ))?;
    }
    let mut view = H2View::default();
    // The echoes may be dropped (allowed); the session must survive and streams still flow.
    s.send(h2_stream(cx.fin_mapping(), 0, true, b"after datagrams"))?;
    h2_until(
        cx,
        &mut s,
        &mut view,
        "the stream echo after the datagrams",
        |v| v.stream(0).fin,
    )
    .await?;
    ensure(
        view.stream(0).data == b"after datagrams" && view.end.is_none(),
        || {
            format!(
            "expected the session to accept {} datagram bytes (WT_MAX_DATA {md}) and keep echoing, got {} and {} datagrams back{}",
            count * each,
            short(&view.stream(0).data),
            view.datagrams.len(),
            end_note(&view)
        )
        },
    )
}

async fn zero_padding(cx: &Ctx) -> CaseResult {
    let (_c, mut s) = cx.h2_session("/echo").await?;
    s.send(capsule(CapsuleType::PADDING.0, &[0u8; 17]))?;
    h2_echo(cx, &mut s, 0, b"after padding").await
}

async fn exactly_at_limit(cx: &Ctx) -> CaseResult {
    let u = server_limit(
        cx,
        h2ids::WT_INITIAL_MAX_STREAM_DATA_UNI,
        1,
        1 << 20,
        "WT_INITIAL_MAX_STREAM_DATA_UNI",
    )
    .await? as usize;
    let md = cx
        .h2_settings()
        .await?
        .get(h2ids::WT_INITIAL_MAX_DATA)
        .unwrap_or(0) as usize;
    if md < u {
        return skip(format!(
            "the server's session limit ({md}) is below its uni per-stream limit ({u})"
        ));
    }
    let (_c, mut s) = cx.h2_session("/echo").await?;
    let data = pattern(u);
    s.send(h2_stream(cx.fin_mapping(), 2, true, &data))?;
    let mut view = H2View::default();
    h2_until(
        cx,
        &mut s,
        &mut view,
        "the uni echo of exactly the limit",
        |v| v.stream(3).fin,
    )
    .await?;
    ensure(view.stream(3).data == data && view.end.is_none(), || {
        format!(
            "expected a uni stream of exactly {u} bytes (the limit) accepted and echoed, got {} bytes{}",
            view.stream(3).data.len(),
            end_note(&view)
        )
    })
}

async fn regrant_max_data(cx: &Ctx) -> CaseResult {
    let md = server_limit(
        cx,
        h2ids::WT_INITIAL_MAX_DATA,
        2,
        4 << 20,
        "WT_INITIAL_MAX_DATA",
    )
    .await? as usize;
    let br = cx
        .h2_settings()
        .await?
        .get(h2ids::WT_INITIAL_MAX_STREAM_DATA_BIDI_REMOTE)
        .unwrap_or(0) as usize;
    let part = (md * 3 / 4).min(br);
    if part * 2 <= md {
        return skip(format!(
            "the server's per-stream limit ({br}) is too small next to its session limit ({md})"
        ));
    }
    let fm = cx.fin_mapping();
    let (_c, mut s) = cx.h2_session("/echo").await?;
    s.send(h2_stream(fm, 0, true, &pattern(part)))?;
    let mut view = H2View::default();
    let raised = |v: &H2View| {
        v.capsules.iter().any(|(t, w)| {
            *t == CapsuleType::WT_MAX_DATA.0 && {
                let mut b = &w[..];
                let _ = wt_core::varint::decode(&mut b);
                let _ = wt_core::varint::decode(&mut b);
                wt_core::varint::decode(&mut b).is_ok_and(|n| n as usize >= 2 * part)
            }
        })
    };
    h2_until(
        cx,
        &mut s,
        &mut view,
        "the echo and a WT_MAX_DATA covering more data",
        |v| v.stream(0).fin && raised(v),
    )
    .await?;
    ensure(view.stream(0).fin && raised(&view), || {
        format!(
            "expected a WT_MAX_DATA >= {} after the server consumed {part} of its {md} bytes{}",
            2 * part,
            end_note(&view)
        )
    })?;
    h2_echo(cx, &mut s, 4, &pattern(part)).await
}

async fn our_uni_stream_limit(cx: &Ctx) -> CaseResult {
    let fm = cx.fin_mapping();
    let mut conn = cx.h2_conn().await?;
    let mut s = cx.h2_open(&mut conn, "/echo", None, false).await?;
    ensure(s.status == 200, || {
        format!("expected 200, got {}", s.status)
    })?;
    // Credit: data and bidi as usual, one uni stream only.
    s.send(
        [
            capsule(CapsuleType::WT_MAX_DATA.0, &vi(1 << 20)),
            capsule(CapsuleType::WT_MAX_STREAMS_BIDI.0, &vi(100)),
            capsule(CapsuleType::WT_MAX_STREAMS_UNI.0, &vi(1)),
        ]
        .concat(),
    )?;
    s.send(
        [
            h2_stream(fm, 2, true, b"one"),
            h2_stream(fm, 6, true, b"two"),
        ]
        .concat(),
    )?;
    let mut view = H2View::default();
    h2_until(cx, &mut s, &mut view, "the first uni echo", |v| {
        v.stream(3).fin
    })
    .await?;
    let _ = cx
        .quiet(
            Duration::from_millis(200),
            h2_until(cx, &mut s, &mut view, "a second uni stream", |v| {
                v.streams.contains_key(&7)
            }),
        )
        .await;
    ensure(!view.streams.contains_key(&7) && view.end.is_none(), || {
        format!("expected the server to open no second uni stream with WT_MAX_STREAMS_UNI 1, got streams {:?}{}", view.streams.keys().collect::<Vec<_>>(), end_note(&view))
    })?;
    s.send(capsule(CapsuleType::WT_MAX_STREAMS_UNI.0, &vi(2)))?;
    h2_until(
        cx,
        &mut s,
        &mut view,
        "the second uni echo after WT_MAX_STREAMS_UNI 2",
        |v| v.stream(7).fin,
    )
    .await?;
    let (a, b) = (view.stream(3).data.clone(), view.stream(7).data.clone());
    ensure(
        (a == b"one" && b == b"two") || (a == b"two" && b == b"one"),
        || {
            format!(
                "expected the echoes \"one\" and \"two\" on streams 3 and 7, got {} and {}",
                short(&a),
                short(&b)
            )
        },
    )
}

async fn unknown_client_settings(cx: &Ctx) -> CaseResult {
    let mut settings = super::flow::h2_client_wt_settings(1 << 20);
    settings.push((0x2b6f, 7));
    settings.push((0xface, 1));
    let mut c = super::h2_raw(cx, &settings).await?;
    let sid = super::h2_raw_session(cx, &mut c, "/echo", &[], &[]).await?;
    c.data(sid, &h2_stream(cx.fin_mapping(), 0, true, b"ok"), false)
        .await
        .ctx("WT_STREAM")?;
    let mut view = H2View::default();
    super::h2_raw_until(cx, &mut c, sid, &mut view, "the echo", |v| v.stream(0).fin).await?;
    ensure(view.stream(0).data == b"ok", || {
        format!(
            "expected the echo \"ok\" + FIN, got {}{}",
            short(&view.stream(0).data),
            end_note(&view)
        )
    })
}

async fn connect_without_path(cx: &Ctx) -> CaseResult {
    let mut c = super::h2_raw(cx, &super::flow::h2_client_wt_settings(1 << 20)).await?;
    let mut f = super::h2_raw_fields(cx, "/echo", &[]);
    f.retain(|(n, _)| n != ":path");
    let (_, answer) = super::h2_raw_request(cx, &mut c, &f).await?;
    match answer {
        Err(0x1) => Ok(()),
        Ok(s) if (400..500).contains(&s) => Ok(()),
        Ok(s) => fail(format!(
            "expected a malformed request (RST_STREAM PROTOCOL_ERROR or 4xx), got :status {s}"
        )),
        Err(c) => fail(format!(
            "expected RST_STREAM PROTOCOL_ERROR (0x1), got RST_STREAM {c:#x}"
        )),
    }
}

async fn client_initial_max_data(cx: &Ctx) -> CaseResult {
    let mut settings = super::flow::h2_client_wt_settings(1 << 20);
    for p in settings.iter_mut() {
        if p.0 == h2ids::WT_INITIAL_MAX_DATA {
            p.1 = 10;
        }
    }
    let mut c = super::h2_raw(cx, &settings).await?;
    let sid = super::h2_raw_session(cx, &mut c, "/echo", &[], &[]).await?;
    let fm = cx.fin_mapping();
    let data = pattern(25);
    c.data(sid, &h2_stream(fm, 0, true, &data), false)
        .await
        .ctx("WT_STREAM")?;
    let mut view = H2View::default();
    super::h2_raw_until(
        cx,
        &mut c,
        sid,
        &mut view,
        "the first 10 echoed bytes",
        |v| v.stream(0).data.len() >= 10 || v.stream(0).fin,
    )
    .await?;
    let _ = cx
        .quiet(
            Duration::from_millis(200),
            super::h2_raw_until(cx, &mut c, sid, &mut view, "more", |v| {
                v.stream(0).data.len() > 10 || v.stream(0).fin
            }),
        )
        .await;
    ensure(
        view.stream(0).data.len() == 10 && !view.stream(0).fin,
        || {
            format!("expected the server to stop at 10 bytes (our SETTINGS_WT_INITIAL_MAX_DATA), got {} (fin {}){}", view.stream(0).data.len(), view.stream(0).fin, end_note(&view))
        },
    )?;
    c.data(sid, &capsule(CapsuleType::WT_MAX_DATA.0, &vi(100)), false)
        .await
        .ctx("WT_MAX_DATA")?;
    super::h2_raw_until(
        cx,
        &mut c,
        sid,
        &mut view,
        "the rest after WT_MAX_DATA",
        |v| v.stream(0).fin,
    )
    .await?;
    ensure(view.stream(0).data == data, || {
        format!(
            "expected the full 25-byte echo after WT_MAX_DATA(100), got {} bytes{}",
            view.stream(0).data.len(),
            end_note(&view)
        )
    })?;
    let _ = h2_credit;
    Ok(())
}
