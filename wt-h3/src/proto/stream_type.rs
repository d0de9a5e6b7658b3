//! Stream preambles (unidirectional stream types, the WebTransport bidi signal) and the HTTP
//! datagram quarter-stream-ID prefix, plus the routing decisions the demultiplexer makes from
//! them.

use bytes::{Bytes, BytesMut};
use wt_core::codes::H3Code;
use wt_core::varint;
use wt_core::ProtocolError;

/// Unidirectional stream type: control stream.
pub const CONTROL: u64 = 0x00;
/// Unidirectional stream type: push stream.
pub const PUSH: u64 = 0x01;
/// Unidirectional stream type: QPACK encoder stream.
pub const QPACK_ENCODER: u64 = 0x02;
/// Unidirectional stream type: QPACK decoder stream.
pub const QPACK_DECODER: u64 = 0x03;
/// Unidirectional stream type: WebTransport stream.
pub const WT_UNI: u64 = 0x54;
/// First bytes of a WebTransport bidirectional stream.
pub const WT_BIDI: u64 = super::frame::WT_STREAM;

/// Largest quarter stream ID of an HTTP datagram (RFC 9297 §2.1).
pub const MAX_QUARTER_ID: u64 = (1 << 60) - 1;

/// Which end of the connection we are.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The QUIC client.
    Client,
    /// The QUIC server.
    Server,
}

/// What to do with an incoming unidirectional stream, decided from its type.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum UniRoute {
    /// The peer's control stream.
    Control,
    /// A QPACK encoder stream (drained; inserts are errors with table capacity 0).
    QpackEncoder,
    /// A QPACK decoder stream (drained).
    QpackDecoder,
    /// A WebTransport stream; the session ID follows.
    WebTransport,
    /// A protocol violation: close the connection with the code.
    ConnectionError(H3Code),
    /// Unknown or reserved type: STOP_SENDING with H3_STREAM_CREATION_ERROR and ignore.
    Ignore,
}

/// Routes a unidirectional stream by its type, as received by `role`.
pub fn route_uni(ty: u64, role: Role) -> UniRoute {
    match ty {
        CONTROL => UniRoute::Control,
        QPACK_ENCODER => UniRoute::QpackEncoder,
        QPACK_DECODER => UniRoute::QpackDecoder,
        WT_UNI => UniRoute::WebTransport,
        // We never send MAX_PUSH_ID, so any push stream is an ID error for a client; a server
        // never receives push streams.
        PUSH => UniRoute::ConnectionError(match role {
            Role::Client => H3Code::H3_ID_ERROR,
            Role::Server => H3Code::H3_STREAM_CREATION_ERROR,
        }),
        _ => UniRoute::Ignore,
    }
}

/// The peer's critical unidirectional streams seen so far: each of the control, QPACK
/// encoder and QPACK decoder streams may be opened once (RFC 9114 §6.2.1, RFC 9204 §4.2).
/// Lock-free so the per-stream tasks can share it.
#[derive(Debug, Default)]
pub struct CriticalStreams(std::sync::atomic::AtomicU8);

impl CriticalStreams {
    /// Records a peer stream routed as `route`. A second control, encoder or decoder stream is
    /// a connection error of type H3_STREAM_CREATION_ERROR; other routes are always fine.
    pub fn claim(&self, route: UniRoute) -> Result<(), ProtocolError> {
        let (bit, what) = match route {
            UniRoute::Control => (1u8, "second control stream"),
            UniRoute::QpackEncoder => (2, "second QPACK encoder stream"),
            UniRoute::QpackDecoder => (4, "second QPACK decoder stream"),
            _ => return Ok(()),
        };
        let seen = self.0.fetch_or(bit, std::sync::atomic::Ordering::SeqCst);
        if seen & bit != 0 {
            return Err(ProtocolError::h3(H3Code::H3_STREAM_CREATION_ERROR, what));
        }
        Ok(())
    }
}

/// What to do with an incoming bidirectional stream, decided from its first varint.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BidiRoute {
    /// A WebTransport stream; the session ID follows.
    WebTransport,
    /// A request stream: HTTP/3 frames (servers only).
    Request,
    /// A protocol violation: close the connection with the code.
    ConnectionError(H3Code),
}

/// Routes a bidirectional stream opened by the peer.
pub fn route_bidi(first: u64, role: Role) -> BidiRoute {
    match (first, role) {
        (WT_BIDI, _) => BidiRoute::WebTransport,
        (_, Role::Server) => BidiRoute::Request,
        (_, Role::Client) => BidiRoute::ConnectionError(H3Code::H3_STREAM_CREATION_ERROR),
    }
}

/// Checks that a session ID names a client-initiated bidirectional stream.
pub fn check_session_id(id: u64) -> Result<(), ProtocolError> {
    if id % 4 == 0 {
        Ok(())
    } else {
        Err(ProtocolError::h3(
            H3Code::H3_ID_ERROR,
            "session id is not a client-initiated bidirectional stream",
        ))
    }
}

