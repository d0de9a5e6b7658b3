//! HTTP/3 frames (RFC 9114 §7): an incremental, sans-IO decoder and the encoders we need.
//!
//! The decoder follows the tokio-util contract: feed bytes into a `BytesMut`, call
//! [`FrameDecoder::decode`] until it returns `Ok(None)` ("need more"). DATA payloads are
//! delivered in pieces as they arrive ([`Frame::Data`]), so a large DATA frame is never
//! buffered whole. Unknown and reserved frame types are skipped *completely* (type, length and
//! payload), so they never desynchronise the stream. Every other frame is buffered up to a
//! per-type bound before it is parsed.
//!
//! The WebTransport bidirectional signal 0x41 has no length; the decoder reports it as
//! [`Frame::WtStream`] and stops, leaving the caller to decide (it is only legal as the very
//! first bytes of a stream, which the demultiplexer checks before using this decoder).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use wt_core::codes::H3Code;
use wt_core::varint;
use wt_core::ProtocolError;

use super::settings::Settings;

/// DATA frame type.
pub const DATA: u64 = 0x00;
/// HEADERS frame type.
pub const HEADERS: u64 = 0x01;
/// CANCEL_PUSH frame type.
pub const CANCEL_PUSH: u64 = 0x03;
/// SETTINGS frame type.
pub const SETTINGS: u64 = 0x04;
/// PUSH_PROMISE frame type.
pub const PUSH_PROMISE: u64 = 0x05;
/// GOAWAY frame type.
pub const GOAWAY: u64 = 0x07;
/// MAX_PUSH_ID frame type.
pub const MAX_PUSH_ID: u64 = 0x0d;
/// The WebTransport bidirectional stream signal (registered as frame type WT_STREAM).
pub const WT_STREAM: u64 = 0x41;

/// Largest HEADERS (or PUSH_PROMISE) payload we buffer.
pub const MAX_HEADERS_LEN: u64 = 64 * 1024;
/// Largest SETTINGS payload we buffer.
pub const MAX_SETTINGS_LEN: u64 = 16 * 1024;
/// Largest payload of the single-varint control frames (GOAWAY, MAX_PUSH_ID, CANCEL_PUSH).
pub const MAX_VARINT_FRAME_LEN: u64 = 8;

/// The kind of stream a decoder reads, which decides which frames are allowed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// A control stream: SETTINGS first, then GOAWAY / MAX_PUSH_ID / CANCEL_PUSH.
    Control,
    /// A request stream (either direction): HEADERS and DATA.
    Request,
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A piece of a DATA frame's payload (a frame may be delivered in several pieces; empty
    /// DATA frames are not reported).
    Data(Bytes),
    /// A complete HEADERS frame payload (an encoded field section).
    Headers(Bytes),
    /// SETTINGS.
    Settings(Settings),
    /// GOAWAY with its stream or push ID.
    Goaway(u64),
    /// MAX_PUSH_ID.
    MaxPushId(u64),
    /// CANCEL_PUSH.
    CancelPush(u64),
    /// The WebTransport stream signal 0x41 (no length follows; the decoder stops here).
    WtStream,
}

#[derive(Copy, Clone, Debug)]
enum State {
    Header,
    Data { remaining: u64 },
    Skip { remaining: u64 },
    Done,
}

/// Incremental HTTP/3 frame decoder for one stream.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    kind: StreamKind,
    state: State,
    frames: u64,
}

fn err(code: H3Code, what: &'static str) -> ProtocolError {
    ProtocolError::h3(code, what)
}

impl FrameDecoder {
    /// A decoder for a stream of the given kind.
    pub fn new(kind: StreamKind) -> Self {
        FrameDecoder {
            kind,
            state: State::Header,
            frames: 0,
        }
    }

    /// True when no frame is partially decoded and `pending` holds no partial header.
    pub fn is_at_boundary(&self, pending: &[u8]) -> bool {
        matches!(self.state, State::Header) && pending.is_empty()
    }

    /// Call when the stream ended cleanly with `pending` undecoded bytes: a frame cut short
    /// is H3_FRAME_ERROR.
    pub fn finish(&self, pending: &[u8]) -> Result<(), ProtocolError> {
        match self.state {
            State::Header if pending.is_empty() => Ok(()),
            State::Done => Ok(()),
            _ => Err(err(H3Code::H3_FRAME_ERROR, "stream ended inside a frame")),
        }
    }

