//! §8.1 Handshake.

use std::time::Duration;

use wt_core::codes::CapsuleType;
use wt_core::ConnectError;

use super::super::ctx::{ensure, fail, skip, CaseResult, Context, Ctx, Dl, Tp};
use super::super::ours;
use super::super::peer::h2::{frames, goaway_code, hpack_encode, ids as h2ids, RawH2Server};
use super::super::peer::h3::{codes, ids, Closed};
use super::{capsule, case, h2_echo, h3_echo, Applies, Case};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "HS-1",
            "handshake",
            "SETTINGS per §3.2, CONNECT answered 200, session usable",
            Applies::H3_L.or(Applies::H2),
            hs1
        ),
        case!(
            "HS-2",
            "handshake",
            "client sends no CONNECT when server SETTINGS/TP lack WT prerequisites",
            Applies::H3,
            hs2
        ),
        case!(
            "HS-3",
            "handshake",
            "CONNECT from a client without H3_DATAGRAM / datagram TP is malformed",
            Applies::H3,
            hs3
        ),
        case!(
            "HS-4",
            "handshake",
            "client closes H3_SETTINGS_ERROR on SETTINGS_WT_ENABLED=2",
            Applies::H3,
            hs4
        ),
        case!(
            "HS-5",
            "handshake",
            "SETTINGS_H3_DATAGRAM=2 closes with H3_SETTINGS_ERROR",
            Applies::H3,
            hs5
        ),
        case!(
            "HS-6",
            "handshake",
            "path not served: 405 (404 in legacy), client reports failure",
            Applies::BOTH.or(Applies::H3_LEGACY),
            hs6
        ),
        case!(
            "HS-7",
            "handshake",
            "origin not allowed: 403, no session",
            Applies::BOTH,
            hs7
        ),
        case!(
            "HS-8",
            "handshake",
            "wt-available-protocols \"a\", \"b\": server selects \"b\" (sf-string), client exposes b",
            Applies::BOTH,
            hs8
        ),
        case!(
            "HS-9",
            "handshake",
            "client rejects a wt-protocol it did not offer",
            Applies::H3.or(Applies::H2),
            hs9
        ),
        case!(
            "HS-10",
            "handshake",
            "stream, datagram, capsule sent before the 2xx are delivered after it",
            Applies::BOTH,
            hs10
        ),
        case!(
            "HS-11",
            "handshake",
            "WT stream arriving before its CONNECT is buffered, then attached",
            Applies::H3,
            hs11
        ),
        case!(
            "HS-12",
            "handshake",
            "Chrome-style draft-02 request accepted, REGISTER_DATAGRAM_NO_CONTEXT ignored",
            Applies::H3_LEGACY,
            hs12
        ),
        case!(
            "HS-13",
            "handshake",
            "client sends no CONNECT when H2 SETTINGS lack 0x2b60=1 or 0x8=1",
            Applies::H2,
            hs13
        ),
        case!(
            "HS-14",
            "handshake",
            "client: SETTINGS_WT_ENABLED=5 is a PROTOCOL_ERROR (GOAWAY 0x1)",
            Applies::H2,
            hs14
        ),
        case!(
            "HS-15",
            "handshake",
            "webtransport-init with a non-integer value: 4xx",
            Applies::H2,
            hs15
        ),
        case!(
            "HS-16",
            "handshake",
            "TLS 1.2 without extended master secret: CONNECT malformed",
            Applies::H2,
            hs16
        ),
        case!(
            "HS-17",
            "handshake",
            "GREASE capsules, reserved settings and frame types are ignored",
            Applies::BOTH,
            hs17
        ),
    ]
}