/// The session ID and preamble length of a WebTransport bidirectional stream whose whole
/// preamble (`0x41 sid`, with a valid session ID) starts `buf`; `None` for anything else: a
/// request stream, a preamble cut short, a session ID that is not a client-initiated
/// bidirectional stream. A fast path only: [`route_bidi`] and [`check_session_id`] decide,
/// and report, every other case.
pub fn wt_bidi_preamble(buf: &[u8], role: Role) -> Option<(u64, usize)> {
    let (first, n) = varint::peek(buf).ok()?;
    if route_bidi(first, role) != BidiRoute::WebTransport {
        return None;
    }
    let (sid, m) = varint::peek(&buf[n..]).ok()?;
    check_session_id(sid).ok()?;
    Some((sid, n + m))
}

/// The preamble of a WebTransport stream we open: `0x41 sid` (bidi) or `0x54 sid` (uni).
pub fn wt_stream_header(bidi: bool, session_id: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(10);
    varint::encode_unchecked(if bidi { WT_BIDI } else { WT_UNI }, &mut out);
    varint::encode_unchecked(session_id, &mut out);
    out.freeze()
}

/// The preamble of a unidirectional stream of type `ty`.
pub fn uni_header(ty: u64) -> BytesMut {
    let mut out = BytesMut::with_capacity(8);
    varint::encode_unchecked(ty, &mut out);
    out
}

/// Encodes an HTTP datagram for `session_id` carrying `payload`.
pub fn encode_datagram(session_id: u64, payload: &[u8]) -> Bytes {
    datagram_with_prefix(&datagram_prefix(session_id), payload)
}

/// The quarter-stream-ID prefix of the HTTP datagrams of `session_id` (computed once per
/// session).
pub fn datagram_prefix(session_id: u64) -> Bytes {
    let q = session_id / 4;
    let mut out = BytesMut::with_capacity(varint::size(q));
    varint::encode_unchecked(q, &mut out);
    out.freeze()
}

