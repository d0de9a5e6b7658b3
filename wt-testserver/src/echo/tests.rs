//! The echo handler is plain data in, actions out: tested directly, without sockets.

use super::*;
use crate::codes::STREAM_LIMIT_EXCEEDED;
use http::StatusCode;

fn request(path: &str, origin: Option<&str>) -> RequestInfo {
    RequestInfo {
        authority: "localhost".into(),
        path: path.into(),
        protocol: "webtransport-h3".into(),
        origin: origin.map(str::to_owned),
        protocols: Vec::new(),
        headers: http::HeaderMap::new(),
        dialect: wt_core::Dialect::H3Latest,
        peer_addr: "127.0.0.1:1".parse().unwrap(),
    }
}

fn start(path: &str) -> (EchoHandler, Vec<Action>) {
    EchoHandler::init(&EchoConfig::default(), &request(path, None)).expect("accepted")
}

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

const C0: StreamId = StreamId(0);
const C4: StreamId = StreamId(4);
const CU2: StreamId = StreamId(2);
const CU6: StreamId = StreamId(6);
const S1: StreamId = StreamId(1);
const SU3: StreamId = StreamId(3);
const SU7: StreamId = StreamId(7);
use StreamKind::{Bidi, Uni};

#[test]
fn init_routes() {
    let config = EchoConfig::default();
    let status = |p: &str| {
        EchoHandler::init(&config, &request(p, None))
            .err()
            .map(|r| r.status)
    };
    assert_eq!(status("/reject/404"), Some(http::StatusCode::NOT_FOUND));
    assert_eq!(
        status("/reject/503"),
        Some(http::StatusCode::SERVICE_UNAVAILABLE)
    );
    // H3Latest: an unknown path is 405 (404 on older dialects, see below).
    assert_eq!(
        status("/unknown"),
        Some(http::StatusCode::METHOD_NOT_ALLOWED)
    );
    assert_eq!(status("/open-uni/x"), Some(http::StatusCode::BAD_REQUEST));
    assert_eq!(start("/echo").1, vec![]);
    assert_eq!(start("/").1, vec![]);
    assert_eq!(
        start("/close/42/bye").1,
        vec![Action::CloseSession(42, "bye".into())]
    );
    assert_eq!(start("/drain").1, vec![Action::Drain]);
}

#[test]
fn origin_checks() {
    let config = EchoConfig::default();
    let check = |path: &str, origin: Option<&str>| {
        EchoHandler::check_origin(&config, &request(path, origin), origin)
    };
    assert!(check("/echo", None));
    assert!(check("/echo", Some("https://anything.example")));
    assert!(!check("/origin-check", None));
    assert!(!check("/origin-check", Some("https://evil.example")));
    assert!(check("/origin-check", Some("https://allowed.example")));

    let config = EchoConfig {
        allowed_origins: Some(vec!["https://a.example".into()]),
        ..EchoConfig::default()
    };
    let check = |origin: Option<&str>| {
        EchoHandler::check_origin(&config, &request("/echo", origin), origin)
    };
    assert!(check(Some("https://a.example")));
    assert!(!check(Some("https://b.example")));
    assert!(!check(None));
}

#[test]
fn bidi_echo_and_fin() {
    let (mut h, _) = start("/echo");
    assert_eq!(
        h.handle_stream(C0, Bidi, b(b"hello")),
        vec![Action::Send(C0, b(b"hello"))]
    );
    assert_eq!(
        h.handle_stream(C0, Bidi, b(b"WT-CMD drain\n")),
        vec![Action::Send(C0, b(b"WT-CMD drain\n"))],
        "commands only at offset 0"
    );
    assert_eq!(
        h.handle_stream_fin(C0, Bidi, Bytes::new()),
        vec![Action::CloseStream(C0)]
    );
    // FIN carrying data.
    assert_eq!(
        h.handle_stream_fin(C4, Bidi, b(b"last")),
        vec![Action::Send(C4, b(b"last")), Action::CloseStream(C4)]
    );
    assert!(h.bidi.is_empty(), "state is dropped at FIN");
}

#[test]
fn partial_prefix_is_held_then_released() {
    let (mut h, _) = start("/echo");
    assert_eq!(h.handle_stream(C0, Bidi, b(b"WT")), vec![]);
    assert_eq!(
        h.handle_stream(C0, Bidi, b(b"F!")),
        vec![Action::Send(C0, b(b"WTF!"))]
    );
    assert_eq!(h.handle_stream(C4, Bidi, b(b"WT-CM")), vec![]);
    assert_eq!(
        h.handle_stream_fin(C4, Bidi, Bytes::new()),
        vec![Action::Send(C4, b(b"WT-CM")), Action::CloseStream(C4)]
    );
}