async fn hs1(cx: &Ctx) -> CaseResult {
    match cx.tp {
        Tp::H3 => {
            let mut conn = cx.h3_conn(cx.h3_options()).await?;
            let s = cx
                .within("the server's SETTINGS", conn.server_settings())
                .await?
                .ctx("server SETTINGS")?;
            let show = || format!("{:x?}", s.pairs());
            ensure(s.get(ids::ENABLE_CONNECT_PROTOCOL) == Some(1), || {
                format!(
                    "expected SETTINGS_ENABLE_CONNECT_PROTOCOL=1, got {}",
                    show()
                )
            })?;
            ensure(s.get(ids::H3_DATAGRAM) == Some(1), || {
                format!("expected SETTINGS_H3_DATAGRAM=1, got {}", show())
            })?;
            match cx.dl {
                Dl::Latest => ensure(s.get(ids::WT_ENABLED) == Some(1), || {
                    format!(
                        "expected SETTINGS_WT_ENABLED (0x2c7cf000)=1, got {}",
                        show()
                    )
                })?,
                Dl::Legacy => ensure(
                    s.get(ids::ENABLE_WEBTRANSPORT) == Some(1)
                        || s.get(ids::MAX_SESSIONS_D07).is_some_and(|v| v > 0),
                    || {
                        format!(
                            "expected 0x2b603742=1 or 0xc671706a>0 for browsers, got {}",
                            show()
                        )
                    },
                )?,
            }
            ensure(conn.peer_accepts_datagrams(), || {
                "expected the max_datagram_frame_size transport parameter > 0, got none".into()
            })?;
            let (_s, resp) = cx.h3_accept(&conn, "/echo", &[]).await?;
            ensure(resp.status() == 200, || {
                format!("expected :status 200, got {}", resp.status())
            })?;
            h3_echo(cx, &conn, 0, b"hello").await
        }
        Tp::H2 => {
            let s = cx.h2_settings().await?;
            ensure(s.get(h2ids::ENABLE_CONNECT_PROTOCOL) == Some(1), || {
                format!(
                    "expected SETTINGS_ENABLE_CONNECT_PROTOCOL=1, got {:x?}",
                    s.0
                )
            })?;
            ensure(s.get(h2ids::WT_ENABLED) == Some(1), || {
                format!("expected SETTINGS_WT_ENABLED (0x2b60)=1, got {:x?}", s.0)
            })?;
            let (_c, mut sess) = cx.h2_session("/echo").await?;
            ensure(sess.status == 200, || {
                format!("expected :status 200, got {}", sess.status)
            })?;
            h2_echo(cx, &mut sess, 0, b"hello").await
        }
    }
}

/// Runs our client against a raw HTTP/3 server advertising `settings` (and the datagram TP
/// or not); passes if the client sends no request stream and its connect fails.
async fn client_refuses_h3(
    cx: &Ctx,
    settings: &[(u64, u64)],
    datagram_tp: bool,
    what: &str,
) -> Result<(ConnectError, Closed), super::super::ctx::Verdict> {
    let (server, client, req) = super::our_client_vs_raw(cx, datagram_tp)?;
    let mut connect = tokio::spawn(async move {
        use wt_core::Connector;
        client.connect(&req).await.map(|_| ())
    });
    let conn = cx
        .within("the client's connection", server.accept(settings))
        .await??;
    let outcome = tokio::select! {
        r = conn.next_request() => {
            if let Ok((_, f)) = r {
                return fail(format!("{what}: expected no CONNECT, but the client sent a request ({:?})", f.get(":protocol")));
            }
            None
        }
        r = &mut connect => Some(r),
    };
    let result = match outcome {
        Some(r) => r,
        None => cx.within("the client's connect to fail", connect).await?,
    }
    .ctx("client task")?;
    match result {
        Ok(()) => fail(format!(
            "{what}: expected the client to refuse the server, it established a session"
        )),
        Err(e) => {
            let closed = cx
                .within("the client to close the connection", conn.closed())
                .await
                .unwrap_or(Closed::Other("still open".into()));
            Ok((e, closed))
        }
    }
}

