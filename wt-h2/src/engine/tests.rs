//! Engine tests over the [`Pair`] harness: two engines joined by byte buffers, no sockets.

use bytes::{Bytes, BytesMut};
use wt_core::capsule::{Capsule, CapsuleOptions};
use wt_core::codes::H2Code;
use wt_core::{SessionError, StreamError, WireCode};

use super::streams::{Dir, Side};
use super::*;

/// Two engines joined by in-memory pipes.
struct Pair {
    client: Engine,
    server: Engine,
    /// Deliver one byte per `recv_data` call (capsules split at every boundary).
    bytewise: bool,
    /// END_STREAM / RST_STREAM already delivered (client→server, server→client).
    ended: [bool; 2],
}

fn cfg(side: Side, opts: CapsuleOptions, local: FlowConfig, peer: FlowConfig) -> EngineConfig {
    let mut c = EngineConfig::new(side);
    c.options = opts;
    c.local = local;
    c.peer = peer;
    c
}

impl Pair {
    fn new() -> Self {
        Self::with(
            FlowConfig::default(),
            FlowConfig::default(),
            CapsuleOptions::default(),
        )
    }

    /// `client_grants`: what the client grants the server; `server_grants` likewise.
    fn with(client_grants: FlowConfig, server_grants: FlowConfig, opts: CapsuleOptions) -> Self {
        Pair {
            client: Engine::new(cfg(Side::Client, opts, client_grants, server_grants)),
            server: Engine::new(cfg(Side::Server, opts, server_grants, client_grants)),
            bytewise: false,
            ended: [false; 2],
        }
    }

    fn step(from: &mut Engine, to: &mut Engine, bytewise: bool, ended: &mut bool) -> bool {
        let mut moved = false;
        while let Some(b) = from.poll_transmit(usize::MAX).map(Segment::into_bytes) {
            moved = true;
            if bytewise {
                for byte in b.iter() {
                    to.recv_data(&[*byte]);
                }
            } else {
                // Whole output chunks as DATA frames: the zero-copy path.
                to.recv_bytes(b);
            }
        }
        if !*ended {
            if let Some(code) = from.wants_reset() {
                *ended = true;
                moved = true;
                to.recv_reset(code);
            } else if from.wants_end_stream() {
                *ended = true;
                moved = true;
                to.recv_end();
            }
        }
        moved
    }

    /// Moves bytes until both sides are quiet.
    fn drive(&mut self) {
        loop {
            let a = Self::step(
                &mut self.client,
                &mut self.server,
                self.bytewise,
                &mut self.ended[0],
            );
            let b = Self::step(
                &mut self.server,
                &mut self.client,
                self.bytewise,
                &mut self.ended[1],
            );
            if !a && !b {
                break;
            }
        }
        // Releases must never exceed what was received; just drain them.
        self.client.take_release();
        self.server.take_release();
    }
}

fn read_all(e: &mut Engine, id: u64) -> (Vec<u8>, Result<(), StreamError>) {
    let mut out = Vec::new();
    loop {
        match e.read(id, usize::MAX) {
            Ok(Read::Data(d)) => out.extend_from_slice(&d),
            Ok(Read::Fin) => return (out, Ok(())),
            Ok(Read::Blocked) => return (out, Err(StreamError::FlowControlBlocked)),
            Err(err) => return (out, Err(err)),
        }
    }
}

fn read_ok(e: &mut Engine, id: u64) -> Vec<u8> {
    let (d, r) = read_all(e, id);
    r.unwrap();
    d
}

fn write_all(e: &mut Engine, id: u64, data: &[u8]) {
    let b = Bytes::copy_from_slice(data);
    match e.write(id, &b).unwrap() {
        Write::Written(n) => assert_eq!(n, data.len()),
        Write::Blocked => panic!("blocked"),
    }
}

fn enc(caps: &[Capsule], opts: CapsuleOptions) -> Vec<u8> {
    let mut b = BytesMut::new();
    for c in caps {
        c.encode(&opts, &mut b).unwrap();
    }
    b.to_vec()
}

fn echo(pair: &mut Pair) {
    let id = pair.client.open(Dir::Bi).unwrap().unwrap();
    assert_eq!(id, 0);
    write_all(&mut pair.client, id, b"hello");
    pair.client.finish(id).unwrap();
    pair.drive();
    let sid = pair.server.accept(Dir::Bi).unwrap().unwrap();
    assert_eq!(sid, 0);
    let (data, end) = read_all(&mut pair.server, sid);
    assert_eq!(data, b"hello");
    end.unwrap();
    write_all(&mut pair.server, sid, b"hello");
    pair.server.finish(sid).unwrap();
    pair.drive();
    let (data, end) = read_all(&mut pair.client, id);
    assert_eq!(data, b"hello");
    end.unwrap();
    assert_eq!(pair.client.live_streams(), 0);
    assert_eq!(pair.server.live_streams(), 0);
}

#[test]
fn bidi_echo_both_dialects_and_bytewise() {
    for opts in [CapsuleOptions::default(), CapsuleOptions::LEGACY] {
        for bytewise in [false, true] {
            let mut pair = Pair::with(FlowConfig::default(), FlowConfig::default(), opts);
            pair.bytewise = bytewise;
            echo(&mut pair);
        }
    }
}

#[test]
fn server_opened_and_uni_streams() {
    let mut pair = Pair::new();
    pair.bytewise = true;
    let s = pair.server.open(Dir::Bi).unwrap().unwrap();
    assert_eq!(s, 1);
    let u = pair.server.open(Dir::Uni).unwrap().unwrap();
    assert_eq!(u, 3);
    let cu = pair.client.open(Dir::Uni).unwrap().unwrap();
    assert_eq!(cu, 2);
    write_all(&mut pair.server, s, b"bi");
    write_all(&mut pair.server, u, b"uni");
    pair.server.finish(u).unwrap();
    write_all(&mut pair.client, cu, b"up");
    pair.client.finish(cu).unwrap();
    pair.drive();
    assert_eq!(pair.client.accept(Dir::Bi).unwrap(), Some(1));
    assert_eq!(pair.client.accept(Dir::Uni).unwrap(), Some(3));
    assert_eq!(pair.server.accept(Dir::Uni).unwrap(), Some(2));
    assert_eq!(read_ok(&mut pair.client, 3), b"uni".to_vec());
    assert_eq!(read_ok(&mut pair.server, 2), b"up".to_vec());
    let (d, _) = read_all(&mut pair.client, 1);
    assert_eq!(d, b"bi");
    // A uni stream cannot be written by its receiver.
    assert!(pair.client.write(3, &Bytes::from_static(b"x")).is_err());
}

#[test]
fn fin_only_stream() {
    let mut pair = Pair::new();
    let id = pair.client.open(Dir::Uni).unwrap().unwrap();
    pair.client.finish(id).unwrap();
    pair.drive();
    let sid = pair.server.accept(Dir::Uni).unwrap().unwrap();
    assert_eq!(read_ok(&mut pair.server, sid), Vec::new());
}