    /// Decodes the next frame from `buf`. `Ok(None)`: need more bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Data { remaining } => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = remaining.min(buf.len() as u64) as usize;
                    let piece = buf.split_to(n).freeze();
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::Header
                    } else {
                        State::Data { remaining }
                    };
                    return Ok(Some(Frame::Data(piece)));
                }
                State::Skip { remaining } => {
                    let n = remaining.min(buf.len() as u64) as usize;
                    buf.advance(n);
                    let remaining = remaining - n as u64;
                    if remaining > 0 {
                        self.state = State::Skip { remaining };
                        return Ok(None);
                    }
                    self.state = State::Header;
                }
                State::Header => {
                    let mut view = &buf[..];
                    let Ok(ty) = varint::decode(&mut view) else {
                        return Ok(None);
                    };
                    if ty == WT_STREAM {
                        // No length: the rest of the stream is WebTransport payload.
                        let used = buf.len() - view.len();
                        buf.advance(used);
                        self.state = State::Done;
                        self.frames += 1;
                        return Ok(Some(Frame::WtStream));
                    }
                    let Ok(len) = varint::decode(&mut view) else {
                        return Ok(None);
                    };
                    let header = buf.len() - view.len();
                    // Checked again if the frame is not all here yet: `frames` counts a frame
                    // once it is taken, so the retry sees the same state.
                    self.check_allowed(ty)?;
                    match ty {
                        DATA => {
                            self.frames += 1;
                            buf.advance(header);
                            if len > 0 {
                                self.state = State::Data { remaining: len };
                            }
                            continue;
                        }
                        HEADERS | SETTINGS | GOAWAY | MAX_PUSH_ID | CANCEL_PUSH | PUSH_PROMISE => {
                            let max = match ty {
                                HEADERS | PUSH_PROMISE => MAX_HEADERS_LEN,
                                SETTINGS => MAX_SETTINGS_LEN,
                                _ => MAX_VARINT_FRAME_LEN,
                            };
                            if len > max {
                                return Err(if max == MAX_VARINT_FRAME_LEN {
                                    err(H3Code::H3_FRAME_ERROR, "control frame too long")
                                } else {
                                    err(H3Code::H3_EXCESSIVE_LOAD, "frame exceeds size limit")
                                });
                            }
                            let len = len as usize;
                            if view.len() < len {
                                buf.reserve(header + len - buf.len());
                                return Ok(None);
                            }
                            self.frames += 1;
                            buf.advance(header);
                            let payload = buf.split_to(len).freeze();
                            return Self::parse(ty, payload).map(Some);
                        }
                        _ => {
                            // Unknown or reserved: skip type, length and the whole payload.
                            self.frames += 1;
                            buf.advance(header);
                            self.state = State::Skip { remaining: len };
                        }
                    }
                }
            }
        }
    }

    fn check_allowed(&self, ty: u64) -> Result<(), ProtocolError> {
        // Frame types reserved because they were HTTP/2 frames (RFC 9114 §7.2.8).
        if matches!(ty, 0x02 | 0x06 | 0x08 | 0x09) {
            return Err(err(H3Code::H3_FRAME_UNEXPECTED, "HTTP/2 frame type"));
        }
        let known = matches!(
            ty,
            DATA | HEADERS | CANCEL_PUSH | SETTINGS | PUSH_PROMISE | GOAWAY | MAX_PUSH_ID
        );
        match self.kind {
            StreamKind::Control => {
                if self.frames == 0 && ty != SETTINGS {
                    return Err(err(
                        H3Code::H3_MISSING_SETTINGS,
                        "control stream does not start with SETTINGS",
                    ));
                }
                if self.frames > 0 && ty == SETTINGS {
                    return Err(err(H3Code::H3_FRAME_UNEXPECTED, "second SETTINGS frame"));
                }
                if matches!(ty, DATA | HEADERS | PUSH_PROMISE) {
                    return Err(err(
                        H3Code::H3_FRAME_UNEXPECTED,
                        "request frame on the control stream",
                    ));
                }
            }
            StreamKind::Request => {
                if known && !matches!(ty, DATA | HEADERS) {
                    return Err(err(
                        H3Code::H3_FRAME_UNEXPECTED,
                        "control frame on a request stream",
                    ));
                }
            }
        }
        Ok(())
    }

    fn parse(ty: u64, payload: Bytes) -> Result<Frame, ProtocolError> {
        match ty {
            HEADERS => Ok(Frame::Headers(payload)),
            SETTINGS => Ok(Frame::Settings(Settings::parse(&payload)?)),
            PUSH_PROMISE => Err(err(
                H3Code::H3_FRAME_UNEXPECTED,
                "PUSH_PROMISE without MAX_PUSH_ID",
            )),
            _ => {
                let mut p = &payload[..];
                let v = varint::decode(&mut p)
                    .map_err(|_| err(H3Code::H3_FRAME_ERROR, "truncated frame field"))?;
                if !p.is_empty() {
                    return Err(err(H3Code::H3_FRAME_ERROR, "trailing bytes in frame"));
                }
                Ok(match ty {
                    GOAWAY => Frame::Goaway(v),
                    MAX_PUSH_ID => Frame::MaxPushId(v),
                    _ => Frame::CancelPush(v),
                })
            }
        }
    }
}