#[test]
fn commands() {
    let (mut h, _) = start("/echo");
    assert_eq!(
        h.handle_stream(C0, Bidi, b(b"WT-CMD close 42 bye\n")),
        vec![Action::CloseSession(42, "bye".into())]
    );
    assert_eq!(
        h.handle_stream(C4, Bidi, b(b"WT-CMD drain\nrest")),
        vec![Action::Drain, Action::Send(C4, b(b"rest"))]
    );
    let c8 = StreamId(8);
    assert_eq!(
        h.handle_stream(c8, Bidi, b(b"WT-CMD reset 7\nignored")),
        vec![Action::ResetStream(c8, 7)]
    );
    assert_eq!(h.handle_stream(c8, Bidi, b(b"more")), vec![]);
    assert_eq!(
        h.handle_stream_fin(c8, Bidi, Bytes::new()),
        vec![],
        "no FIN after reset"
    );
    let c12 = StreamId(12);
    assert_eq!(
        h.handle_stream(c12, Bidi, b(b"WT-CMD stop 9\n")),
        vec![Action::StopSending(c12, 9)]
    );
    let c16 = StreamId(16);
    assert_eq!(
        h.handle_stream(c16, Bidi, b(b"WT-CMD open-uni 5\n")),
        vec![Action::OpenStream(Uni)]
    );
    assert_eq!(
        h.handle_stream_opened(Uni, SU3),
        vec![Action::SendFin(SU3, b(&[0, 1, 2, 3, 4]))]
    );
    let c20 = StreamId(20);
    assert_eq!(
        h.handle_stream(c20, Bidi, b(b"WT-CMD open-bidi 0\n")),
        vec![Action::OpenStream(Bidi)]
    );
    assert_eq!(
        h.handle_stream_opened(Bidi, S1),
        vec![Action::SendFin(S1, Bytes::new())]
    );
    // Data on a server-opened bidi stream is discarded.
    assert_eq!(h.handle_stream(S1, Bidi, b(b"WT-CMD drain\n")), vec![]);
    assert_eq!(h.handle_stream_fin(S1, Bidi, Bytes::new()), vec![]);
}

#[test]
fn bad_commands_reset_and_stop_the_stream() {
    let (mut h, _) = start("/echo");
    let refused = |id| {
        vec![
            Action::ResetStream(id, BAD_COMMAND),
            Action::StopSending(id, BAD_COMMAND),
        ]
    };
    assert_eq!(
        h.handle_stream(C0, Bidi, b(b"WT-CMD jump 3\n")),
        refused(C0)
    );
    assert_eq!(h.handle_stream(C0, Bidi, b(b"after")), vec![]);
    assert_eq!(h.handle_stream_fin(C0, Bidi, Bytes::new()), vec![]);
    assert_eq!(h.handle_stream(C4, Bidi, b(b"WT-CMD close 1")), vec![]);
    assert_eq!(h.handle_stream_fin(C4, Bidi, Bytes::new()), refused(C4));
    let c8 = StreamId(8);
    assert_eq!(h.handle_stream(c8, Bidi, b(b"WT-CMD panic\n")), refused(c8));
}

#[test]
fn panic_command_panics_when_enabled() {
    let config = EchoConfig {
        allow_panic_command: true,
        ..EchoConfig::default()
    };
    let (mut h, _) = EchoHandler::init(&config, &request("/echo", None)).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        h.handle_stream(C0, Bidi, b(b"WT-CMD panic\n"))
    }));
    assert!(r.is_err());
}