async fn hs2(cx: &Ctx) -> CaseResult {
    cx.embedded()?;
    let full = [
        (ids::QPACK_MAX_TABLE_CAPACITY, 0),
        (ids::ENABLE_CONNECT_PROTOCOL, 1),
        (ids::H3_DATAGRAM, 1),
        (ids::WT_ENABLED, 1),
    ];
    let variants: [(&str, u64, bool); 4] = [
        ("no SETTINGS_H3_DATAGRAM", ids::H3_DATAGRAM, true),
        (
            "no SETTINGS_ENABLE_CONNECT_PROTOCOL",
            ids::ENABLE_CONNECT_PROTOCOL,
            true,
        ),
        ("no SETTINGS_WT_ENABLED", ids::WT_ENABLED, true),
        ("no max_datagram_frame_size", 0, false),
    ];
    for (what, omit, tp) in variants {
        let settings: Vec<(u64, u64)> = full.iter().copied().filter(|(i, _)| *i != omit).collect();
        let (_err, closed) = client_refuses_h3(cx, &settings, tp, what).await?;
        // Closing with WT_REQUIREMENTS_NOT_MET is optional; any other application code is wrong.
        if let Some(code) = closed.app_code() {
            ensure(
                code == codes::WT_REQUIREMENTS_NOT_MET || code == codes::H3_NO_ERROR,
                || {
                    format!("{what}: the client closed with {closed}, expected WT_REQUIREMENTS_NOT_MET or H3_NO_ERROR")
                },
            )?;
        }
    }
    Ok(())
}

async fn hs3(cx: &Ctx) -> CaseResult {
    // (a) no SETTINGS_H3_DATAGRAM in our SETTINGS; (b) no max_datagram_frame_size TP.
    for (what, settings, tp) in [
        (
            "without SETTINGS_H3_DATAGRAM",
            vec![(ids::QPACK_MAX_TABLE_CAPACITY, 0), (ids::WT_ENABLED, 1)],
            true,
        ),
        ("without max_datagram_frame_size", cx.h3_settings(), false),
    ] {
        let mut opts = cx.h3_options();
        opts.settings = settings;
        opts.datagrams = tp;
        let mut conn = cx.h3_conn(opts).await?;
        cx.within("the server's SETTINGS", conn.server_settings())
            .await??;
        let mut s = cx.h3_request(&conn, "/echo", &[]).await?;
        match cx.within("the server's answer", s.response()).await? {
            Ok(f) => {
                return fail(format!(
                    "client {what}: expected the CONNECT stream reset with H3_MESSAGE_ERROR, got :status {}",
                    f.status()
                ))
            }
            Err(super::super::peer::PeerError::Reset(c)) if c == codes::H3_MESSAGE_ERROR => {}
            Err(e) => {
                return fail(format!(
                    "client {what}: expected the CONNECT stream reset with H3_MESSAGE_ERROR (0x10e), got {e}"
                ))
            }
        }
    }
    Ok(())
}

async fn hs4(cx: &Ctx) -> CaseResult {
    cx.embedded()?;
    let (server, client, req) = super::our_client_vs_raw(cx, true)?;
    let connect = tokio::spawn(async move {
        use wt_core::Connector;
        client.connect(&req).await.map(|_| ())
    });
    let conn = cx
        .within(
            "the client's connection",
            server.accept(&[
                (ids::ENABLE_CONNECT_PROTOCOL, 1),
                (ids::H3_DATAGRAM, 1),
                (ids::WT_ENABLED, 2),
            ]),
        )
        .await??;
    let closed = cx
        .within("the client to close the connection", conn.closed())
        .await?;
    let r = cx
        .within("the client's connect", connect)
        .await?
        .ctx("client task")?;
    ensure(r.is_err(), || {
        "expected connect to fail, it succeeded".into()
    })?;
    ensure(closed.app_code() == Some(codes::H3_SETTINGS_ERROR), || {
        format!("expected the client to close with H3_SETTINGS_ERROR (0x109), got {closed}")
    })
}

async fn hs5(cx: &Ctx) -> CaseResult {
    // Server side: our SETTINGS carry H3_DATAGRAM=2.
    let mut opts = cx.h3_options();
    for p in opts.settings.iter_mut() {
        if p.0 == ids::H3_DATAGRAM {
            p.1 = 2;
        }
    }
    let conn = cx.h3_conn(opts).await?;
    expect_close(
        cx,
        &conn.closed().await,
        codes::H3_SETTINGS_ERROR,
        "the server",
    )?;
    // Client side (embedded only): the server's SETTINGS carry H3_DATAGRAM=2.
    if cx.target.embedded.is_some() {
        let (server, client, req) = super::our_client_vs_raw(cx, true)?;
        let connect = tokio::spawn(async move {
            use wt_core::Connector;
            client.connect(&req).await.map(|_| ())
        });
        let conn = cx
            .within(
                "the client's connection",
                server.accept(&[
                    (ids::ENABLE_CONNECT_PROTOCOL, 1),
                    (ids::H3_DATAGRAM, 2),
                    (ids::WT_ENABLED, 1),
                ]),
            )
            .await??;
        let closed = cx.within("the client to close", conn.closed()).await?;
        let _ = cx.within("the client's connect", connect).await?;
        expect_close(cx, &closed, codes::H3_SETTINGS_ERROR, "our client")?;
    }
    Ok(())
}