#[test]
fn implicit_open_of_lower_ids() {
    // ST-10: the peer's first WT_STREAM is id 8: 0 and 4 are open too and count.
    let limits = FlowConfig {
        max_streams_bidi: 3,
        ..Default::default()
    };
    let mut e = Engine::new(cfg(Side::Server, CapsuleOptions::default(), limits, limits));
    let opts = CapsuleOptions::default();
    e.recv_data(&enc(
        &[Capsule::Stream {
            id: 8,
            fin: true,
            data: Bytes::from_static(b"x"),
        }],
        opts,
    ));
    assert!(e.error().is_none());
    assert_eq!(e.accept(Dir::Bi).unwrap(), Some(0));
    assert_eq!(e.accept(Dir::Bi).unwrap(), Some(4));
    assert_eq!(e.accept(Dir::Bi).unwrap(), Some(8));
    // Id 12 would be the fourth stream: beyond the limit.
    e.recv_data(&enc(
        &[Capsule::Stream {
            id: 12,
            fin: false,
            data: Bytes::from_static(b"x"),
        }],
        opts,
    ));
    assert_eq!(e.wants_reset(), Some(H2Code::FLOW_CONTROL_ERROR));
}

#[test]
fn session_and_stream_flow_control_block_and_unblock() {
    let small = FlowConfig {
        max_data: 1000,
        max_stream_data_uni: 600,
        max_stream_data_bidi_local: 600,
        max_stream_data_bidi_remote: 600,
        max_streams_uni: 2,
        max_streams_bidi: 2,
    };
    let mut pair = Pair::with(small, small, CapsuleOptions::default());
    let a = pair.client.open(Dir::Uni).unwrap().unwrap();
    let b = pair.client.open(Dir::Uni).unwrap().unwrap();
    assert_eq!(pair.client.open(Dir::Uni).unwrap(), None, "stream credit");
    let data = Bytes::from(vec![1u8; 1500]);
    assert_eq!(pair.client.write(a, &data).unwrap(), Write::Written(600));
    assert_eq!(pair.client.write(a, &data).unwrap(), Write::Blocked);
    assert_eq!(pair.client.write(b, &data).unwrap(), Write::Written(400));
    assert_eq!(pair.client.write(b, &data).unwrap(), Write::Blocked);
    pair.drive();
    let sa = pair.server.accept(Dir::Uni).unwrap().unwrap();
    let sb = pair.server.accept(Dir::Uni).unwrap().unwrap();
    // Reading 600 from a: session window half consumed → WT_MAX_DATA; stream a → MAX_STREAM_DATA.
    let (d, _) = read_all(&mut pair.server, sa);
    assert_eq!(d.len(), 600);
    pair.drive();
    let mut writable = Vec::new();
    while let Some(ev) = pair.client.poll_event() {
        if let Event::Writable(id) = ev {
            writable.push(id);
        }
    }
    assert!(writable.contains(&a) && writable.contains(&b));
    assert_eq!(pair.client.write(a, &data).unwrap(), Write::Written(600));
    let stats = pair.client.stats();
    assert_eq!(stats.peer_limits.unwrap().max_data, 1600);
    // Finishing and reading both streams re-grants stream credit.
    pair.client.finish(a).unwrap();
    pair.client.finish(b).unwrap();
    pair.drive();
    read_all(&mut pair.server, sa).1.unwrap();
    let (d, r) = read_all(&mut pair.server, sb);
    assert_eq!(d.len(), 400);
    r.unwrap();
    pair.drive();
    assert!(pair.client.open(Dir::Uni).unwrap().is_some());
}

#[test]
fn blocked_capsules_sent_once() {
    let zero = FlowConfig::ZERO;
    let mut pair = Pair::with(FlowConfig::default(), zero, CapsuleOptions::default());
    // FC-7: nothing can be opened with zero credit.
    assert_eq!(pair.client.open(Dir::Bi).unwrap(), None);
    assert_eq!(pair.client.open(Dir::Bi).unwrap(), None);
    let out = pair.client.poll_transmit(usize::MAX).unwrap().into_bytes();
    assert_eq!(
        &out[..],
        enc(&[Capsule::StreamsBlockedBidi(0)], CapsuleOptions::default())
    );
    assert!(pair.client.poll_transmit(usize::MAX).is_none());
}

#[test]
fn zero_credit_then_capsules_grant() {
    // FC-7: all initial limits zero; credit arrives by capsules.
    let opts = CapsuleOptions::default();
    let mut c = Engine::new(cfg(
        Side::Client,
        opts,
        FlowConfig::default(),
        FlowConfig::ZERO,
    ));
    assert_eq!(c.open(Dir::Uni).unwrap(), None);
    c.recv_data(&enc(
        &[Capsule::MaxStreamsUni(1), Capsule::MaxData(10)],
        opts,
    ));
    let id = c.open(Dir::Uni).unwrap().unwrap();
    assert_eq!(
        c.write(id, &Bytes::from_static(b"abc")).unwrap(),
        Write::Blocked
    );
    c.recv_data(&enc(&[Capsule::MaxStreamData { id, max: 2 }], opts));
    assert_eq!(
        c.write(id, &Bytes::from_static(b"abc")).unwrap(),
        Write::Written(2)
    );
}

#[test]
fn hundred_thousand_sequential_streams_through_one_credit() {
    let one = FlowConfig {
        max_data: 64,
        max_stream_data_uni: 16,
        max_stream_data_bidi_local: 16,
        max_stream_data_bidi_remote: 16,
        max_streams_uni: 1,
        max_streams_bidi: 1,
    };
    let mut pair = Pair::with(one, one, CapsuleOptions::default());
    for i in 0..100_000u64 {
        let dir = if i % 2 == 0 { Dir::Bi } else { Dir::Uni };
        let id = pair.client.open(dir).unwrap().expect("credit re-granted");
        write_all(&mut pair.client, id, b"0123456789");
        pair.client.finish(id).unwrap();
        pair.drive();
        let sid = pair.server.accept(dir).unwrap().unwrap();
        assert_eq!(sid, id);
        assert_eq!(read_ok(&mut pair.server, sid), b"0123456789".to_vec());
        if dir == Dir::Bi {
            pair.server.finish(sid).unwrap();
            pair.drive();
            assert_eq!(read_ok(&mut pair.client, id), Vec::new());
        }
        pair.drive();
        assert_eq!(pair.server.live_streams(), 0);
        assert_eq!(pair.client.live_streams(), 0);
    }
    assert_eq!(pair.client.stats().bytes_sent, 1_000_000);
}

