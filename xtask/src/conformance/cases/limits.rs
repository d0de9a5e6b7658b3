//! §8.7 Session limits.

use super::super::ctx::{ensure, fail, skip, CaseResult, Ctx, Dl};
use super::super::peer::h3::{codes, ids};
use super::super::peer::PeerError;
use super::{case, h3_echo, Applies, Case};

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
            "CONNECT beyond SETTINGS_MAX_CONCURRENT_STREAMS: REFUSED_STREAM",
            Applies::H2,
            ms3
        ),
        case!(
            "MS-4",
            "limits",
            "sessions sharing a connection have independent WT_MAX_DATA",
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

async fn ms3(_cx: &Ctx) -> CaseResult {
    skip("the h2 crate client never exceeds the server's SETTINGS_MAX_CONCURRENT_STREAMS")
}

async fn ms4(_cx: &Ctx) -> CaseResult {
    skip("needs a server with WT flow control and several sessions per connection (the embedded server allows one)")
}
