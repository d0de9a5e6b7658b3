//! Cases beyond §8 that apply to both transports (`X-n`): boundaries of the session-close
//! and reset-code rules, checked on the server's side through its observations.

use wt_core::codes::{wt_to_h3, CapsuleType};

use super::super::ctx::{ensure, CaseResult, Context, Ctx, Tp};
use super::super::peer::ContentEvent;
use super::{capsule, case, close_capsule, h2_stream, h2_until, vi, Applies, Case, H2View};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!("X-1", "close", "ref 2/3.10: a close reason of exactly 1024 UTF-8 bytes is accepted and delivered intact", Applies::BOTH, reason_1024),
        case!("X-2", "reset", "ref 1.6/4.4: reset code 0xffffffff (map = 0x52e5ac983162 on H3) reaches the app intact", Applies::BOTH, max_code),
    ]
}

async fn reason_1024(cx: &Ctx) -> CaseResult {
    let reason = "é".repeat(512);
    let cap = close_capsule(4000, reason.as_bytes());
    let tok = match cx.tp {
        Tp::H3 => {
            let (_conn, mut s, tok) = super::h3_session_tok(cx, "/echo").await?;
            s.send_data(&cap).await?;
            s.finish();
            let (_, end) = super::h3_session_end(cx, &mut s).await?;
            ensure(matches!(end, ContentEvent::Fin), || {
                format!("expected the server to accept the close and FIN its side, got {end}")
            })?;
            tok
        }
        Tp::H2 => {
            let (_c, mut s, tok) = super::h2_session_tok(cx, "/echo").await?;
            s.send_fin(cap)?;
            let mut view = H2View::default();
            h2_until(cx, &mut s, &mut view, "END_STREAM in reply", |_| false).await?;
            ensure(matches!(view.end, Some(ContentEvent::Fin)), || {
                format!(
                    "expected END_STREAM in reply to the close{}",
                    super::end_note(&view)
                )
            })?;
            tok
        }
    };
    super::expect_observed(
        cx,
        tok,
        None,
        &format!("terminate {tok} peer-closed 4000 {reason}"),
    )
    .await
}

async fn max_code(cx: &Ctx) -> CaseResult {
    let want = u32::MAX as u64;
    match cx.tp {
        Tp::H3 => {
            ensure(wt_to_h3(u32::MAX) == 0x52e5ac983162, || {
                "case error: map(u32::MAX)".into()
            })?;
            let (conn, s, tok) = super::h3_session_tok(cx, "/echo").await?;
            let (mut send, mut recv) = conn.open_wt_bi(s.id).await?;
            send.write_all(b"abc").await.ctx("write")?;
            let mut buf = [0u8; 3];
            cx.within("the echo before the reset", recv.read_exact(&mut buf))
                .await?
                .ctx("echo")?;
            let id: u64 = send.id().into();
            send.reset(quinn::VarInt::from_u64(wt_to_h3(u32::MAX)).ctx("code")?)
                .ctx("reset")?;
            super::expect_observed(
                cx,
                tok,
                Some(id),
                &format!("stream-closed {tok} {id} reset {want}"),
            )
            .await
        }
        Tp::H2 => {
            let (_c, mut s, tok) = super::h2_session_tok(cx, "/echo").await?;
            s.send(h2_stream(cx.fin_mapping(), 0, false, b"abc"))?;
            let mut view = H2View::default();
            h2_until(cx, &mut s, &mut view, "the echo", |v| {
                v.stream(0).data.len() >= 3
            })
            .await?;
            s.send(capsule(
                CapsuleType::WT_RESET_STREAM.0,
                &[vi(0), vi(want), vi(3)].concat(),
            ))?;
            super::expect_observed(
                cx,
                tok,
                Some(0),
                &format!("stream-closed {tok} 0 reset {want}"),
            )
            .await
        }
    }
}