#[test]
fn large_transfer_through_small_windows() {
    let small = FlowConfig {
        max_data: 8 * 1024,
        max_stream_data_uni: 3 * 1024,
        max_stream_data_bidi_local: 3 * 1024,
        max_stream_data_bidi_remote: 3 * 1024,
        max_streams_uni: 4,
        max_streams_bidi: 4,
    };
    let mut pair = Pair::with(small, small, CapsuleOptions::default());
    let total = 4 << 20;
    let payload: Bytes = (0..total)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let id = pair.client.open(Dir::Uni).unwrap().unwrap();
    let mut sent = 0;
    let mut received = Vec::with_capacity(total);
    let mut sid = None;
    while received.len() < total {
        if sent < total {
            if let Write::Written(n) = pair.client.write(id, &payload.slice(sent..)).unwrap() {
                sent += n;
                if sent == total {
                    pair.client.finish(id).unwrap();
                }
            }
        }
        pair.drive();
        if sid.is_none() {
            sid = pair.server.accept(Dir::Uni).unwrap();
        }
        if let Some(sid) = sid {
            while let Ok(Read::Data(d)) = pair.server.read(sid, 1000) {
                received.extend_from_slice(&d);
            }
        }
        pair.drive();
    }
    assert_eq!(received, payload);
}

#[test]
fn stop_sending_answered_with_reset() {
    for opts in [CapsuleOptions::default(), CapsuleOptions::LEGACY] {
        let mut pair = Pair::with(FlowConfig::default(), FlowConfig::default(), opts);
        pair.bytewise = true;
        let id = pair.client.open(Dir::Bi).unwrap().unwrap();
        write_all(&mut pair.client, id, b"abc");
        pair.drive();
        let sid = pair.server.accept(Dir::Bi).unwrap().unwrap();
        pair.server.stop(sid, 9).unwrap();
        pair.drive();
        // RS-7: the client answered with WT_RESET_STREAM(id, 9, 3), its writer sees Stopped(9).
        assert!(matches!(
            pair.client.write(id, &Bytes::from_static(b"x")),
            Err(StreamError::Stopped(Some(9)))
        ));
        assert!(matches!(pair.client.stopped(id), Some(Ok(Some(9)))));
        assert!(pair.client.error().is_none() && pair.server.error().is_none());
        // The server's send half still works.
        write_all(&mut pair.server, sid, b"back");
        pair.server.finish(sid).unwrap();
        pair.drive();
        assert_eq!(read_ok(&mut pair.client, id), b"back".to_vec());
        pair.drive();
        assert_eq!(pair.server.live_streams(), 0, "{opts:?}");
        assert_eq!(pair.client.live_streams(), 0);
    }
}

#[test]
fn reset_delivers_reliable_data_then_code() {
    let mut pair = Pair::new();
    let id = pair.client.open(Dir::Uni).unwrap().unwrap();
    write_all(&mut pair.client, id, b"12345");
    pair.client.reset(id, 7).unwrap();
    pair.drive();
    let sid = pair.server.accept(Dir::Uni).unwrap().unwrap();
    let (d, r) = read_all(&mut pair.server, sid);
    assert_eq!(d, b"12345");
    assert!(matches!(r, Err(StreamError::Reset(Some(7)))));
    assert_eq!(pair.server.live_streams(), 0);
    // Legacy: two-field reset, buffered data dropped.
    let mut pair = Pair::with(
        FlowConfig::default(),
        FlowConfig::default(),
        CapsuleOptions::LEGACY,
    );
    let id = pair.client.open(Dir::Uni).unwrap().unwrap();
    write_all(&mut pair.client, id, b"12345");
    pair.client.reset(id, 7).unwrap();
    pair.drive();
    let sid = pair.server.accept(Dir::Uni).unwrap().unwrap();
    let (d, r) = read_all(&mut pair.server, sid);
    assert!(d.is_empty());
    assert!(matches!(r, Err(StreamError::Reset(Some(7)))));
}

#[test]
fn datagrams_drain_close() {
    let mut pair = Pair::new();
    pair.bytewise = true;
    pair.client
        .send_datagram(Bytes::from_static(b"ping"))
        .unwrap();
    assert!(matches!(
        pair.client
            .send_datagram(Bytes::from(vec![0; MAX_DATAGRAM_SIZE + 1])),
        Err(SessionError::DatagramTooLarge { .. })
    ));
    pair.server.drain().unwrap();
    pair.drive();
    assert_eq!(pair.server.recv_datagram().unwrap().unwrap(), &b"ping"[..]);
    assert!(pair.client.is_draining());
    // Datagrams don't use WT credit.
    assert_eq!(pair.client.stats().peer_limits.unwrap().max_data, 16 << 20);
    let id = pair.client.open(Dir::Bi).unwrap().unwrap();
    write_all(&mut pair.client, id, b"x");
    pair.drive();
    pair.server.close(300, "bye").unwrap();
    pair.drive();
    assert!(matches!(
        pair.client.error(),
        Some(SessionError::ClosedByPeer { code: 300, reason }) if reason == "bye"
    ));
    assert!(matches!(
        pair.server.error(),
        Some(SessionError::ClosedLocally { code: 300, .. })
    ));
    assert!(pair.server.peer_ended(), "client replied with END_STREAM");
    assert!(matches!(
        pair.client.read(id, 10),
        Err(StreamError::SessionGone(_))
    ));
    assert!(matches!(
        pair.client.close(1, &"x".repeat(1025)),
        Err(SessionError::ReasonTooLong(1025))
    ));
}

#[test]
fn clean_end_stream_is_close_zero() {
    let mut e = Engine::new(EngineConfig::new(Side::Client));
    e.recv_end();
    assert!(matches!(
        e.error(),
        Some(SessionError::ClosedByPeer { code: 0, reason }) if reason.is_empty()
    ));
    assert!(e.wants_end_stream());
    let mut e = Engine::new(EngineConfig::new(Side::Client));
    e.recv_reset(H2Code::CANCEL);
    assert!(matches!(
        e.error(),
        Some(SessionError::ResetByPeer(WireCode::H2(H2Code::CANCEL)))
    ));
}

#[test]
fn padding_grease_and_empty_capsules_ignored() {
    let opts = CapsuleOptions::default();
    let mut e = Engine::new(EngineConfig::new(Side::Server));
    let mut bytes = vec![0x17, 0x03, 1, 2, 3, 0x40, 0x17, 0x00];
    bytes.extend(enc(
        &[
            Capsule::Padding {
                len: 3,
                zeroed: true,
            },
            Capsule::Stream {
                id: 0,
                fin: false,
                data: Bytes::new(),
            },
        ],
        opts,
    ));
    bytes.extend_from_slice(&[0x99, 0x0b, 0x4d, 0x38, 0x02, 0x00, 0x01]);
    for b in &bytes {
        e.recv_data(&[*b]);
    }
    assert!(e.error().is_none());
}