/// An HTTP datagram from its [`datagram_prefix`] and payload (one allocation).
pub fn datagram_with_prefix(prefix: &[u8], payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(prefix.len() + payload.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(payload);
    out.freeze()
}

/// Bytes the quarter-stream-ID prefix of `session_id` takes.
pub fn datagram_overhead(session_id: u64) -> usize {
    varint::size(session_id / 4)
}

/// The length of the quarter-stream-ID prefix of `data` when it is a well-formed datagram of
/// `session_id`; `None` otherwise (another session's, or malformed: see
/// [`decode_datagram`]).
pub fn datagram_payload(data: &[u8], session_id: u64) -> Option<usize> {
    match varint::peek(data) {
        Ok((q, used)) if q <= MAX_QUARTER_ID && q.checked_mul(4) == Some(session_id) => Some(used),
        _ => None,
    }
}

/// Decodes an HTTP datagram into (session ID, payload). An empty datagram or a quarter
/// stream ID above 2^60 − 1 is H3_DATAGRAM_ERROR.
pub fn decode_datagram(mut data: Bytes) -> Result<(u64, Bytes), ProtocolError> {
    let (q, used) = varint::peek(&data).map_err(|_| {
        ProtocolError::h3(
            H3Code::H3_DATAGRAM_ERROR,
            "datagram without quarter stream ID",
        )
    })?;
    if q > MAX_QUARTER_ID {
        return Err(ProtocolError::h3(
            H3Code::H3_DATAGRAM_ERROR,
            "quarter stream ID out of range",
        ));
    }
    let payload = data.split_off(used);
    Ok((q * 4, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_bidi_preambles_only() {
        for role in [Role::Client, Role::Server] {
            for sid in [0u64, 4, 64, 1 << 20] {
                let h = wt_stream_header(true, sid);
                let mut with_payload = h.to_vec();
                with_payload.extend_from_slice(b"payload");
                assert_eq!(wt_bidi_preamble(&h, role), Some((sid, h.len())));
                assert_eq!(wt_bidi_preamble(&with_payload, role), Some((sid, h.len())));
                // Cut anywhere inside: not whole yet.
                for cut in 0..h.len() {
                    assert_eq!(wt_bidi_preamble(&h[..cut], role), None);
                }
            }
            // Session IDs that are not client-initiated bidirectional streams.
            for sid in [1u64, 2, 3, 5] {
                assert_eq!(wt_bidi_preamble(&wt_stream_header(true, sid), role), None);
            }
            // A request stream (HEADERS frame type 0x01) and a uni stream's type.
            assert_eq!(wt_bidi_preamble(&[0x01, 0x05, 0, 0], role), None);
            assert_eq!(wt_bidi_preamble(&wt_stream_header(false, 0), role), None);
            // A 0x41 signal spelled as a longer varint is still the signal.
            assert_eq!(wt_bidi_preamble(&[0x40, 0x41, 0x00], role), Some((0, 3)));
        }
    }

    #[test]
    fn critical_streams_once_each() {
        let c = CriticalStreams::default();
        for r in [
            UniRoute::Control,
            UniRoute::QpackEncoder,
            UniRoute::QpackDecoder,
        ] {
            assert!(c.claim(r).is_ok());
        }
        for r in [
            UniRoute::WebTransport,
            UniRoute::Ignore,
            UniRoute::WebTransport,
        ] {
            assert!(c.claim(r).is_ok());
        }
        for r in [
            UniRoute::QpackEncoder,
            UniRoute::QpackDecoder,
            UniRoute::Control,
        ] {
            let e = c.claim(r).unwrap_err();
            assert_eq!(
                e.code,
                wt_core::WireCode::H3(H3Code::H3_STREAM_CREATION_ERROR)
            );
        }
        // Independent per type.
        let c = CriticalStreams::default();
        assert!(c.claim(UniRoute::QpackDecoder).is_ok());
        assert!(c.claim(UniRoute::QpackEncoder).is_ok());
        assert!(c.claim(UniRoute::QpackDecoder).is_err());
    }

    #[test]
    fn wire_reference_examples() {
        assert_eq!(&wt_stream_header(true, 0)[..], &[0x40, 0x41, 0x00]);
        assert_eq!(&wt_stream_header(false, 4)[..], &[0x40, 0x54, 0x04]);
        assert_eq!(&encode_datagram(4, b"hi")[..], &[0x01, 0x68, 0x69]);
        assert_eq!(
            decode_datagram(Bytes::from_static(&[0x01, 0x68, 0x69])).unwrap(),
            (4, Bytes::from_static(b"hi"))
        );
        assert_eq!(datagram_overhead(0), 1);
        assert_eq!(datagram_overhead(4 * 64), 2);
    }

    #[test]
    fn datagram_payload_matches_one_session_only() {
        let d = encode_datagram(400, b"hi");
        assert_eq!(datagram_payload(&d, 400), Some(d.len() - 2));
        assert_eq!(datagram_payload(&d, 4), None);
        assert_eq!(datagram_payload(&[], 0), None);
        // A quarter ID whose session ID overflows is never ours.
        assert_eq!(datagram_payload(&[0xff; 9], 0), None);
    }

    #[test]
    fn bad_datagrams() {
        let code = |b: &'static [u8]| decode_datagram(Bytes::from_static(b)).unwrap_err().code;
        let dg = wt_core::WireCode::H3(H3Code::H3_DATAGRAM_ERROR);
        assert_eq!(code(&[]), dg);
        assert_eq!(code(&[0x40]), dg, "truncated varint");
        // 2^60 as an 8-byte varint.
        assert_eq!(code(&[0xd0, 0, 0, 0, 0, 0, 0, 0]), dg);
        // 2^60 - 1 is fine, with an empty payload.
        let (sid, p) = decode_datagram(Bytes::from_static(&[
            0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]))
        .unwrap();
        assert_eq!(sid, MAX_QUARTER_ID * 4);
        assert!(p.is_empty());
        // Quarter ID alone: an empty payload is legal.
        assert!(decode_datagram(Bytes::from_static(&[0x00])).is_ok());
    }

    #[test]
    fn routing() {
        assert_eq!(route_uni(0x00, Role::Server), UniRoute::Control);
        assert_eq!(route_uni(0x02, Role::Client), UniRoute::QpackEncoder);
        assert_eq!(route_uni(0x03, Role::Client), UniRoute::QpackDecoder);
        assert_eq!(route_uni(0x54, Role::Client), UniRoute::WebTransport);
        assert_eq!(
            route_uni(0x01, Role::Client),
            UniRoute::ConnectionError(H3Code::H3_ID_ERROR)
        );
        assert_eq!(
            route_uni(0x01, Role::Server),
            UniRoute::ConnectionError(H3Code::H3_STREAM_CREATION_ERROR)
        );
        assert_eq!(route_uni(0x21, Role::Server), UniRoute::Ignore);
        assert_eq!(route_uni(0x41, Role::Server), UniRoute::Ignore);
        assert_eq!(route_bidi(0x41, Role::Client), BidiRoute::WebTransport);
        assert_eq!(route_bidi(0x41, Role::Server), BidiRoute::WebTransport);
        assert_eq!(route_bidi(0x01, Role::Server), BidiRoute::Request);
        assert_eq!(
            route_bidi(0x01, Role::Client),
            BidiRoute::ConnectionError(H3Code::H3_STREAM_CREATION_ERROR)
        );
        assert!(check_session_id(0).is_ok());
        assert!(check_session_id(8).is_ok());
        for bad in [1, 2, 3, 5] {
            assert_eq!(
                check_session_id(bad).unwrap_err().code,
                wt_core::WireCode::H3(H3Code::H3_ID_ERROR)
            );
        }
    }
}