fn expect_close(_cx: &Ctx, closed: &Closed, code: u64, who: &str) -> CaseResult {
    ensure(closed.app_code() == Some(code), || {
        format!(
            "expected {who} to close with {}, got {closed}",
            super::code_name(code)
        )
    })
}

async fn hs6(cx: &Ctx) -> CaseResult {
    let expected: &[u16] = match cx.dl {
        Dl::Latest => &[405],
        Dl::Legacy => &[404, 405],
    };
    let status = match cx.tp {
        Tp::H3 => {
            let mut conn = cx.h3_conn(cx.h3_options()).await?;
            cx.within("the server's SETTINGS", conn.server_settings())
                .await??;
            let mut s = cx.h3_request(&conn, "/no-such-resource", &[]).await?;
            cx.within("the response", s.response()).await??.status()
        }
        Tp::H2 => {
            let mut conn = cx.h2_conn().await?;
            cx.h2_open(&mut conn, "/no-such-resource", None, false)
                .await?
                .status
        }
    };
    ensure(expected.contains(&status), || {
        format!("expected :status {expected:?} for a path that is not served, got {status}")
    })?;
    // Our client must report the rejection as a failure with that status.
    let got = ours::connect_status(cx, "/no-such-resource").await?;
    ensure(got == Some(status), || {
        format!("expected our client to report rejection with status {status}, got {got:?}")
    })
}

async fn hs7(cx: &Ctx) -> CaseResult {
    let origin = [("origin", "https://evil.example")];
    let status = match cx.tp {
        Tp::H3 => {
            let mut conn = cx.h3_conn(cx.h3_options()).await?;
            cx.within("the server's SETTINGS", conn.server_settings())
                .await??;
            // h3_connect_fields adds our origin; replace it.
            let mut fields = cx.h3_connect_fields("/origin-check", &[]);
            fields.retain(|(n, _)| n != "origin");
            fields.push(("origin".into(), origin[0].1.into()));
            let refs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let mut s = cx.within("CONNECT", conn.request(&refs)).await??;
            cx.within("the response", s.response()).await??.status()
        }
        Tp::H2 => {
            let mut conn = cx.h2_conn().await?;
            let headers = vec![("origin".to_string(), origin[0].1.to_string())];
            cx.h2_open(&mut conn, "/origin-check", Some(headers), false)
                .await?
                .status
        }
    };
    ensure(status == 403, || {
        format!("expected 403 for origin https://evil.example on /origin-check, got {status}")
    })?;
    // The allowed origin is accepted.
    let allowed = [("origin", "https://allowed.example")];
    match cx.tp {
        Tp::H3 => {
            let mut conn = cx.h3_conn(cx.h3_options()).await?;
            cx.within("the server's SETTINGS", conn.server_settings())
                .await??;
            let mut fields = cx.h3_connect_fields("/origin-check", &[]);
            fields.retain(|(n, _)| n != "origin");
            fields.push(("origin".into(), allowed[0].1.into()));
            let refs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let mut s = cx.within("CONNECT", conn.request(&refs)).await??;
            let st = cx.within("the response", s.response()).await??.status();
            ensure(st == 200, || {
                format!("expected 200 for the allowed origin, got {st}")
            })
        }
        Tp::H2 => {
            let mut conn = cx.h2_conn().await?;
            let mut headers = cx.h2_headers();
            headers.retain(|(n, _)| n != "origin");
            headers.push(("origin".into(), allowed[0].1.into()));
            let st = cx
                .h2_open(&mut conn, "/origin-check", Some(headers), true)
                .await?
                .status;
            ensure(st == 200, || {
                format!("expected 200 for the allowed origin, got {st}")
            })
        }
    }
}