/// Feeds `caps` to a fresh server engine (after `setup`) and returns the reset code.
fn violation(setup: impl FnOnce(&mut Engine), caps: &[Capsule], codes: ErrorCodes) -> H2Code {
    let mut c = EngineConfig::new(Side::Server);
    c.codes = codes;
    c.local = FlowConfig {
        max_data: 100,
        max_stream_data_uni: 50,
        max_stream_data_bidi_local: 50,
        max_stream_data_bidi_remote: 50,
        max_streams_uni: 2,
        max_streams_bidi: 2,
    };
    let mut e = Engine::new(c);
    setup(&mut e);
    let bytes = enc(caps, CapsuleOptions::default());
    for b in &bytes {
        e.recv_data(&[*b]);
    }
    match e.error() {
        Some(SessionError::Protocol(p)) => {
            assert_eq!(p.code, WireCode::H2(e.wants_reset().unwrap()));
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    e.wants_reset().unwrap()
}

fn data(id: u64, n: usize, fin: bool) -> Capsule {
    Capsule::Stream {
        id,
        fin,
        data: Bytes::from(vec![b'a'; n]),
    }
}

#[test]
fn every_violation_gets_its_code() {
    let codes = ErrorCodes {
        wt_error: H2Code(0x52),
        stream_state: H2Code(0x51),
        flow_control: H2Code(0x50),
    };
    let none = |_: &mut Engine| {};
    let fc = codes.flow_control;
    let st = codes.stream_state;
    let wt = codes.wt_error;
    type Case = (
        &'static str,
        Box<dyn FnOnce(&mut Engine)>,
        Vec<Capsule>,
        H2Code,
    );
    let cases: Vec<Case> = vec![
        (
            "stream credit",
            Box::new(none),
            vec![data(0, 51, false)],
            fc,
        ),
        (
            "session credit",
            Box::new(none),
            vec![data(0, 50, false), data(4, 50, false), data(2, 1, false)],
            fc,
        ),
        (
            "too many streams",
            Box::new(none),
            vec![data(8, 1, false)],
            fc,
        ),
        (
            "data after fin",
            Box::new(none),
            vec![data(0, 1, true), data(0, 1, false)],
            st,
        ),
        (
            "data after reset",
            Box::new(none),
            vec![
                Capsule::ResetStream {
                    id: 0,
                    code: 1,
                    reliable_size: Some(0),
                },
                data(0, 1, false),
            ],
            st,
        ),
        (
            "second reset",
            Box::new(none),
            vec![
                Capsule::ResetStream {
                    id: 0,
                    code: 1,
                    reliable_size: Some(0),
                },
                Capsule::ResetStream {
                    id: 0,
                    code: 1,
                    reliable_size: Some(0),
                },
            ],
            st,
        ),
        (
            "second stop",
            Box::new(none),
            vec![
                Capsule::StopSending { id: 0, code: 1 },
                Capsule::StopSending { id: 0, code: 1 },
            ],
            st,
        ),
        (
            "max stream data after stop",
            Box::new(none),
            vec![
                Capsule::StopSending { id: 0, code: 1 },
                Capsule::MaxStreamData { id: 0, max: 1000 },
            ],
            st,
        ),
        (
            "data on our uni stream",
            Box::new(|e: &mut Engine| {
                e.open(Dir::Uni).unwrap();
            }),
            vec![data(3, 1, false)],
            st,
        ),
        (
            "our id never opened",
            Box::new(none),
            vec![data(1, 1, false)],
            st,
        ),
        (
            "stop on peer uni",
            Box::new(none),
            vec![Capsule::StopSending { id: 2, code: 0 }],
            st,
        ),
        (
            "reset code above 32 bits",
            Box::new(none),
            vec![Capsule::ResetStream {
                id: 0,
                code: 1 << 32,
                reliable_size: Some(0),
            }],
            wt,
        ),
        (
            "stop code above 32 bits",
            Box::new(none),
            vec![Capsule::StopSending {
                id: 0,
                code: 1 << 32,
            }],
            wt,
        ),
        (
            "reliable size mismatch",
            Box::new(none),
            vec![
                data(0, 5, false),
                Capsule::ResetStream {
                    id: 0,
                    code: 7,
                    reliable_size: Some(4),
                },
            ],
            st,
        ),
        (
            "max data decrease",
            Box::new(none),
            vec![Capsule::MaxData(1)],
            fc,
        ),
        (
            "max streams decrease",
            Box::new(none),
            vec![Capsule::MaxStreamsBidi(10), Capsule::MaxStreamsBidi(9)],
            fc,
        ),
        (
            "max streams above 2^60",
            Box::new(none),
            vec![Capsule::MaxStreamsUni((1 << 60) + 1)],
            fc,
        ),
        (
            "streams blocked above 2^60",
            Box::new(none),
            vec![Capsule::StreamsBlockedUni((1 << 60) + 1)],
            fc,
        ),
        (
            "max stream data decrease",
            Box::new(|e: &mut Engine| {
                e.open(Dir::Uni).unwrap();
            }),
            vec![Capsule::MaxStreamData { id: 3, max: 1 }],
            fc,
        ),
        (
            "stream data blocked after close",
            Box::new(none),
            vec![
                data(0, 1, true),
                Capsule::StreamDataBlocked { id: 0, max: 50 },
            ],
            st,
        ),
    ];
    for (name, setup, caps, code) in cases {
        assert_eq!(violation(setup, &caps, codes), code, "{name}");
    }
    // Defaults: PROTOCOL_ERROR and FLOW_CONTROL_ERROR.
    assert_eq!(
        violation(none, &[data(0, 51, false)], ErrorCodes::default()),
        H2Code::FLOW_CONTROL_ERROR
    );
    assert_eq!(
        violation(
            none,
            &[data(0, 1, true), data(0, 1, true)],
            ErrorCodes::default()
        ),
        H2Code::PROTOCOL_ERROR
    );
}

#[test]
fn malformed_capsules() {
    let mut raw_cases: Vec<Vec<u8>> = vec![
        // PE-1: trailing byte.
        vec![0x99, 0x0b, 0x4d, 0x3d, 0x02, 0x05, 0x00],
        // WT_STREAM without id.
        vec![0x99, 0x0b, 0x4d, 0x3b, 0x00],
        // PE-3: huge declared length.
        vec![
            0x99, 0x0b, 0x4d, 0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
    ];
    // Bad close reasons get WT_ERROR (here 0x52).
    let bad_utf8 = vec![0x68, 0x43, 0x06, 0, 0, 0, 1, 0xff, 0xfe];
    for bytes in raw_cases.drain(..) {
        let mut e = Engine::new(EngineConfig::new(Side::Client));
        e.recv_data(&bytes);
        assert_eq!(e.wants_reset(), Some(H2Code::PROTOCOL_ERROR), "{bytes:x?}");
    }
    let mut c = EngineConfig::new(Side::Client);
    c.codes.wt_error = H2Code(0x52);
    let mut e = Engine::new(c);
    e.recv_data(&bad_utf8);
    assert_eq!(e.wants_reset(), Some(H2Code(0x52)));
    // CL-10: truncated capsule at END_STREAM.
    let mut e = Engine::new(EngineConfig::new(Side::Client));
    e.recv_data(&[0x68, 0x43, 0x07, 0x00, 0x00]);
    assert!(e.error().is_none());
    e.recv_end();
    assert_eq!(e.wants_reset(), Some(H2Code::PROTOCOL_ERROR));
}

#[test]
fn receive_buffer_bounded_by_credit_and_release_accounting() {
    let opts = CapsuleOptions::default();
    let mut e = Engine::new(EngineConfig::new(Side::Server));
    let mut fed = 0usize;
    let mut bytes = enc(&[data(0, 1000, false), Capsule::MaxData(1 << 30)], opts);
    bytes.extend_from_slice(&[0x17, 0x01, 0x00]);
    fed += bytes.len();
    e.recv_data(&bytes);
    let released = e.take_release();
    assert_eq!(released, fed - 1000, "stream data is held until read");
    e.accept(Dir::Bi).unwrap().unwrap();
    let Read::Data(d) = e.read(0, 400).unwrap() else {
        panic!()
    };
    assert_eq!(d.len(), 400);
    assert_eq!(e.take_release(), 400);
    e.stop(0, 3).unwrap();
    assert_eq!(e.take_release(), 600, "stop discards and releases");
    // The stop went out.
    let out = e.poll_transmit(usize::MAX).unwrap().into_bytes();
    assert!(out.ends_with(&enc(&[Capsule::StopSending { id: 0, code: 3 }], opts)));
}

#[test]
fn stream_type_mapping_follows_dialect() {
    assert_eq!(stream_type(&CapsuleOptions::default(), true).0, 0x190B4D3B);
    assert_eq!(stream_type(&CapsuleOptions::LEGACY, true).0, 0x190B4D3C);
}

/// WT_STREAM capsules with `data` on stream `id` (client bidi), encoded.
fn stream_caps(opts: CapsuleOptions, parts: &[&[u8]]) -> Vec<u8> {
    let caps: Vec<Capsule> = parts
        .iter()
        .map(|p| Capsule::Stream {
            id: 0,
            fin: false,
            data: Bytes::copy_from_slice(p),
        })
        .collect();
    enc(&caps, opts)
}

fn server_engine() -> Engine {
    Engine::new(cfg(
        Side::Server,
        CapsuleOptions::default(),
        FlowConfig::default(),
        FlowConfig::default(),
    ))
}

#[test]
fn whole_capsules_in_a_frame_are_not_copied() {
    let opts = CapsuleOptions::default();
    let mut wire = enc(&[Capsule::Datagram(Bytes::from_static(b"dgram"))], opts);
    // A GREASE capsule in the middle is skipped on the fast path too.
    wire.extend_from_slice(&[0x17, 3, 1, 2, 3]);
    wire.extend(stream_caps(opts, &[b"hello", b" world"]));
    let frame = Bytes::from(wire);
    let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    let mut e = server_engine();
    e.recv_bytes(frame.clone());
    assert!(e.rx.is_empty(), "nothing buffered");
    let d = e.recv_datagram().unwrap().unwrap();
    assert_eq!(d, &b"dgram"[..]);
    assert!(
        range.contains(&(d.as_ptr() as usize)),
        "datagram is a slice of the frame"
    );
    assert_eq!(e.accept(Dir::Bi).unwrap(), Some(0));
    let Read::Data(a) = e.read(0, usize::MAX).unwrap() else {
        panic!("no data")
    };
    assert_eq!(a, &b"hello"[..]);
    assert!(
        range.contains(&(a.as_ptr() as usize)),
        "stream data is a slice of the frame"
    );
    assert_eq!(read_all(&mut e, 0).0, b" world");
    // Everything not held by the stream was released; the stream data after reading.
    assert_eq!(e.take_release(), frame.len());
}

#[test]
fn capsules_split_across_frames_decode_at_every_cut() {
    let opts = CapsuleOptions::default();
    let mut wire = stream_caps(opts, &[b"first", b"second"]);
    wire.extend_from_slice(&[0x17, 3, 1, 2, 3]); // GREASE
    wire.extend(enc(&[Capsule::Datagram(Bytes::from_static(b"d"))], opts));
    wire.extend(stream_caps(opts, &[&[9u8; 300]]));
    let mut want = b"firstsecond".to_vec();
    want.extend_from_slice(&[9u8; 300]);
    for cut1 in 0..wire.len() {
        for cut2 in [cut1, (cut1 + 7).min(wire.len()), wire.len()] {
            let mut e = server_engine();
            for part in [&wire[..cut1], &wire[cut1..cut2], &wire[cut2..]] {
                e.recv_bytes(Bytes::copy_from_slice(part));
            }
            assert!(e.error().is_none(), "cut {cut1}/{cut2}");
            assert_eq!(read_all(&mut e, 0).0, want, "cut {cut1}/{cut2}");
            assert_eq!(e.recv_datagram().unwrap().unwrap(), &b"d"[..]);
            assert!(e.rx.is_empty());
            assert_eq!(e.take_release(), wire.len(), "cut {cut1}/{cut2}");
        }
    }
}

#[test]
fn violation_on_the_fast_path_releases_the_rest() {
    let opts = CapsuleOptions::default();
    // WT_MAX_DATA decreasing after an increase is a flow-control error.
    let mut wire = enc(&[Capsule::MaxData(1 << 30), Capsule::MaxData(1)], opts);
    wire.extend(stream_caps(opts, &[b"ignored"]));
    let n = wire.len();
    let mut e = server_engine();
    e.recv_bytes(Bytes::from(wire));
    assert!(e.error().is_some());
    assert_eq!(e.wants_reset(), Some(H2Code::FLOW_CONTROL_ERROR));
    assert_eq!(e.take_release(), n);
}

#[test]
fn write_slice_copies_only_the_accepted_prefix() {
    let mut pair = Pair::new();
    let id = pair.client.open(Dir::Bi).unwrap().unwrap();
    let small = [1u8; 100];
    let big = vec![2u8; 5000];
    assert_eq!(
        pair.client.write_slice(id, &small).unwrap(),
        Write::Written(100)
    );
    assert_eq!(
        pair.client.write_slice(id, &big).unwrap(),
        Write::Written(5000)
    );
    pair.drive();
    assert_eq!(pair.server.accept(Dir::Bi).unwrap(), Some(id));
    let got = read_all(&mut pair.server, id).0;
    assert_eq!(&got[..100], &small[..]);
    assert_eq!(&got[100..], &big[..]);
}

// ------------------------------------------------------------ stream-id parity (legacy peers)

/// A legacy-dialect pair with the given numbering on each side.
fn parity_pair(client: StreamIdParity, server: StreamIdParity) -> Pair {
    let opts = CapsuleOptions::LEGACY;
    let mut c = cfg(
        Side::Client,
        opts,
        FlowConfig::default(),
        FlowConfig::default(),
    );
    c.parity = client;
    let mut s = cfg(
        Side::Server,
        opts,
        FlowConfig::default(),
        FlowConfig::default(),
    );
    s.parity = server;
    Pair {
        client: Engine::new(c),
        server: Engine::new(s),
        bytewise: false,
        ended: [false; 2],
    }
}

/// The opener and the other side of `pair`.
fn sides(pair: &mut Pair, client_opens: bool) -> (&mut Engine, &mut Engine) {
    if client_opens {
        (&mut pair.client, &mut pair.server)
    } else {
        (&mut pair.server, &mut pair.client)
    }
}

/// Bidi echo on a stream the client (or the server) opens; `want` is its wire id.
fn echo_on(pair: &mut Pair, client_opens: bool, want: u64) {
    let (a, _) = sides(pair, client_opens);
    let id = a.open(Dir::Bi).unwrap().unwrap();
    assert_eq!(id, want);
    write_all(a, id, b"ping");
    a.finish(id).unwrap();
    pair.drive();
    let (_, b) = sides(pair, client_opens);
    assert_eq!(b.accept(Dir::Bi).unwrap(), Some(want));
    assert_eq!(read_ok(b, want), b"ping".to_vec());
    write_all(b, want, b"pong");
    b.finish(want).unwrap();
    pair.drive();
    let (a, _) = sides(pair, client_opens);
    assert_eq!(read_ok(a, want), b"pong".to_vec());
}

#[test]
fn swapped_parity_bidi_echo_both_ways() {
    // Our swapped client against an auto-detecting server, and against a swapped one.
    for server in [StreamIdParity::AutoDetect, StreamIdParity::Swapped] {
        for bytewise in [false, true] {
            let mut pair = parity_pair(StreamIdParity::Swapped, server);
            pair.bytewise = bytewise;
            echo_on(&mut pair, true, 1);
            echo_on(&mut pair, false, 0);
            echo_on(&mut pair, true, 5);
            echo_on(&mut pair, false, 4);
            assert!(pair.client.error().is_none() && pair.server.error().is_none());
            assert_eq!(pair.client.live_streams(), 0);
            assert_eq!(pair.server.live_streams(), 0);
        }
    }
}

#[test]
fn swapped_parity_uni_both_ways() {
    let mut pair = parity_pair(StreamIdParity::Swapped, StreamIdParity::AutoDetect);
    let cu = pair.client.open(Dir::Uni).unwrap().unwrap();
    assert_eq!(cu, 3);
    write_all(&mut pair.client, cu, b"up");
    pair.client.finish(cu).unwrap();
    pair.drive();
    assert_eq!(pair.server.accept(Dir::Uni).unwrap(), Some(3));
    assert_eq!(read_ok(&mut pair.server, 3), b"up".to_vec());
    // The server answers on a uni stream of its own: 2 in the swapped numbering.
    let su = pair.server.open(Dir::Uni).unwrap().unwrap();
    assert_eq!(su, 2);
    write_all(&mut pair.server, su, b"down");
    pair.server.finish(su).unwrap();
    pair.drive();
    assert_eq!(pair.client.accept(Dir::Uni).unwrap(), Some(2));
    assert_eq!(read_ok(&mut pair.client, 2), b"down".to_vec());
    // Neither side may write on the other's uni stream.
    assert!(pair.client.write(2, &Bytes::from_static(b"x")).is_err());
    assert!(pair.server.write(3, &Bytes::from_static(b"x")).is_err());
    assert_eq!(pair.client.live_streams(), 0);
    assert_eq!(pair.server.live_streams(), 0);
}

#[test]
fn auto_detect_client_follows_a_swapped_server_that_opens_first() {
    let mut pair = parity_pair(StreamIdParity::AutoDetect, StreamIdParity::Swapped);
    echo_on(&mut pair, false, 0);
    echo_on(&mut pair, true, 1);
    let su = pair.server.open(Dir::Uni).unwrap().unwrap();
    assert_eq!(su, 2);
    pair.server.finish(su).unwrap();
    let cu = pair.client.open(Dir::Uni).unwrap().unwrap();
    assert_eq!(cu, 3);
    pair.client.finish(cu).unwrap();
    pair.drive();
    assert_eq!(pair.client.accept(Dir::Uni).unwrap(), Some(2));
    assert_eq!(pair.server.accept(Dir::Uni).unwrap(), Some(3));
    assert!(pair.client.error().is_none() && pair.server.error().is_none());
}

#[test]
fn auto_detect_keeps_draft_numbering_with_draft_peers() {
    // Legacy on both sides, both auto-detecting: the first opener fixes the draft numbering.
    for client_first in [true, false] {
        let mut pair = parity_pair(StreamIdParity::AutoDetect, StreamIdParity::AutoDetect);
        if client_first {
            echo_on(&mut pair, true, 0);
            echo_on(&mut pair, false, 1);
        } else {
            echo_on(&mut pair, false, 1);
            echo_on(&mut pair, true, 0);
        }
        assert!(pair.client.error().is_none() && pair.server.error().is_none());
    }
}

/// A legacy server engine with `parity` and small stream limits.
fn legacy_server(parity: StreamIdParity) -> Engine {
    let limits = FlowConfig {
        max_streams_bidi: 3,
        max_streams_uni: 3,
        ..Default::default()
    };
    let mut c = cfg(Side::Server, CapsuleOptions::LEGACY, limits, limits);
    c.parity = parity;
    Engine::new(c)
}

fn feed(e: &mut Engine, caps: &[Capsule]) {
    e.recv_data(&enc(caps, CapsuleOptions::LEGACY));
}

#[test]
fn implicit_open_with_swapped_numbering() {
    for parity in [StreamIdParity::AutoDetect, StreamIdParity::Swapped] {
        let mut e = legacy_server(parity);
        // The peer's first WT_STREAM is bidi 9: 1 and 5 are open too and count.
        feed(&mut e, &[data(9, 1, true)]);
        assert!(e.error().is_none(), "{parity:?}: {:?}", e.error());
        assert_eq!(e.accept(Dir::Bi).unwrap(), Some(1));
        assert_eq!(e.accept(Dir::Bi).unwrap(), Some(5));
        assert_eq!(e.accept(Dir::Bi).unwrap(), Some(9));
        assert_eq!(e.accept(Dir::Bi).unwrap(), None);
        // Uni 7 opens 3 and 7.
        feed(&mut e, &[data(7, 1, true)]);
        assert!(e.error().is_none());
        assert_eq!(e.accept(Dir::Uni).unwrap(), Some(3));
        assert_eq!(e.accept(Dir::Uni).unwrap(), Some(7));
        // Ours are even now.
        assert_eq!(e.open(Dir::Bi).unwrap(), Some(0));
        assert_eq!(e.open(Dir::Uni).unwrap(), Some(2));
        // Bidi 13 would be the fourth client stream: beyond the limit.
        feed(&mut e, &[data(13, 1, false)]);
        assert_eq!(e.wants_reset(), Some(H2Code::FLOW_CONTROL_ERROR));
    }
}

#[test]
fn swapped_numbering_still_checks_who_opened_what() {
    let st = ErrorCodes::default().stream_state;
    // A WT_STREAM on a bidi stream of ours that was never opened (4, server-side in the
    // swapped numbering) after the numbering was settled by the client's stream 1.
    let mut e = legacy_server(StreamIdParity::AutoDetect);
    feed(&mut e, &[data(1, 1, false), data(4, 1, false)]);
    assert_eq!(e.wants_reset(), Some(st));
    // Data on our own (swapped) uni stream 2.
    let mut e = legacy_server(StreamIdParity::Swapped);
    assert_eq!(e.open(Dir::Uni).unwrap(), Some(2));
    feed(&mut e, &[data(2, 1, false)]);
    assert_eq!(e.wants_reset(), Some(st));
}

#[test]
fn wrong_parity_is_a_violation_in_draft_numbering() {
    let st = ErrorCodes::default().stream_state;
    // Draft numbering, draft-15 or legacy capsules: the client's "stream 1" names a server
    // stream that was never opened.
    for opts in [CapsuleOptions::default(), CapsuleOptions::LEGACY] {
        let mut e = Engine::new(cfg(
            Side::Server,
            opts,
            FlowConfig::default(),
            FlowConfig::default(),
        ));
        e.recv_data(&enc(&[data(1, 1, false)], opts));
        assert_eq!(e.wants_reset(), Some(st), "{opts:?}");
        match e.error() {
            Some(SessionError::Protocol(p)) => {
                assert!(p.to_string().contains("never opened"), "{p}");
            }
            other => panic!("{other:?}"),
        }
    }
    // Auto-detection commits to the draft numbering once we opened a stream ourselves...
    let mut e = legacy_server(StreamIdParity::AutoDetect);
    assert_eq!(e.open(Dir::Bi).unwrap(), Some(1));
    feed(&mut e, &[data(5, 1, false)]);
    assert_eq!(e.wants_reset(), Some(st));
    // ...or once the peer's first stream carried the draft client bit.
    let mut e = legacy_server(StreamIdParity::AutoDetect);
    feed(&mut e, &[data(0, 1, false), data(1, 1, false)]);
    assert_eq!(e.wants_reset(), Some(st));
    // A client with draft numbering rejects a server's "stream 0".
    let mut c = cfg(
        Side::Client,
        CapsuleOptions::LEGACY,
        FlowConfig::default(),
        FlowConfig::default(),
    );
    c.parity = StreamIdParity::Draft;
    let mut e = Engine::new(c);
    feed(&mut e, &[data(0, 1, false)]);
    assert_eq!(e.wants_reset(), Some(st));
}

#[test]
fn auto_detect_settles_on_any_capsule_naming_a_stream() {
    // The client's first mention of a stream is a WT_MAX_STREAM_DATA for its bidi stream 1.
    let mut e = legacy_server(StreamIdParity::AutoDetect);
    feed(
        &mut e,
        &[Capsule::MaxStreamData {
            id: 1,
            max: 1 << 21,
        }],
    );
    assert!(e.error().is_none(), "{:?}", e.error());
    assert_eq!(e.accept(Dir::Bi).unwrap(), Some(1));
    assert_eq!(e.open(Dir::Bi).unwrap(), Some(0));
}

#[test]
fn fails_components_client_capsule_sequence() {
    // What @fails-components 1.6 sends as a client: every new stream (its uni streams too)
    // first announces its receive window, then carries data; ids with swapped parity.
    let mut c = cfg(
        Side::Server,
        CapsuleOptions::LEGACY,
        FlowConfig::default(),
        FlowConfig::default(),
    );
    c.parity = StreamIdParity::AutoDetect;
    c.legacy_quirks = true;
    let mut e = Engine::new(c);
    let window = 1 << 21;
    feed(
        &mut e,
        &[
            Capsule::MaxStreamData { id: 1, max: window },
            data(1, 3, true),
            Capsule::MaxStreamData { id: 3, max: window },
            data(3, 2, true),
        ],
    );
    assert!(e.error().is_none(), "{:?}", e.error());
    assert_eq!(e.accept(Dir::Bi).unwrap(), Some(1));
    assert_eq!(e.accept(Dir::Uni).unwrap(), Some(3));
    assert_eq!(read_ok(&mut e, 1), b"aaa".to_vec());
    assert_eq!(read_ok(&mut e, 3), b"aa".to_vec());
    assert_eq!(e.open(Dir::Uni).unwrap(), Some(2));
    // Without the legacy quirks the window announcement on its uni stream is a violation.
    let mut c = cfg(
        Side::Server,
        CapsuleOptions::LEGACY,
        FlowConfig::default(),
        FlowConfig::default(),
    );
    c.parity = StreamIdParity::Swapped;
    let mut e = Engine::new(c);
    feed(&mut e, &[Capsule::MaxStreamData { id: 3, max: window }]);
    assert_eq!(e.wants_reset(), Some(ErrorCodes::default().stream_state));
}

#[test]
fn large_writes_go_out_as_the_callers_memory() {
    let mut pair = Pair::new();
    let id = pair.client.open(Dir::Uni).unwrap().unwrap();
    // Above the size below which output segments are coalesced (copied).
    let big = Bytes::from(vec![7u8; 32 * 1024]);
    let range = big.as_ptr() as usize..big.as_ptr() as usize + big.len();
    assert_eq!(
        pair.client.write(id, &big).unwrap(),
        Write::Written(big.len())
    );
    let mut out = Vec::new();
    while let Some(seg) = pair.client.poll_transmit(usize::MAX) {
        out.extend(seg.parts().cloned());
    }
    assert!(
        out.iter().any(|b| range.contains(&(b.as_ptr() as usize))),
        "the payload goes out as the caller's own memory"
    );
    // A copying write of the same bytes never points into the caller's buffer.
    assert_eq!(
        pair.client.write_slice(id, &big).unwrap(),
        Write::Written(big.len())
    );
    while let Some(seg) = pair.client.poll_transmit(usize::MAX) {
        assert!(seg.parts().all(|b| !range.contains(&(b.as_ptr() as usize))));
    }
}

/// One WT_STREAM capsule on stream 0 carrying `len` pattern bytes, and the bytes.
fn big_stream_capsule(opts: CapsuleOptions, len: usize, fin: bool) -> (Vec<u8>, Vec<u8>) {
    let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let wire = enc(
        &[Capsule::Stream {
            id: 0,
            fin,
            data: Bytes::from(payload.clone()),
        }],
        opts,
    );
    (wire, payload)
}

#[test]
fn a_stream_capsule_longer_than_a_frame_reaches_the_stream_as_it_arrives() {
    let opts = CapsuleOptions::default();
    let (wire, payload) = big_stream_capsule(opts, 40_000, true);
    let mut e = server_engine();
    let mut got = Vec::new();
    for (i, frame) in wire.chunks(16_384).enumerate() {
        let frame = Bytes::copy_from_slice(frame);
        let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        e.recv_bytes(frame);
        assert!(e.error().is_none());
        assert!(e.rx.is_empty(), "frame {i}: nothing gathered");
        if i == 0 {
            assert_eq!(e.accept(Dir::Bi).unwrap(), Some(0));
        }
        // This frame's part of the payload is readable now, as a slice of the frame.
        match e.read(0, usize::MAX).unwrap() {
            Read::Data(d) => {
                assert!(range.contains(&(d.as_ptr() as usize)), "frame {i}: copied");
                got.extend_from_slice(&d);
            }
            other => panic!("frame {i}: {other:?}"),
        }
    }
    assert_eq!(got, payload);
    assert!(matches!(e.read(0, usize::MAX), Ok(Read::Fin)));
    assert_eq!(e.take_release(), wire.len());
}

#[test]
fn a_long_stream_capsule_with_fin_decodes_at_every_cut() {
    let opts = CapsuleOptions::default();
    let (mut wire, payload) = big_stream_capsule(opts, 2_000, true);
    // A datagram after it: decoding goes on after the partial capsule ends.
    wire.extend(enc(&[Capsule::Datagram(Bytes::from_static(b"d"))], opts));
    for bytewise in [false, true] {
        for cut1 in 0..40 {
            for cut2 in [cut1 + 1, 1_000, wire.len() - 5, wire.len()] {
                let cut2 = cut2.clamp(cut1, wire.len());
                let mut e = server_engine();
                for part in [&wire[..cut1], &wire[cut1..cut2], &wire[cut2..]] {
                    if bytewise {
                        e.recv_data(part);
                    } else {
                        e.recv_bytes(Bytes::copy_from_slice(part));
                    }
                }
                let at = format!("cut {cut1}/{cut2}, bytewise {bytewise}");
                assert!(e.error().is_none(), "{at}");
                assert_eq!(read_ok(&mut e, 0), payload, "{at}");
                assert_eq!(e.recv_datagram().unwrap().unwrap(), &b"d"[..], "{at}");
                assert!(e.rx.is_empty(), "{at}");
                assert_eq!(e.take_release(), wire.len(), "{at}");
            }
        }
    }
}

#[test]
fn end_stream_inside_a_long_stream_capsule_is_a_truncated_capsule() {
    let opts = CapsuleOptions::default();
    let (wire, _) = big_stream_capsule(opts, 40_000, false);
    let mut e = server_engine();
    e.recv_bytes(Bytes::copy_from_slice(&wire[..20_000]));
    assert!(e.error().is_none());
    e.recv_end();
    match e.error() {
        Some(SessionError::Protocol(p)) => {
            assert!(p.to_string().contains("ended inside a capsule"), "{p}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.wants_reset(), Some(H2Code::PROTOCOL_ERROR));
}

#[test]
fn a_long_stream_capsule_is_checked_against_the_limits_as_a_whole() {
    const LIMIT: u64 = 1_000;
    let small = FlowConfig {
        max_stream_data_bidi_remote: LIMIT,
        ..FlowConfig::default()
    };
    let engine = || {
        Engine::new(cfg(
            Side::Server,
            CapsuleOptions::default(),
            small,
            FlowConfig::default(),
        ))
    };
    // One byte over, in 300-byte frames (a partial capsule) or whole: refused at once,
    // before any of it reaches the stream.
    let (over, _) = big_stream_capsule(CapsuleOptions::default(), LIMIT as usize + 1, false);
    for size in [300, over.len()] {
        let mut e = engine();
        let mut frames = over.chunks(size);
        e.recv_bytes(Bytes::copy_from_slice(frames.next().unwrap()));
        assert!(e.error().is_some(), "frames of {size}: beyond the window");
        assert_eq!(e.wants_reset(), Some(H2Code::FLOW_CONTROL_ERROR));
        for f in frames {
            e.recv_bytes(Bytes::copy_from_slice(f));
        }
        // Everything was given back to HTTP/2 flow control.
        assert_eq!(e.take_release(), over.len(), "frames of {size}");
    }
    // Reading the pieces as they arrive grants more credit, which must not make the rest of
    // an over-long capsule fit: the peer sent it against the limit it knew.
    let mut e = engine();
    for f in over.chunks(300) {
        e.recv_bytes(Bytes::copy_from_slice(f));
        if e.error().is_none() {
            let _ = e.accept(Dir::Bi);
            let _ = read_all(&mut e, 0);
        }
    }
    assert_eq!(e.wants_reset(), Some(H2Code::FLOW_CONTROL_ERROR));
    // Exactly the limit, read piece by piece: accepted.
    let (fits, payload) = big_stream_capsule(CapsuleOptions::default(), LIMIT as usize, true);
    let mut e = engine();
    let mut got = Vec::new();
    for f in fits.chunks(300) {
        e.recv_bytes(Bytes::copy_from_slice(f));
        assert!(e.error().is_none());
        let _ = e.accept(Dir::Bi);
        got.extend(read_all(&mut e, 0).0);
    }
    assert_eq!(got, payload);
}

#[test]
fn a_cut_stream_capsule_too_short_for_its_stream_id_is_malformed() {
    // WT_STREAM, length 1, then a two-byte stream ID: the ID overruns the capsule.
    let ty = stream_type(&CapsuleOptions::default(), false).0;
    let mut wire = Vec::new();
    varint::encode(ty, &mut wire).unwrap();
    wire.extend_from_slice(&[1, 0x40, 0x05, 0xaa, 0xbb]);
    for cut in 0..wire.len() {
        let mut e = server_engine();
        e.recv_bytes(Bytes::copy_from_slice(&wire[..cut]));
        e.recv_bytes(Bytes::copy_from_slice(&wire[cut..]));
        assert!(e.error().is_some(), "cut {cut}");
        assert_eq!(e.wants_reset(), Some(H2Code::PROTOCOL_ERROR), "cut {cut}");
    }
    // Longer than the decoder accepts: refused although it would not need gathering.
    let mut e = server_engine();
    let max = e.cfg.max_capsule_len as u64;
    let mut wire = Vec::new();
    varint::encode(ty, &mut wire).unwrap();
    varint::encode(max + 1, &mut wire).unwrap();
    wire.extend_from_slice(&[0, 1, 2, 3]);
    e.recv_bytes(Bytes::from(wire));
    assert_eq!(e.wants_reset(), Some(H2Code::PROTOCOL_ERROR));
}
