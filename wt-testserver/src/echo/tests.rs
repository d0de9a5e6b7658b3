//! The echo handler is plain data in, actions out: tested directly, without sockets.

use super::*;
use crate::codes::STREAM_LIMIT_EXCEEDED;

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
    assert_eq!(status("/unknown"), Some(http::StatusCode::NOT_FOUND));
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