async fn hs8(cx: &Ctx) -> CaseResult {
    let offer = "\"a\", \"b\"";
    // Plain paths select the last offered protocol; /protocol/a selects "a".
    for (path, want) in [("/echo", "\"b\""), ("/protocol/a", "\"a\"")] {
        let selected = offered_select(cx, path, offer).await?;
        ensure(selected.as_deref() == Some(want), || {
            format!("{path}: expected wt-protocol: {want} (an sf-string among the offered), got {selected:?}")
        })?;
    }
    // Our client exposes the selection.
    let mut req = ours::request(cx, "/echo");
    req.protocols = vec!["a".into(), "b".into()];
    let info = match cx.tp {
        Tp::H3 => client_info(cx, ours::h3_client(cx)?, req).await?,
        Tp::H2 => client_info(cx, ours::h2_client(cx)?, req).await?,
    };
    ensure(info.protocol.as_deref() == Some("b"), || {
        format!(
            "expected our client to expose the selected protocol \"b\", got {:?}",
            info.protocol
        )
    })
}

async fn client_info<C: wt_core::Connector>(
    cx: &Ctx,
    client: C,
    req: wt_core::ConnectRequest,
) -> Result<wt_core::SessionInfo, super::super::ctx::Verdict> {
    use wt_core::Session;
    let sess = cx
        .within("our client's connect", client.connect(&req))
        .await?
        .ctx("our client: connect")?;
    let info = sess.info();
    let _ = sess.close(0, "");
    Ok(info)
}

/// CONNECT `path` offering `offer` in wt-available-protocols; the answered wt-protocol.
async fn offered_select(
    cx: &Ctx,
    path: &str,
    offer: &str,
) -> Result<Option<String>, super::super::ctx::Verdict> {
    Ok(match cx.tp {
        Tp::H3 => {
            let mut conn = cx.h3_conn(cx.h3_options()).await?;
            cx.within("the server's SETTINGS", conn.server_settings())
                .await??;
            let (_s, resp) = cx
                .h3_accept(&conn, path, &[("wt-available-protocols", offer)])
                .await?;
            resp.get("wt-protocol").map(str::to_owned)
        }
        Tp::H2 => {
            let mut conn = cx.h2_conn().await?;
            let mut h = cx.h2_headers();
            h.push(("wt-available-protocols".into(), offer.into()));
            let s = cx.h2_open(&mut conn, path, Some(h), true).await?;
            ensure(s.status == 200, || {
                format!("{path}: expected 200, got {}", s.status)
            })?;
            s.header("wt-protocol")
        }
    })
}