/// Appends a frame header (type, length).
pub fn encode_header(ty: u64, len: u64, out: &mut impl BufMut) {
    varint::encode_unchecked(ty, out);
    varint::encode_unchecked(len, out);
}

/// Appends a whole frame with `payload`.
pub fn encode_frame(ty: u64, payload: &[u8], out: &mut BytesMut) {
    encode_header(ty, payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// Appends a GOAWAY frame.
pub fn encode_goaway(id: u64, out: &mut BytesMut) {
    encode_header(GOAWAY, varint::size(id) as u64, out);
    varint::encode_unchecked(id, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(kind: StreamKind, bytes: &[u8]) -> Result<Vec<Frame>, ProtocolError> {
        let mut dec = FrameDecoder::new(kind);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = dec.decode(&mut buf)? {
            let stop = f == Frame::WtStream;
            out.push(f);
            if stop {
                break;
            }
        }
        dec.finish(&buf)?;
        Ok(merge(out))
    }

    /// Joins consecutive DATA pieces so byte-at-a-time and whole decodes compare equal.
    fn merge(frames: Vec<Frame>) -> Vec<Frame> {
        let mut out: Vec<Frame> = Vec::new();
        for f in frames {
            if let (Some(Frame::Data(prev)), Frame::Data(d)) = (out.last_mut(), &f) {
                let mut joined = BytesMut::from(&prev[..]);
                joined.extend_from_slice(d);
                *prev = joined.freeze();
                continue;
            }
            out.push(f);
        }
        out
    }

    fn byte_at_a_time(kind: StreamKind, bytes: &[u8]) -> Result<Vec<Frame>, ProtocolError> {
        let mut dec = FrameDecoder::new(kind);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in bytes {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = dec.decode(&mut buf)? {
                out.push(f);
            }
        }
        dec.finish(&buf)?;
        Ok(merge(out))
    }

    #[test]
    fn unknown_frame_with_payload_then_data_does_not_desync() {
        // Unknown type 0x10 with 3 payload bytes, then DATA "hi".
        let bytes = [0x10, 0x03, 0xaa, 0xbb, 0xcc, 0x00, 0x02, b'h', b'i'];
        let want = vec![Frame::Data(Bytes::from_static(b"hi"))];
        assert_eq!(all(StreamKind::Request, &bytes).unwrap(), want);
        assert_eq!(byte_at_a_time(StreamKind::Request, &bytes).unwrap(), want);
        // Reserved (GREASE) type 0x21 with a 2-byte-length payload.
        let mut bytes = vec![0x21, 0x40, 0x05, 1, 2, 3, 4, 5];
        bytes.extend_from_slice(&[0x00, 0x01, b'x']);
        assert_eq!(
            all(StreamKind::Request, &bytes).unwrap(),
            vec![Frame::Data(Bytes::from_static(b"x"))]
        );
    }

    #[test]
    fn headers_and_data_split_everywhere() {
        let mut bytes = vec![0x01, 0x03, 9, 8, 7];
        bytes.extend_from_slice(&[
            0x00, 0x0a, 0x68, 0x43, 0x07, 0, 0, 1, 0x2c, b'b', b'y', b'e',
        ]);
        let want = vec![
            Frame::Headers(Bytes::from_static(&[9, 8, 7])),
            Frame::Data(Bytes::from_static(&[
                0x68, 0x43, 0x07, 0, 0, 1, 0x2c, b'b', b'y', b'e',
            ])),
        ];
        assert_eq!(all(StreamKind::Request, &bytes).unwrap(), want);
        assert_eq!(byte_at_a_time(StreamKind::Request, &bytes).unwrap(), want);
        // Truncation at every byte: either a clean boundary or H3_FRAME_ERROR at FIN.
        for cut in 0..bytes.len() {
            let r = all(StreamKind::Request, &bytes[..cut]);
            if cut == 0 || cut == 5 {
                assert!(r.is_ok(), "cut {cut}");
            } else if cut > 7 {
                // Inside DATA payload: pieces delivered, then truncated at FIN.
                assert_eq!(
                    r.unwrap_err().code,
                    wt_core::WireCode::H3(H3Code::H3_FRAME_ERROR)
                );
            } else {
                assert_eq!(
                    r.unwrap_err().code,
                    wt_core::WireCode::H3(H3Code::H3_FRAME_ERROR),
                    "cut {cut}"
                );
            }
        }
    }

    /// A SETTINGS frame whose payload arrives in pieces is one SETTINGS frame: the decoder
    /// waits for the rest without counting the frame yet (counting it on every retry made
    /// the second try a "second SETTINGS frame", seen against a wtransport server).
    #[test]
    fn control_frames_split_everywhere() {
        let bytes = [
            0x04, 0x04, 0x33, 0x01, 0x01, 0x00, 0x07, 0x01, 0x04, 0x0d, 0x01, 0x02,
        ];
        let whole = all(StreamKind::Control, &bytes).unwrap();
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[1], Frame::Goaway(4));
        assert_eq!(byte_at_a_time(StreamKind::Control, &bytes).unwrap(), whole);
        for cut in 1..bytes.len() {
            let mut dec = FrameDecoder::new(StreamKind::Control);
            let mut buf = BytesMut::from(&bytes[..cut]);
            let mut got = Vec::new();
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&bytes[cut..]);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
            assert_eq!(got, whole, "cut {cut}");
        }
    }

    #[test]
    fn control_stream_rules() {
        let code = |r: Result<Vec<Frame>, ProtocolError>| match r.unwrap_err().code {
            wt_core::WireCode::H3(c) => c,
            other => panic!("{other:?}"),
        };
        // Must start with SETTINGS.
        assert_eq!(
            code(all(StreamKind::Control, &[0x07, 0x01, 0x00])),
            H3Code::H3_MISSING_SETTINGS
        );
        // SETTINGS then GOAWAY(4) then MAX_PUSH_ID, unknown skipped.
        let f = all(
            StreamKind::Control,
            &[
                0x04, 0x02, 0x33, 0x01, 0x07, 0x01, 0x04, 0x21, 0x00, 0x0d, 0x01, 0x02,
            ],
        )
        .unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f[1], Frame::Goaway(4));
        // Second SETTINGS.
        assert_eq!(
            code(all(StreamKind::Control, &[0x04, 0x00, 0x04, 0x00])),
            H3Code::H3_FRAME_UNEXPECTED
        );
        // DATA on control.
        assert_eq!(
            code(all(StreamKind::Control, &[0x04, 0x00, 0x00, 0x00])),
            H3Code::H3_FRAME_UNEXPECTED
        );
        // HTTP/2 frame types.
        assert_eq!(
            code(all(StreamKind::Control, &[0x04, 0x00, 0x06, 0x00])),
            H3Code::H3_FRAME_UNEXPECTED
        );
        // GOAWAY with trailing byte / truncated varint / overlong.
        assert_eq!(
            code(all(
                StreamKind::Control,
                &[0x04, 0x00, 0x07, 0x02, 0x04, 0x00]
            )),
            H3Code::H3_FRAME_ERROR
        );
        assert_eq!(
            code(all(StreamKind::Control, &[0x04, 0x00, 0x07, 0x01, 0x40])),
            H3Code::H3_FRAME_ERROR
        );
        assert_eq!(
            code(all(StreamKind::Control, &[0x04, 0x00, 0x07, 0x09])),
            H3Code::H3_FRAME_ERROR
        );
        // SETTINGS on a request stream.
        assert_eq!(
            code(all(StreamKind::Request, &[0x04, 0x00])),
            H3Code::H3_FRAME_UNEXPECTED
        );
        // Oversized HEADERS / SETTINGS: refused before buffering.
        assert_eq!(
            code(all(StreamKind::Request, &[0x01, 0x80, 0x02, 0x00, 0x00])),
            H3Code::H3_EXCESSIVE_LOAD
        );
        assert_eq!(
            code(all(StreamKind::Control, &[0x04, 0x80, 0x01, 0x00, 0x00])),
            H3Code::H3_EXCESSIVE_LOAD
        );
    }

    #[test]
    fn wt_signal_stops_the_decoder() {
        let mut dec = FrameDecoder::new(StreamKind::Request);
        let mut buf = BytesMut::from(&[0x40, 0x41, 0x00, b'x'][..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(Frame::WtStream));
        assert_eq!(&buf[..], &[0x00, b'x']);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn huge_unknown_frame_is_skipped_without_buffering() {
        let mut dec = FrameDecoder::new(StreamKind::Request);
        let mut buf = BytesMut::from(&[0x3f, 0xbf, 0xff, 0xff, 0xff, 1, 2, 3][..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        assert!(dec.finish(&buf).is_err());
    }

    #[test]
    fn encoders() {
        let mut out = BytesMut::new();
        encode_goaway(8, &mut out);
        assert_eq!(&out[..], &[0x07, 0x01, 0x08]);
        let mut out = BytesMut::new();
        encode_frame(
            DATA,
            &[0x68, 0x43, 0x07, 0, 0, 1, 0x2c, b'b', b'y', b'e'],
            &mut out,
        );
        assert_eq!(
            &out[..],
            &[0x00, 0x0a, 0x68, 0x43, 0x07, 0x00, 0x00, 0x01, 0x2c, 0x62, 0x79, 0x65]
        );
    }
}