#[test]
fn uni_echo_collects_until_fin() {
    let (mut h, _) = start("/echo");
    assert_eq!(h.handle_stream(CU2, Uni, b(b"abc")), vec![]);
    assert_eq!(h.handle_stream(CU6, Uni, b(b"xyz")), vec![]);
    assert_eq!(h.buffered(), 6);
    assert_eq!(
        h.handle_stream_fin(CU2, Uni, b(b"def")),
        vec![Action::OpenStream(Uni)]
    );
    assert_eq!(
        h.handle_stream_opened(Uni, SU3),
        vec![Action::SendFin(SU3, b(b"abcdef"))]
    );
    assert_eq!(h.buffered(), 3);
    // A failed open drops the pending echo and its bytes.
    assert_eq!(
        h.handle_stream_fin(CU6, Uni, Bytes::new()),
        vec![Action::OpenStream(Uni)]
    );
    let err = ActionError::StreamClosed(SU7);
    assert_eq!(h.handle_action_failed(Action::OpenStream(Uni), err), vec![]);
    assert_eq!(h.buffered(), 0);
    // Uni commands are not interpreted.
    let cu10 = StreamId(10);
    assert_eq!(
        h.handle_stream_fin(cu10, Uni, b(b"WT-CMD drain\n")),
        vec![Action::OpenStream(Uni)]
    );
    assert_eq!(
        h.handle_stream_opened(Uni, SU7),
        vec![Action::SendFin(SU7, b(b"WT-CMD drain\n"))]
    );
}

#[test]
fn uni_echo_limits() {
    let config = EchoConfig {
        max_uni_echo: 4,
        max_uni_buffered: 6,
        ..EchoConfig::default()
    };
    let (mut h, _) = EchoHandler::init(&config, &request("/echo", None)).unwrap();
    assert_eq!(h.handle_stream(CU2, Uni, b(b"abc")), vec![]);
    assert_eq!(
        h.handle_stream(CU2, Uni, b(b"de")),
        vec![Action::StopSending(CU2, ECHO_TOO_LARGE)]
    );
    assert_eq!(h.buffered(), 0);
    assert_eq!(h.handle_stream(CU6, Uni, b(b"1234")), vec![]);
    let cu10 = StreamId(10);
    assert_eq!(
        h.handle_stream(cu10, Uni, b(b"567")),
        vec![Action::StopSending(cu10, ECHO_TOO_LARGE)],
        "session-wide cap"
    );
    // A peer reset releases the bytes.
    assert_eq!(h.handle_stream_closed(CU6, CloseReason::Reset(1)), vec![]);
    assert_eq!(h.buffered(), 0);
    let _ = STREAM_LIMIT_EXCEEDED;
}

#[test]
fn datagrams_echo() {
    let (mut h, _) = start("/echo");
    assert_eq!(
        h.handle_datagram(b(b"ping")),
        vec![Action::SendDatagram(b(b"ping"))]
    );
}