async fn hs9(cx: &Ctx) -> CaseResult {
    cx.embedded()?;
    match cx.tp {
        Tp::H3 => {
            let (server, client, mut req) = super::our_client_vs_raw(cx, true)?;
            req.protocols = vec!["a".into(), "b".into()];
            let connect = tokio::spawn(async move {
                use wt_core::Connector;
                client.connect(&req).await.map(|_| ())
            });
            let conn = cx
                .within(
                    "the client's connection",
                    server.accept(&[
                        (ids::QPACK_MAX_TABLE_CAPACITY, 0),
                        (ids::ENABLE_CONNECT_PROTOCOL, 1),
                        (ids::H3_DATAGRAM, 1),
                        (ids::WT_ENABLED, 1),
                    ]),
                )
                .await??;
            let (mut s, _f) = cx
                .within("the client's CONNECT", conn.next_request())
                .await??;
            s.write(&super::super::peer::h3::headers_frame(&[
                (":status", "200"),
                ("wt-protocol", "\"c\""),
            ]))
            .await?;
            let r = cx
                .within("the client's connect", connect)
                .await?
                .ctx("client task")?;
            match r {
                Err(ConnectError::UnexpectedProtocol(p)) if p == "c" => {}
                other => {
                    return fail(format!(
                        "expected connect to fail with UnexpectedProtocol(\"c\") (WT_ALPN_ERROR), got {other:?}"
                    ))
                }
            }
            // The session is closed with WT_ALPN_ERROR: the CONNECT stream is reset with it.
            let (_, end) = super::h3_session_end(cx, &mut s).await?;
            ensure(
                matches!(end, super::super::peer::ContentEvent::Reset(c) if c == codes::WT_ALPN_ERROR)
                    || matches!(end, super::super::peer::ContentEvent::Error(_)),
                || format!("expected the CONNECT stream reset with WT_ALPN_ERROR, got {end}"),
            )
        }
        Tp::H2 => {
            let server = RawH2Server::bind().await?;
            let client = ours::h2_client_pinned(cx, server.cert_hash)?;
            let mut req = ours::request_to(server.addr, "/echo");
            req.protocols = vec!["a".into(), "b".into()];
            let connect = tokio::spawn(async move {
                use wt_core::Connector;
                client.connect(&req).await.map(|_| ())
            });
            let mut io = cx
                .within(
                    "the client's connection",
                    server.accept(&[(h2ids::ENABLE_CONNECT_PROTOCOL, 1), (h2ids::WT_ENABLED, 1)]),
                )
                .await??;
            loop {
                let f = cx.within("the client's HEADERS", io.read_frame()).await??;
                let Some(f) = f else {
                    return fail("the client closed the connection without sending CONNECT");
                };
                if f.ty == frames::SETTINGS && f.flags & 1 == 0 {
                    io.write_frame(frames::SETTINGS, 1, 0, &[]).await?;
                }
                if f.ty == frames::HEADERS {
                    let block = hpack_encode(&[(":status", "200"), ("wt-protocol", "\"c\"")]);
                    io.write_frame(frames::HEADERS, 0x4, f.stream, &block)
                        .await?;
                    break;
                }
            }
            let r = cx
                .within("the client's connect", connect)
                .await?
                .ctx("client task")?;
            match r {
                Err(ConnectError::UnexpectedProtocol(p)) if p == "c" => Ok(()),
                other => fail(format!(
                    "expected connect to fail with UnexpectedProtocol(\"c\"), got {other:?}"
                )),
            }
        }
    }
}

async fn hs10(cx: &Ctx) -> CaseResult {
    match cx.tp {
        Tp::H3 => {
            let mut conn = cx.h3_conn(cx.h3_options()).await?;
            cx.within("the server's SETTINGS", conn.server_settings())
                .await??;
            let mut s = cx.h3_request(&conn, "/echo", &[]).await?;
            // Before the response: a bidi stream with data + FIN, and a datagram.
            let (mut send, mut recv) = conn.open_wt_bi(s.id).await?;
            send.write_all(b"early").await.ctx("early stream")?;
            let _ = send.finish();
            conn.send_datagram(s.id, b"early-dgram")?;
            let resp = cx.within("the response", s.response()).await??;
            ensure(resp.status() == 200, || {
                format!("expected 200, got {}", resp.status())
            })?;
            let (got, end) = cx
                .within(
                    "the echo of the early stream",
                    super::read_all(&mut recv, 1024),
                )
                .await?;
            ensure(got == b"early" && end == super::End::Fin, || {
                format!(
                    "expected the early stream echoed (\"early\" + FIN), got {} + {end}",
                    super::short(&got)
                )
            })?;
            // The early datagram may be lost (unreliable); if one arrives it must be the echo.
            let mut early_seen = false;
            if let Some(Ok(d)) = cx
                .quiet(Duration::from_millis(300), conn.recv_datagram_raw())
                .await
            {
                let expect = [super::vi(s.id / 4), b"early-dgram".to_vec()].concat();
                ensure(d[..] == expect[..], || {
                    format!(
                        "expected the early datagram echoed, got [{}]",
                        super::hex(&d)
                    )
                })?;
                early_seen = true;
            }
            let _ = early_seen;
            Ok(())
        }
        Tp::H2 => {
            let mut conn = cx.h2_conn().await?;
            let headers = cx.h2_headers();
            let refs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let mut pending = cx
                .within(
                    "sending CONNECT",
                    conn.connect_request(&cx.path("/echo"), "webtransport", &refs),
                )
                .await??;
            let fm = cx.fin_mapping();
            let mut early = super::h2_credit();
            early.extend(super::h2_stream(fm, 0, true, b"early"));
            early.extend(capsule(CapsuleType::DATAGRAM.0, b"early-dgram"));
            pending.send(early, false)?;
            let mut s = cx.within("the response", pending.response()).await??;
            ensure(s.status == 200, || {
                format!("expected 200, got {}", s.status)
            })?;
            let mut view = super::H2View::default();
            super::h2_until(
                cx,
                &mut s,
                &mut view,
                "the early stream and datagram echoed",
                |v| v.stream(0).fin && !v.datagrams.is_empty(),
            )
            .await?;
            let st = view.stream(0);
            ensure(st.fin && st.data == b"early", || {
                format!(
                    "expected WT stream 0 echoed \"early\" + FIN, got {} fin {}{}",
                    super::short(&st.data),
                    st.fin,
                    super::end_note(&view)
                )
            })?;
            ensure(
                view.datagrams
                    .first()
                    .is_some_and(|d| &d[..] == b"early-dgram"),
                || {
                    format!(
                        "expected the early DATAGRAM capsule echoed, got {:?}",
                        view.datagrams
                    )
                },
            )
        }
    }
}

async fn hs11(cx: &Ctx) -> CaseResult {
    let mut conn = cx.h3_conn(cx.h3_options()).await?;
    cx.within("the server's SETTINGS", conn.server_settings())
        .await??;
    // The WT stream takes client bidi ID 0; the CONNECT stream opened next gets ID 4.
    let (mut send, mut recv) = conn.open_wt_bi(4).await?;
    send.write_all(b"before-connect")
        .await
        .ctx("early stream")?;
    let _ = send.finish();
    let (s, _) = cx.h3_accept(&conn, "/echo", &[]).await?;
    ensure(s.id == 4, || {
        format!("expected the CONNECT stream to be stream 4, got {}", s.id)
    })?;
    let (got, end) = cx
        .within(
            "the echo of the stream that preceded its CONNECT",
            super::read_all(&mut recv, 1024),
        )
        .await?;
    ensure(got == b"before-connect" && end == super::End::Fin, || {
        format!(
            "expected the buffered stream echoed (\"before-connect\" + FIN), got {} + {end}",
            super::short(&got)
        )
    })
}

async fn hs12(cx: &Ctx) -> CaseResult {
    // Chrome's SETTINGS: draft-02 signal and only the draft-04 datagram setting.
    let mut opts = cx.h3_options();
    opts.settings = vec![
        (ids::QPACK_MAX_TABLE_CAPACITY, 0),
        (ids::H3_DATAGRAM_DRAFT04, 1),
        (ids::ENABLE_WEBTRANSPORT, 1),
    ];
    let mut conn = cx.h3_conn(opts).await?;
    cx.within("the server's SETTINGS", conn.server_settings())
        .await??;
    let (mut s, resp) = cx.h3_accept(&conn, "/echo", &[]).await?;
    ensure(
        resp.get("sec-webtransport-http3-draft") == Some("draft02"),
        || {
            format!(
                "expected sec-webtransport-http3-draft: draft02 in the response, got {:?}",
                resp.get("sec-webtransport-http3-draft")
            )
        },
    )?;
    // REGISTER_DATAGRAM_NO_CONTEXT (0xff37a2), value = varint 0xff7c00.
    s.send_capsule(0xff37a2, &super::vi(0xff7c00)).await?;
    h3_echo(cx, &conn, s.id, b"hello").await
}