#[test]
fn open_paths_push_pattern() {
    let (mut h, actions) = start("/open-uni/70000");
    assert_eq!(actions, vec![Action::OpenStream(Uni)]);
    let push = h.handle_stream_opened(Uni, SU3);
    assert_eq!(push.len(), 2);
    let mut all = Vec::new();
    for (i, a) in push.iter().enumerate() {
        match a {
            Action::Send(id, d) if i == 0 => {
                assert_eq!(*id, SU3);
                all.extend_from_slice(d);
            }
            Action::SendFin(id, d) if i == 1 => {
                assert_eq!(*id, SU3);
                all.extend_from_slice(d);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(all.len(), 70000);
    assert!(all.iter().enumerate().all(|(i, &x)| x == i as u8));

    let (mut h, actions) = start("/open-bidi/65536");
    assert_eq!(actions, vec![Action::OpenStream(Bidi)]);
    assert_eq!(
        h.handle_stream_opened(Bidi, S1),
        vec![Action::SendFin(S1, Bytes::from_static(&PATTERN[..]))]
    );
    // An unexpected opened stream is just closed.
    assert_eq!(
        h.handle_stream_opened(Uni, SU3),
        vec![Action::CloseStream(SU3)]
    );
}

#[test]
fn reset_path_triggers_once() {
    let (mut h, _) = start("/reset/7");
    // A server-initiated or uni stream does not consume the trigger.
    assert_eq!(
        h.handle_stream_fin(CU2, Uni, b(b"u")),
        vec![Action::OpenStream(Uni)]
    );
    assert_eq!(
        h.handle_stream(C0, Bidi, b(b"WT-CMD drain\n")),
        vec![
            Action::Send(C0, b(b"WT-CMD drain\n")),
            Action::ResetStream(C0, 7)
        ],
        "the first stream is plain data, echoed, then reset"
    );
    assert_eq!(h.handle_stream(C0, Bidi, b(b"more")), vec![]);
    assert_eq!(h.handle_stream_fin(C0, Bidi, Bytes::new()), vec![]);
    assert_eq!(
        h.handle_stream(C4, Bidi, b(b"x")),
        vec![Action::Send(C4, b(b"x"))]
    );
    // A FIN-only first stream is reset without data.
    let (mut h, _) = start("/reset/8");
    assert_eq!(
        h.handle_stream_fin(C0, Bidi, Bytes::new()),
        vec![Action::ResetStream(C0, 8)]
    );
}

#[test]
fn stop_path_triggers_once() {
    let (mut h, _) = start("/stop/9");
    assert_eq!(
        h.handle_stream(C0, Bidi, b(b"x")),
        vec![Action::StopSending(C0, 9), Action::CloseStream(C0)]
    );
    assert_eq!(
        h.handle_stream(C4, Bidi, b(b"y")),
        vec![Action::Send(C4, b(b"y"))]
    );
    let (mut h, _) = start("/stop/10");
    assert_eq!(
        h.handle_stream(CU2, Uni, b(b"x")),
        vec![Action::StopSending(CU2, 10)]
    );
    assert_eq!(h.buffered(), 0);
}

#[test]
fn peer_stop_silences_the_echo() {
    let (mut h, _) = start("/echo");
    assert_eq!(
        h.handle_stream(C0, Bidi, b(b"a")),
        vec![Action::Send(C0, b(b"a"))]
    );
    assert_eq!(
        h.handle_stream_closed(C0, CloseReason::StopSending(3)),
        vec![]
    );
    assert_eq!(h.handle_stream(C0, Bidi, b(b"b")), vec![]);
    assert_eq!(h.handle_stream_fin(C0, Bidi, Bytes::new()), vec![]);
}

fn request_with(path: &str, dialect: wt_core::Dialect, protocols: &[&str]) -> RequestInfo {
    RequestInfo {
        dialect,
        protocols: protocols.iter().map(|p| p.to_string()).collect(),
        ..request(path, None)
    }
}

#[test]
fn unknown_paths_405_on_latest_dialects_404_before() {
    use wt_core::Dialect::*;
    let config = EchoConfig::default();
    let status = |p: &str, d| {
        EchoHandler::init(&config, &request_with(p, d, &[]))
            .err()
            .map(|r| r.status)
    };
    for d in [H3Latest, H2Latest] {
        assert_eq!(status("/nope", d), Some(StatusCode::METHOD_NOT_ALLOWED));
        assert_eq!(status("/echo/x", d), Some(StatusCode::METHOD_NOT_ALLOWED));
        assert_eq!(status("/reject/404", d), Some(StatusCode::NOT_FOUND));
        assert_eq!(status("/open-uni/x", d), Some(StatusCode::BAD_REQUEST));
    }
    for d in [H3Draft02, H3Draft07, H3Draft13, H2Legacy] {
        assert_eq!(status("/nope", d), Some(StatusCode::NOT_FOUND));
    }
}

#[test]
fn subprotocol_selection() {
    let config = EchoConfig::default();
    let init = |p: &str, offered: &[&str]| {
        let req = request_with(p, wt_core::Dialect::H3Latest, offered);
        EchoHandler::init(&config, &req).map(|(h, _)| {
            let opts = h.accept_options(&req);
            assert_eq!(opts.protocol.as_deref(), h.protocol());
            opts.protocol
        })
    };
    assert_eq!(init("/echo", &["a", "b"]), Ok(Some("b".into())));
    assert_eq!(init("/drain", &["a"]), Ok(Some("a".into())));
    assert_eq!(init("/echo", &[]), Ok(None));
    assert_eq!(init("/protocol/a", &["a", "b"]), Ok(Some("a".into())));
    assert_eq!(
        init("/protocol/x%20y", &["x y", "b"]),
        Ok(Some("x y".into()))
    );
    let rejected = |r: Result<Option<String>, Rejection>| r.err().map(|r| r.status);
    assert_eq!(
        rejected(init("/protocol/c", &["a", "b"])),
        Some(StatusCode::BAD_REQUEST)
    );
    assert_eq!(
        rejected(init("/protocol/a", &[])),
        Some(StatusCode::BAD_REQUEST)
    );

    // The selection can be asked for in-band.
    let req = request_with("/echo", wt_core::Dialect::H2Latest, &["a", "b"]);
    let (mut h, _) = EchoHandler::init(&config, &req).unwrap();
    assert_eq!(
        h.handle_stream_fin(C0, Bidi, b(b"WT-CMD protocol\nrest")),
        vec![
            Action::Send(C0, b(b"b\n")),
            Action::Send(C0, b(b"rest")),
            Action::CloseStream(C0)
        ]
    );
    let (mut h, _) = start("/echo");
    assert_eq!(
        h.handle_stream(C0, Bidi, b(b"WT-CMD protocol\n")),
        vec![Action::Send(C0, b(b"\n"))]
    );
}

#[test]
fn token_header_and_id_command() {
    let config = EchoConfig::default();
    let req = request("/echo", None);
    let (mut h, _) = EchoHandler::init(&config, &req).unwrap();
    let (h2, _) = EchoHandler::init(&config, &req).unwrap();
    assert_eq!((h.token(), h2.token()), (1, 2), "tokens count sessions");
    let opts = h.accept_options(&req);
    assert_eq!(
        opts.headers.get(TOKEN_HEADER).map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert_eq!(
        h.handle_stream_fin(C0, Bidi, b(b"WT-CMD id\n")),
        vec![Action::Send(C0, b(b"1\n")), Action::CloseStream(C0)]
    );
    // A query session is not observed: token 0, no header.
    let req = request("/observed/1", None);
    let (mut q, _) = EchoHandler::init(&config, &req).unwrap();
    assert_eq!(q.token(), 0);
    assert!(q.accept_options(&req).headers.get(TOKEN_HEADER).is_none());
    assert_eq!(
        q.handle_stream(C0, Bidi, b(b"WT-CMD id\n")),
        vec![Action::Send(C0, b(b"0\n"))]
    );
}

#[test]
fn peer_reset_is_mirrored_on_client_bidi_streams() {
    let (mut h, _) = start("/echo");
    assert_eq!(
        h.handle_stream(C0, Bidi, b(b"a")),
        vec![Action::Send(C0, b(b"a"))]
    );
    assert_eq!(
        h.handle_stream_closed(C0, CloseReason::Reset(7)),
        vec![Action::ResetStream(C0, 7)]
    );
    assert!(h.bidi.is_empty());
    // Reset before any data.
    assert_eq!(
        h.handle_stream_closed(C4, CloseReason::Reset(0)),
        vec![Action::ResetStream(C4, 0)]
    );
    // Not when the server's half is already ended (STOP_SENDING received, or reset).
    let c8 = StreamId(8);
    assert_eq!(
        h.handle_stream(c8, Bidi, b(b"b")),
        vec![Action::Send(c8, b(b"b"))]
    );
    assert_eq!(
        h.handle_stream_closed(c8, CloseReason::StopSending(3)),
        vec![]
    );
    assert_eq!(h.handle_stream_closed(c8, CloseReason::Reset(4)), vec![]);
    let c12 = StreamId(12);
    assert_eq!(
        h.handle_stream(c12, Bidi, b(b"WT-CMD reset 5\n")),
        vec![Action::ResetStream(c12, 5)]
    );
    assert_eq!(h.handle_stream_closed(c12, CloseReason::Reset(6)), vec![]);
    // Nor on unidirectional or server-opened streams.
    assert_eq!(h.handle_stream_closed(CU2, CloseReason::Reset(1)), vec![]);
    assert_eq!(h.handle_stream_closed(S1, CloseReason::Reset(1)), vec![]);
}

fn log_lines(config: &EchoConfig, token: u64) -> Vec<String> {
    let snap = config.observations.snapshot(token).expect("issued");
    snap.entries.into_iter().map(|e| e.line).collect()
}

#[test]
fn observations_are_recorded() {
    let config = EchoConfig::default();
    let (mut h, _) = EchoHandler::init(&config, &request("/echo", None)).unwrap();
    let t = h.token();
    h.handle_stream_closed(C0, CloseReason::Reset(7));
    h.handle_stream_closed(C4, CloseReason::StopSending(9));
    h.handle_stream_closed(SU3, CloseReason::Normal);
    h.terminate(TerminateReason::PeerClosed {
        code: 300,
        reason: "bye".into(),
    });
    assert_eq!(
        log_lines(&config, t),
        [
            format!("stream-closed {t} 0 reset 7"),
            format!("stream-closed {t} 4 stop 9"),
            format!("stream-closed {t} 3 normal"),
            format!("terminate {t} peer-closed 300 bye"),
        ]
    );
    // Dropped without terminate (a panic): `aborted`.
    let (h, _) = EchoHandler::init(&config, &request("/echo", None)).unwrap();
    let t = h.token();
    drop(h);
    assert_eq!(log_lines(&config, t), [format!("terminate {t} aborted")]);
    // A rejected request records nothing.
    let before = config.observations.len();
    assert!(EchoHandler::init(&config, &request("/reject/500", None)).is_err());
    assert_eq!(config.observations.len(), before);
}

fn query_reply(h: &mut EchoHandler, actions: Vec<Action>) -> Bytes {
    assert_eq!(actions, vec![Action::OpenStream(Uni)]);
    match &h.handle_stream_opened(Uni, SU3)[..] {
        [Action::SendFin(id, data)] if *id == SU3 => data.clone(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn observed_query_waits_for_the_end() {
    let config = EchoConfig::default();
    let (mut h, _) = EchoHandler::init(&config, &request("/echo", None)).unwrap();
    let t = h.token();
    let status = |p: &str| {
        EchoHandler::init(&config, &request(p, None))
            .err()
            .map(|r| r.status)
    };
    assert_eq!(status("/observed/0"), Some(StatusCode::NOT_FOUND));
    assert_eq!(status("/observed/99"), Some(StatusCode::NOT_FOUND));
    assert_eq!(status("/observed/x"), Some(StatusCode::BAD_REQUEST));

    // Session t is live: the query waits.
    let (mut q, actions) =
        EchoHandler::init(&config, &request(&format!("/observed/{t}"), None)).unwrap();
    let [Action::WakeOn { deadline, tag, .. }] = &actions[..] else {
        panic!("expected a wait, got {actions:?}");
    };
    assert_eq!(
        *deadline,
        tokio::time::Instant::now() + Duration::from_secs(5)
    );
    // A stream entry does not end a whole-session query...
    h.handle_stream_closed(C0, CloseReason::Reset(7));
    let again = q.handle_wake(*tag, Woken::Signalled);
    assert!(matches!(&again[..], [Action::WakeOn { .. }]), "{again:?}");
    // ... the end does.
    h.terminate(TerminateReason::PeerClosed {
        code: 0,
        reason: String::new(),
    });
    let actions = q.handle_wake(*tag, Woken::Signalled);
    let reply = query_reply(&mut q, actions);
    assert_eq!(
        reply,
        format!("stream-closed {t} 0 reset 7\nterminate {t} peer-closed 0 \n")
    );
    // Once ended, a query answers at once.
    let (mut q, actions) =
        EchoHandler::init(&config, &request(&format!("/observed/{t}"), None)).unwrap();
    assert_eq!(query_reply(&mut q, actions), reply);
    assert_eq!(q.handle_wake(QUERY_WAKE_TAG, Woken::Signalled), vec![]);
}

#[tokio::test(start_paused = true)]
async fn observed_stream_query_and_deadline() {
    let config = EchoConfig {
        observe_wait: Duration::from_millis(100),
        ..EchoConfig::default()
    };
    let (mut h, _) = EchoHandler::init(&config, &request("/echo", None)).unwrap();
    let t = h.token();
    let (mut q, actions) =
        EchoHandler::init(&config, &request(&format!("/observed/{t}/4"), None)).unwrap();
    assert!(matches!(&actions[..], [Action::WakeOn { .. }]));
    h.handle_stream_closed(C0, CloseReason::Normal);
    assert!(matches!(
        &q.handle_wake(QUERY_WAKE_TAG, Woken::Signalled)[..],
        [Action::WakeOn { .. }]
    ));
    h.handle_stream_closed(C4, CloseReason::StopSending(9));
    let actions = q.handle_wake(QUERY_WAKE_TAG, Woken::Signalled);
    assert_eq!(
        query_reply(&mut q, actions),
        format!("stream-closed {t} 0 normal\nstream-closed {t} 4 stop 9\n")
    );

    // The deadline answers with what is there (no terminate line).
    let (mut q, actions) =
        EchoHandler::init(&config, &request(&format!("/observed/{t}"), None)).unwrap();
    assert!(matches!(&actions[..], [Action::WakeOn { .. }]));
    let actions = q.handle_wake(QUERY_WAKE_TAG, Woken::DeadlineReached);
    assert_eq!(
        query_reply(&mut q, actions),
        format!("stream-closed {t} 0 normal\nstream-closed {t} 4 stop 9\n")
    );
    // Also when the clock says so, whatever woke the query.
    let (mut q, _) = EchoHandler::init(&config, &request(&format!("/observed/{t}"), None)).unwrap();
    tokio::time::advance(Duration::from_millis(100)).await;
    let actions = q.handle_wake(QUERY_WAKE_TAG, Woken::Signalled);
    assert_eq!(actions, vec![Action::OpenStream(Uni)]);
    drop(h);
}