/// Our H2 client against a raw server with `settings`: it must send no HEADERS.
async fn h2_client_refuses(
    cx: &Ctx,
    settings: &[(u16, u32)],
    what: &str,
) -> Result<Option<u32>, super::super::ctx::Verdict> {
    let server = RawH2Server::bind().await?;
    let client = ours::h2_client_pinned(cx, server.cert_hash)?;
    let req = ours::request_to(server.addr, "/echo");
    let connect = tokio::spawn(async move {
        use wt_core::Connector;
        client.connect(&req).await.map(|_| ())
    });
    let mut io = cx
        .within("the client's connection", server.accept(settings))
        .await??;
    let mut goaway = None;
    loop {
        let f = cx
            .within(&format!("{what}: the client to give up"), io.read_frame())
            .await?;
        match f {
            Ok(Some(f)) => {
                if f.ty == frames::SETTINGS && f.flags & 1 == 0 {
                    let _ = io.write_frame(frames::SETTINGS, 1, 0, &[]).await;
                }
                if f.ty == frames::HEADERS {
                    return fail(format!(
                        "{what}: expected no CONNECT, the client sent HEADERS"
                    ));
                }
                if f.ty == frames::GOAWAY {
                    goaway = goaway_code(&f.payload);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    let r = cx
        .within("the client's connect", connect)
        .await?
        .ctx("client task")?;
    ensure(r.is_err(), || {
        format!("{what}: expected connect to fail, it succeeded")
    })?;
    Ok(goaway)
}

async fn hs13(cx: &Ctx) -> CaseResult {
    cx.embedded()?;
    h2_client_refuses(
        cx,
        &[(h2ids::ENABLE_CONNECT_PROTOCOL, 1)],
        "no SETTINGS_WT_ENABLED",
    )
    .await?;
    h2_client_refuses(
        cx,
        &[(h2ids::WT_ENABLED, 1)],
        "no SETTINGS_ENABLE_CONNECT_PROTOCOL",
    )
    .await?;
    Ok(())
}

async fn hs14(cx: &Ctx) -> CaseResult {
    cx.embedded()?;
    let goaway = h2_client_refuses(
        cx,
        &[(h2ids::ENABLE_CONNECT_PROTOCOL, 1), (h2ids::WT_ENABLED, 5)],
        "SETTINGS_WT_ENABLED=5",
    )
    .await?;
    ensure(goaway == Some(1), || {
        format!("expected GOAWAY with PROTOCOL_ERROR (0x1), got {goaway:?}")
    })
}

async fn hs15(cx: &Ctx) -> CaseResult {
    let mut conn = cx.h2_conn().await?;
    let headers = vec![
        ("origin".to_string(), cx.origin()),
        (
            "webtransport-init".to_string(),
            "u=1000, bl=2000, br=x".to_string(),
        ),
    ];
    let s = cx.h2_open(&mut conn, "/echo", Some(headers), false).await?;
    ensure((400..500).contains(&s.status), || {
        format!(
            "expected a 4xx for webtransport-init br=x, got {}",
            s.status
        )
    })
}

async fn hs16(_cx: &Ctx) -> CaseResult {
    skip("rustls always negotiates extended master secret with TLS 1.2; the raw peer cannot offer TLS 1.2 without EMS")
}

async fn hs17(cx: &Ctx) -> CaseResult {
    let grease: Vec<u8> = [
        capsule(0x17, &[0xde, 0xad, 0xbe, 0xef]),
        capsule(0x40, &[]),
        capsule(0x29 * 7 + 0x17, &[0x55; 33]),
    ]
    .concat();
    match cx.tp {
        Tp::H3 => {
            let mut opts = cx.h3_options();
            // Reserved setting identifiers 0x1f*N+0x21.
            opts.settings.push((0x21, 7));
            opts.settings.push((0x1f * 5 + 0x21, 0));
            let mut conn = cx.h3_conn(opts).await?;
            cx.within("the server's SETTINGS", conn.server_settings())
                .await??;
            // A reserved frame type on the control stream.
            let mut reserved = super::vi(0x1f * 3 + 0x21);
            reserved.extend(super::vi(3));
            reserved.extend([1, 2, 3]);
            conn.send_control_raw(&reserved).await?;
            let (mut s, _) = cx.h3_accept(&conn, "/echo", &[]).await?;
            // Reserved frame type on the CONNECT stream, then GREASE capsules in DATA.
            s.write(&reserved).await?;
            s.send_data(&grease).await?;
            h3_echo(cx, &conn, s.id, b"after grease").await
        }
        Tp::H2 => {
            let (_c, mut s) = cx.h2_session("/echo").await?;
            s.send(grease)?;
            h2_echo(cx, &mut s, 0, b"after grease").await
        }
    }
}
