//! The HTTP Capsule Protocol (RFC 9297 §3) and the WebTransport capsules of both bindings.
//!
//! Two layers, both sans-IO:
//!
//! * [`CapsuleDecoder`] turns the content of a CONNECT stream (the concatenated DATA frame
//!   payloads) into [`RawCapsule`]s. It is incremental, tokio-util style: feed bytes into a
//!   `BytesMut`, call [`CapsuleDecoder::decode`] until it returns `Ok(None)` ("need more").
//!   Capsules may be split at any byte or packed many to a chunk. Types the caller does not
//!   know (including GREASE) are skipped as their bytes arrive, without buffering them. Known
//!   capsules longer than the configured maximum are refused before anything is allocated.
//! * [`Capsule`] parses and encodes the value layouts of the capsules WebTransport uses, with
//!   the dialect switches of [`CapsuleOptions`] (the H2 WT_STREAM FIN mapping and the
//!   WT_RESET_STREAM layout).
//!
//! ```
//! use bytes::BytesMut;
//! use wt_core::capsule::{Capsule, CapsuleDecoder, CapsuleOptions};
//!
//! let mut dec = CapsuleDecoder::new(64 * 1024);
//! // GREASE capsule (type 0x17, 2 bytes) then WT_CLOSE_SESSION(300, "bye").
//! let mut buf = BytesMut::from(&[0x17, 0x02, 0xaa, 0xbb,
//!     0x68, 0x43, 0x07, 0x00, 0x00, 0x01, 0x2c, b'b', b'y', b'e'][..]);
//! let raw = dec.decode(&mut buf).unwrap().unwrap();
//! let cap = Capsule::parse(raw, &CapsuleOptions::default()).unwrap();
//! assert_eq!(cap, Capsule::CloseSession { code: 300, reason: "bye".into() });
//! assert!(dec.decode(&mut buf).unwrap().is_none());
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::codes::CapsuleType;
use crate::varint::{self, UnexpectedEnd};

/// Maximum length in bytes of a WT_CLOSE_SESSION reason.
pub const MAX_CLOSE_REASON: usize = 1024;

/// Default cap on the value of a single known capsule (1 MiB + a little for headers).
pub const DEFAULT_MAX_CAPSULE_LEN: usize = 1024 * 1024 + 64;

/// A capsule as framed on the wire: its type and its complete value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawCapsule {
    /// The capsule type.
    pub ty: CapsuleType,
    /// The capsule value (zero-copy view into the input buffer when it arrived whole).
    pub value: Bytes,
}

/// Capsule-layer errors. Every variant is a malformed HTTP message from the peer: HTTP/3
/// answers with H3_MESSAGE_ERROR, HTTP/2 with a PROTOCOL_ERROR stream reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapsuleError {
    /// The stream ended in the middle of a capsule.
    #[error("capsule stream ended inside a capsule ({0:?})")]
    Truncated(Option<CapsuleType>),
    /// A known capsule declared a length above the configured maximum.
    #[error("capsule {ty:?} declares {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Type of the capsule.
        ty: CapsuleType,
        /// Declared length.
        len: u64,
        /// Configured maximum.
        max: usize,
    },
    /// The value does not match the capsule's layout (missing fields or trailing bytes).
    #[error("malformed {ty:?} capsule: {what}")]
    Malformed {
        /// Type of the capsule.
        ty: CapsuleType,
        /// What was wrong.
        what: &'static str,
    },
    /// A WT_CLOSE_SESSION reason longer than 1024 bytes.
    #[error("close reason of {0} bytes exceeds 1024")]
    ReasonTooLong(usize),
    /// A WT_CLOSE_SESSION reason that is not UTF-8.
    #[error("close reason is not valid UTF-8")]
    ReasonNotUtf8,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for a capsule header.
    Header,
    /// Discarding the value of an unknown capsule.
    Skip { remaining: u64, ty: CapsuleType },
}

/// Decides which capsule types the decoder delivers; the rest are skipped.
pub type TypeFilter = fn(CapsuleType) -> bool;

/// Every capsule type either WebTransport binding gives a meaning to.
pub fn is_webtransport_type(ty: CapsuleType) -> bool {
    ty == CapsuleType::DATAGRAM
        || ty == CapsuleType::WT_CLOSE_SESSION
        || ty == CapsuleType::WT_DRAIN_SESSION
        || (CapsuleType::PADDING.0..=CapsuleType::WT_STREAMS_BLOCKED_UNI.0).contains(&ty.0)
}

/// Incremental capsule decoder (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct CapsuleDecoder {
    max_len: usize,
    state: State,
    filter: TypeFilter,
    skipped: u64,
}

impl CapsuleDecoder {
    /// A decoder delivering every WebTransport capsule type ([`is_webtransport_type`]),
    /// refusing known capsules whose value exceeds `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        Self::with_filter(max_len, is_webtransport_type)
    }

    /// A decoder delivering the capsule types for which `filter` returns true.
    pub fn with_filter(max_len: usize, filter: TypeFilter) -> Self {
        Self {
            max_len,
            state: State::Header,
            filter,
            skipped: 0,
        }
    }

    /// Total bytes of skipped (unknown) capsules so far, headers included.
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped
    }

    /// True when the decoder is between capsules and `pending` holds no partial header:
    /// the stream may end here cleanly.
    pub fn is_at_boundary(&self, pending: &[u8]) -> bool {
        matches!(self.state, State::Header) && pending.is_empty()
    }

    /// Decodes the next known capsule from `buf`, consuming its bytes. `Ok(None)` means more
    /// input is needed (everything decodable has been consumed; unknown capsules' bytes are
    /// discarded as they arrive).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RawCapsule>, CapsuleError> {
        loop {
            match self.state {
                State::Skip { remaining, ty } => {
                    let n = remaining.min(buf.len() as u64) as usize;
                    buf.advance(n);
                    self.skipped += n as u64;
                    let remaining = remaining - n as u64;
                    if remaining > 0 {
                        self.state = State::Skip { remaining, ty };
                        return Ok(None);
                    }
                    self.state = State::Header;
                }
                State::Header => {
                    let mut view = &buf[..];
                    let (ty, len) = match (varint::decode(&mut view), varint::decode(&mut view)) {
                        (Ok(t), Ok(l)) => (CapsuleType(t), l),
                        _ => return Ok(None),
                    };
                    let header = buf.len() - view.len();
                    if !(self.filter)(ty) {
                        buf.advance(header);
                        self.skipped += header as u64;
                        self.state = State::Skip { remaining: len, ty };
                        continue;
                    }
                    if len > self.max_len as u64 {
                        return Err(CapsuleError::TooLarge {
                            ty,
                            len,
                            max: self.max_len,
                        });
                    }
                    let len = len as usize;
                    if view.len() < len {
                        buf.reserve(header + len - buf.len());
                        return Ok(None);
                    }
                    buf.advance(header);
                    let value = buf.split_to(len).freeze();
                    return Ok(Some(RawCapsule { ty, value }));
                }
            }
        }
    }

    /// Call when the stream ends cleanly (FIN / END_STREAM) with `pending` undecoded bytes:
    /// fails if a capsule was cut short.
    pub fn finish(&self, pending: &[u8]) -> Result<(), CapsuleError> {
        match self.state {
            State::Skip { ty, .. } => Err(CapsuleError::Truncated(Some(ty))),
            State::Header if pending.is_empty() => Ok(()),
            State::Header => {
                let ty = varint::peek(pending).ok().map(|(t, _)| CapsuleType(t));
                Err(CapsuleError::Truncated(ty))
            }
        }
    }
}

/// Which WT_STREAM codepoint carries FIN over HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FinMapping {
    /// draft-ietf-webtrans-http2-15: the type's least significant bit is FIN, so 0x190B4D3B
    /// carries FIN and 0x190B4D3C does not.
    #[default]
    Draft15,
    /// The older reading (quiche, Firefox, @fails-components, webtransport-h2-go):
    /// 0x190B4D3C carries FIN and 0x190B4D3B does not.
    Legacy,
}

impl FinMapping {
    /// The WT_STREAM capsule type for a capsule with or without FIN.
    pub const fn stream_type(self, fin: bool) -> CapsuleType {
        match (self, fin) {
            (FinMapping::Draft15, true) | (FinMapping::Legacy, false) => CapsuleType::WT_STREAM_3B,
            _ => CapsuleType::WT_STREAM_3C,
        }
    }

    /// Whether a WT_STREAM capsule of type `ty` carries FIN.
    pub const fn is_fin(self, ty: CapsuleType) -> bool {
        (ty.0 == CapsuleType::WT_STREAM_3B.0) == matches!(self, FinMapping::Draft15)
    }
}

/// Layout of the WT_RESET_STREAM capsule over HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResetLayout {
    /// draft-09+: Stream ID, Error Code, Reliable Size. A two-field capsule is malformed.
    #[default]
    ReliableSize,
    /// draft-05…08 (quiche): Stream ID, Error Code. Encodes two fields; parses either form.
    Legacy,
}

/// Dialect switches for parsing and encoding capsules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapsuleOptions {
    /// WT_STREAM FIN codepoint mapping (HTTP/2).
    pub fin_mapping: FinMapping,
    /// WT_RESET_STREAM layout (HTTP/2).
    pub reset_layout: ResetLayout,
}

impl CapsuleOptions {
    /// The legacy HTTP/2 dialect: old FIN mapping, two-field reset.
    pub const LEGACY: CapsuleOptions = CapsuleOptions {
        fin_mapping: FinMapping::Legacy,
        reset_layout: ResetLayout::Legacy,
    };
}

/// A parsed WebTransport capsule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capsule {
    /// DATAGRAM (0x00): an HTTP datagram (H2 binding).
    Datagram(Bytes),
    /// WT_CLOSE_SESSION: application code and UTF-8 reason (≤ 1024 bytes).
    CloseSession {
        /// Application error code.
        code: u32,
        /// Reason.
        reason: String,
    },
    /// WT_DRAIN_SESSION.
    DrainSession,
    /// PADDING of the given length; `zeroed` tells whether every byte was zero.
    Padding {
        /// Length of the padding.
        len: usize,
        /// Whether all bytes were zero.
        zeroed: bool,
    },
    /// WT_RESET_STREAM.
    ResetStream {
        /// WT stream ID.
        id: u64,
        /// Application error code as sent (callers check it fits in 32 bits).
        code: u64,
        /// Reliable Size; `None` for the legacy two-field form.
        reliable_size: Option<u64>,
    },
    /// WT_STOP_SENDING.
    StopSending {
        /// WT stream ID.
        id: u64,
        /// Application error code as sent.
        code: u64,
    },
    /// WT_STREAM (either codepoint).
    Stream {
        /// WT stream ID.
        id: u64,
        /// Whether this capsule ends the stream.
        fin: bool,
        /// Stream data.
        data: Bytes,
    },
    /// WT_MAX_DATA.
    MaxData(u64),
    /// WT_MAX_STREAM_DATA.
    MaxStreamData {
        /// WT stream ID.
        id: u64,
        /// New limit.
        max: u64,
    },
    /// WT_MAX_STREAMS (bidirectional).
    MaxStreamsBidi(u64),
    /// WT_MAX_STREAMS (unidirectional).
    MaxStreamsUni(u64),
    /// WT_DATA_BLOCKED.
    DataBlocked(u64),
    /// WT_STREAM_DATA_BLOCKED.
    StreamDataBlocked {
        /// WT stream ID.
        id: u64,
        /// The limit the sender is blocked at.
        max: u64,
    },
    /// WT_STREAMS_BLOCKED (bidirectional).
    StreamsBlockedBidi(u64),
    /// WT_STREAMS_BLOCKED (unidirectional).
    StreamsBlockedUni(u64),
    /// Any other type the decoder was told to deliver.
    Unknown(RawCapsule),
}

struct ValueReader {
    ty: CapsuleType,
    value: Bytes,
}

impl ValueReader {
    fn varint(&mut self, what: &'static str) -> Result<u64, CapsuleError> {
        varint::decode(&mut self.value)
            .map_err(|UnexpectedEnd| CapsuleError::Malformed { ty: self.ty, what })
    }

    fn end(self) -> Result<(), CapsuleError> {
        if self.value.is_empty() {
            Ok(())
        } else {
            Err(CapsuleError::Malformed {
                ty: self.ty,
                what: "trailing bytes after the last field",
            })
        }
    }
}

impl Capsule {
    /// Parses the value of `raw` according to its type.
    pub fn parse(raw: RawCapsule, opts: &CapsuleOptions) -> Result<Capsule, CapsuleError> {
        let ty = raw.ty;
        let mut r = ValueReader {
            ty,
            value: raw.value,
        };
        let cap = match ty {
            CapsuleType::DATAGRAM => return Ok(Capsule::Datagram(r.value)),
            CapsuleType::WT_CLOSE_SESSION => {
                if r.value.len() < 4 {
                    return Err(CapsuleError::Malformed {
                        ty,
                        what: "shorter than the 32-bit error code",
                    });
                }
                let code = r.value.get_u32();
                let reason = check_reason(&r.value)?.to_owned();
                return Ok(Capsule::CloseSession { code, reason });
            }
            CapsuleType::WT_DRAIN_SESSION => {
                r.end()?;
                return Ok(Capsule::DrainSession);
            }
            CapsuleType::PADDING => {
                return Ok(Capsule::Padding {
                    len: r.value.len(),
                    zeroed: r.value.iter().all(|b| *b == 0),
                })
            }
            CapsuleType::WT_RESET_STREAM => {
                let id = r.varint("missing stream id")?;
                let code = r.varint("missing error code")?;
                let reliable_size = match opts.reset_layout {
                    ResetLayout::ReliableSize => Some(r.varint("missing reliable size")?),
                    ResetLayout::Legacy if r.value.is_empty() => None,
                    ResetLayout::Legacy => Some(r.varint("bad reliable size")?),
                };
                Capsule::ResetStream {
                    id,
                    code,
                    reliable_size,
                }
            }
            CapsuleType::WT_STOP_SENDING => {
                let id = r.varint("missing stream id")?;
                let code = r.varint("missing error code")?;
                Capsule::StopSending { id, code }
            }
            CapsuleType::WT_STREAM_3B | CapsuleType::WT_STREAM_3C => {
                let id = r.varint("missing stream id")?;
                return Ok(Capsule::Stream {
                    id,
                    fin: opts.fin_mapping.is_fin(ty),
                    data: r.value,
                });
            }
            CapsuleType::WT_MAX_DATA => Capsule::MaxData(r.varint("missing maximum data")?),
            CapsuleType::WT_MAX_STREAM_DATA => {
                let id = r.varint("missing stream id")?;
                let max = r.varint("missing maximum stream data")?;
                Capsule::MaxStreamData { id, max }
            }
            CapsuleType::WT_MAX_STREAMS_BIDI => {
                Capsule::MaxStreamsBidi(r.varint("missing maximum streams")?)
            }
            CapsuleType::WT_MAX_STREAMS_UNI => {
                Capsule::MaxStreamsUni(r.varint("missing maximum streams")?)
            }
            CapsuleType::WT_DATA_BLOCKED => Capsule::DataBlocked(r.varint("missing limit")?),
            CapsuleType::WT_STREAM_DATA_BLOCKED => {
                let id = r.varint("missing stream id")?;
                let max = r.varint("missing limit")?;
                Capsule::StreamDataBlocked { id, max }
            }
            CapsuleType::WT_STREAMS_BLOCKED_BIDI => {
                Capsule::StreamsBlockedBidi(r.varint("missing limit")?)
            }
            CapsuleType::WT_STREAMS_BLOCKED_UNI => {
                Capsule::StreamsBlockedUni(r.varint("missing limit")?)
            }
            _ => {
                return Ok(Capsule::Unknown(RawCapsule { ty, value: r.value }));
            }
        };
        r.end()?;
        Ok(cap)
    }

    /// The capsule's type on the wire under `opts`.
    pub fn capsule_type(&self, opts: &CapsuleOptions) -> CapsuleType {
        match self {
            Capsule::Datagram(_) => CapsuleType::DATAGRAM,
            Capsule::CloseSession { .. } => CapsuleType::WT_CLOSE_SESSION,
            Capsule::DrainSession => CapsuleType::WT_DRAIN_SESSION,
            Capsule::Padding { .. } => CapsuleType::PADDING,
            Capsule::ResetStream { .. } => CapsuleType::WT_RESET_STREAM,
            Capsule::StopSending { .. } => CapsuleType::WT_STOP_SENDING,
            Capsule::Stream { fin, .. } => opts.fin_mapping.stream_type(*fin),
            Capsule::MaxData(_) => CapsuleType::WT_MAX_DATA,
            Capsule::MaxStreamData { .. } => CapsuleType::WT_MAX_STREAM_DATA,
            Capsule::MaxStreamsBidi(_) => CapsuleType::WT_MAX_STREAMS_BIDI,
            Capsule::MaxStreamsUni(_) => CapsuleType::WT_MAX_STREAMS_UNI,
            Capsule::DataBlocked(_) => CapsuleType::WT_DATA_BLOCKED,
            Capsule::StreamDataBlocked { .. } => CapsuleType::WT_STREAM_DATA_BLOCKED,
            Capsule::StreamsBlockedBidi(_) => CapsuleType::WT_STREAMS_BLOCKED_BIDI,
            Capsule::StreamsBlockedUni(_) => CapsuleType::WT_STREAMS_BLOCKED_UNI,
            Capsule::Unknown(raw) => raw.ty,
        }
    }

    /// Appends the encoded capsule (type, length, value) to `buf`. Values that cannot be
    /// encoded (a varint field above 2^62 − 1, a close reason over 1024 bytes) are an error
    /// and nothing is written.
    pub fn encode(&self, opts: &CapsuleOptions, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let mut value = BytesMut::new();
        let v = &mut value;
        let ty = self.capsule_type(opts);
        match self {
            Capsule::Datagram(d) => v.extend_from_slice(d),
            Capsule::CloseSession { code, reason } => {
                if reason.len() > MAX_CLOSE_REASON {
                    return Err(EncodeError::ReasonTooLong(reason.len()));
                }
                v.put_u32(*code);
                v.extend_from_slice(reason.as_bytes());
            }
            Capsule::DrainSession => {}
            Capsule::Padding { len, .. } => v.put_bytes(0, *len),
            Capsule::ResetStream {
                id,
                code,
                reliable_size,
            } => {
                put(v, *id)?;
                put(v, *code)?;
                if let Some(rs) = reliable_size {
                    put(v, *rs)?;
                }
            }
            Capsule::StopSending { id, code } => {
                put(v, *id)?;
                put(v, *code)?;
            }
            Capsule::Stream { id, data, .. } => {
                put(v, *id)?;
                v.extend_from_slice(data);
            }
            Capsule::MaxData(n)
            | Capsule::MaxStreamsBidi(n)
            | Capsule::MaxStreamsUni(n)
            | Capsule::DataBlocked(n)
            | Capsule::StreamsBlockedBidi(n)
            | Capsule::StreamsBlockedUni(n) => put(v, *n)?,
            Capsule::MaxStreamData { id, max } | Capsule::StreamDataBlocked { id, max } => {
                put(v, *id)?;
                put(v, *max)?;
            }
            Capsule::Unknown(raw) => v.extend_from_slice(&raw.value),
        }
        encode_header(ty, value.len() as u64, buf)?;
        buf.extend_from_slice(&value);
        Ok(())
    }
}

/// Capsule encoding errors (local misuse, never peer input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A varint field above 2^62 − 1.
    #[error(transparent)]
    VarInt(#[from] varint::VarIntBoundsExceeded),
    /// A close reason over 1024 bytes.
    #[error("close reason of {0} bytes exceeds 1024")]
    ReasonTooLong(usize),
}

fn put(buf: &mut BytesMut, v: u64) -> Result<(), EncodeError> {
    Ok(varint::encode(v, buf)?)
}

/// Appends a capsule header (type and length). Use with a payload written or chained after it,
/// e.g. a WT_STREAM header followed by a `Bytes` chunk that is not copied.
pub fn encode_header(ty: CapsuleType, len: u64, buf: &mut BytesMut) -> Result<(), EncodeError> {
    varint::encode(ty.0, buf)?;
    varint::encode(len, buf)?;
    Ok(())
}

/// Appends the header of a WT_STREAM capsule carrying `data_len` bytes of stream `id`: the
/// capsule type and length and the stream ID. The data itself follows.
pub fn encode_stream_header(
    id: u64,
    fin: bool,
    data_len: usize,
    mapping: FinMapping,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let len = varint::size(id) as u64 + data_len as u64;
    encode_header(mapping.stream_type(fin), len, buf)?;
    varint::encode(id, buf)?;
    Ok(())
}

/// Checks a close reason received from a peer: at most 1024 bytes of UTF-8.
pub fn check_reason(bytes: &[u8]) -> Result<&str, CapsuleError> {
    if bytes.len() > MAX_CLOSE_REASON {
        return Err(CapsuleError::ReasonTooLong(bytes.len()));
    }
    std::str::from_utf8(bytes).map_err(|_| CapsuleError::ReasonNotUtf8)
}

/// Truncates `reason` to at most 1024 bytes at a character boundary (what a sender must do
/// when it has a longer message).
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON {
        return reason;
    }
    let mut end = MAX_CLOSE_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> CapsuleOptions {
        CapsuleOptions::default()
    }

    fn decode_all(dec: &mut CapsuleDecoder, input: &[u8]) -> Vec<RawCapsule> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(c) = dec.decode(&mut buf).unwrap() {
            out.push(c);
        }
        dec.finish(&buf).unwrap();
        out
    }

    fn parse_one(bytes: &[u8]) -> Result<Capsule, CapsuleError> {
        parse_with(bytes, &opts())
    }

    fn parse_with(bytes: &[u8], o: &CapsuleOptions) -> Result<Capsule, CapsuleError> {
        let mut dec = CapsuleDecoder::new(DEFAULT_MAX_CAPSULE_LEN);
        let mut buf = BytesMut::from(bytes);
        let raw = dec.decode(&mut buf)?.expect("one whole capsule");
        assert!(buf.is_empty(), "exactly one capsule expected");
        Capsule::parse(raw, o)
    }

    fn encode(c: &Capsule, o: &CapsuleOptions) -> Vec<u8> {
        let mut b = BytesMut::new();
        c.encode(o, &mut b).unwrap();
        b.to_vec()
    }

    /// Byte examples of the wire reference, §9, both directions.
    #[test]
    fn wire_reference_vectors() {
        let d15 = opts();
        let cases: Vec<(Vec<u8>, Capsule, CapsuleOptions)> = vec![
            (
                vec![0x68, 0x43, 0x07, 0x00, 0x00, 0x01, 0x2c, 0x62, 0x79, 0x65],
                Capsule::CloseSession {
                    code: 300,
                    reason: "bye".into(),
                },
                d15,
            ),
            (
                vec![0x80, 0x00, 0x78, 0xae, 0x00],
                Capsule::DrainSession,
                d15,
            ),
            (
                vec![0x99, 0x0b, 0x4d, 0x3d, 0x04, 0x80, 0x10, 0x00, 0x00],
                Capsule::MaxData(1 << 20),
                d15,
            ),
            (
                vec![0x99, 0x0b, 0x4d, 0x3f, 0x01, 0x02],
                Capsule::MaxStreamsBidi(2),
                d15,
            ),
            (
                vec![0x99, 0x0b, 0x4d, 0x43, 0x01, 0x01],
                Capsule::StreamsBlockedBidi(1),
                d15,
            ),
            (
                vec![0x99, 0x0b, 0x4d, 0x3c, 0x03, 0x00, 0x68, 0x69],
                Capsule::Stream {
                    id: 0,
                    fin: false,
                    data: Bytes::from_static(b"hi"),
                },
                d15,
            ),
            (
                vec![0x99, 0x0b, 0x4d, 0x3b, 0x03, 0x00, 0x68, 0x69],
                Capsule::Stream {
                    id: 0,
                    fin: true,
                    data: Bytes::from_static(b"hi"),
                },
                d15,
            ),
            (
                vec![0x99, 0x0b, 0x4d, 0x3b, 0x03, 0x00, 0x68, 0x69],
                Capsule::Stream {
                    id: 0,
                    fin: false,
                    data: Bytes::from_static(b"hi"),
                },
                CapsuleOptions::LEGACY,
            ),
            (
                vec![0x99, 0x0b, 0x4d, 0x3c, 0x03, 0x00, 0x68, 0x69],
                Capsule::Stream {
                    id: 0,
                    fin: true,
                    data: Bytes::from_static(b"hi"),
                },
                CapsuleOptions::LEGACY,
            ),
            (
                vec![0x99, 0x0b, 0x4d, 0x39, 0x03, 0x00, 0x07, 0x02],
                Capsule::ResetStream {
                    id: 0,
                    code: 7,
                    reliable_size: Some(2),
                },
                d15,
            ),
            (
                vec![0x99, 0x0b, 0x4d, 0x3a, 0x02, 0x01, 0x07],
                Capsule::StopSending { id: 1, code: 7 },
                d15,
            ),
            (
                vec![0x99, 0x0b, 0x4d, 0x3e, 0x05, 0x00, 0x80, 0x01, 0x00, 0x00],
                Capsule::MaxStreamData { id: 0, max: 65536 },
                d15,
            ),
            (
                vec![0x00, 0x02, 0x68, 0x69],
                Capsule::Datagram(Bytes::from_static(b"hi")),
                d15,
            ),
            (
                vec![0x99, 0x0b, 0x4d, 0x38, 0x03, 0x00, 0x00, 0x00],
                Capsule::Padding {
                    len: 3,
                    zeroed: true,
                },
                d15,
            ),
        ];
        for (bytes, cap, o) in cases {
            assert_eq!(parse_with(&bytes, &o).unwrap(), cap, "parse {bytes:02x?}");
            assert_eq!(encode(&cap, &o), bytes, "encode {cap:?}");
        }
    }

    #[test]
    fn rs4_reset_after_five_bytes() {
        // RS-4: `99 0b 4d 39 03 <id> 07 05`
        let c = Capsule::ResetStream {
            id: 4,
            code: 7,
            reliable_size: Some(5),
        };
        assert_eq!(
            encode(&c, &opts()),
            [0x99, 0x0b, 0x4d, 0x39, 0x03, 0x04, 0x07, 0x05]
        );
    }

    #[test]
    fn split_at_every_byte_and_many_per_chunk() {
        let mut stream = Vec::new();
        // GREASE, close, drain, unknown non-grease, WT_STREAM, padding, datagram
        stream.extend_from_slice(&[0x17, 0x03, 0xaa, 0xbb, 0xcc]); // GREASE 0x17
        stream.extend_from_slice(&[0x68, 0x43, 0x07, 0x00, 0x00, 0x01, 0x2c, 0x62, 0x79, 0x65]);
        stream.extend_from_slice(&[0x40, 0x40, 0x00]); // GREASE 0x40, empty, 2-byte type
        stream.extend_from_slice(&[0x80, 0x00, 0x78, 0xae, 0x00]);
        stream.extend_from_slice(&[0x80, 0xff, 0x37, 0xa2, 0x04, 0x80, 0xff, 0x7c, 0x00]); // REGISTER_DATAGRAM_NO_CONTEXT
        stream.extend_from_slice(&[0x99, 0x0b, 0x4d, 0x3b, 0x03, 0x00, 0x68, 0x69]);
        stream.extend_from_slice(&[0x00, 0x02, 0x68, 0x69]);
        let expect_types = [
            CapsuleType::WT_CLOSE_SESSION,
            CapsuleType::WT_DRAIN_SESSION,
            CapsuleType::WT_STREAM_3B,
            CapsuleType::DATAGRAM,
        ];
        // All at once.
        let mut dec = CapsuleDecoder::new(1024);
        let all = decode_all(&mut dec, &stream);
        assert_eq!(all.iter().map(|c| c.ty).collect::<Vec<_>>(), expect_types);
        assert_eq!(dec.skipped_bytes(), 5 + 3 + 9);
        // Every split into two chunks, and byte by byte.
        for split in 0..=stream.len() {
            let mut dec = CapsuleDecoder::new(1024);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                buf.extend_from_slice(part);
                while let Some(c) = dec.decode(&mut buf).unwrap() {
                    got.push(c);
                }
            }
            dec.finish(&buf).unwrap();
            assert_eq!(got, all, "split at {split}");
        }
        let mut dec = CapsuleDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in &stream {
            buf.extend_from_slice(&[*b]);
            while let Some(c) = dec.decode(&mut buf).unwrap() {
                got.push(c);
            }
        }
        assert_eq!(got, all);
        dec.finish(&buf).unwrap();
    }

    #[test]
    fn non_minimal_varints_accepted() {
        // PE-6: WT_DRAIN_SESSION with an 8-byte type and a 2-byte zero length.
        let bytes = [0xc0, 0, 0, 0, 0, 0, 0x78, 0xae, 0x40, 0x00];
        assert_eq!(parse_one(&bytes).unwrap(), Capsule::DrainSession);
    }

    #[test]
    fn truncation_at_end_of_stream_is_malformed() {
        // CL-10: `68 43 07 00 00` then FIN.
        let mut dec = CapsuleDecoder::new(1024);
        let mut buf = BytesMut::from(&[0x68, 0x43, 0x07, 0x00, 0x00][..]);
        assert!(dec.decode(&mut buf).unwrap().is_none());
        assert_eq!(
            dec.finish(&buf),
            Err(CapsuleError::Truncated(Some(CapsuleType::WT_CLOSE_SESSION)))
        );
        // A partial header.
        let mut dec = CapsuleDecoder::new(1024);
        let mut buf = BytesMut::from(&[0x99, 0x0b][..]);
        assert!(dec.decode(&mut buf).unwrap().is_none());
        assert_eq!(dec.finish(&buf), Err(CapsuleError::Truncated(None)));
        // Inside a skipped unknown capsule.
        let mut dec = CapsuleDecoder::new(1024);
        let mut buf = BytesMut::from(&[0x17, 0x05, 0x01][..]);
        assert!(dec.decode(&mut buf).unwrap().is_none());
        assert!(buf.is_empty());
        assert!(!dec.is_at_boundary(&buf));
        assert_eq!(
            dec.finish(&buf),
            Err(CapsuleError::Truncated(Some(CapsuleType(0x17))))
        );
    }

    #[test]
    fn huge_lengths_are_bounded() {
        // PE-3: a known type declaring 2^62-1 bytes is refused at once, nothing reserved.
        let mut dec = CapsuleDecoder::new(1024);
        let mut buf =
            BytesMut::from(&[0x68, 0x43, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..]);
        match dec.decode(&mut buf) {
            Err(CapsuleError::TooLarge { len, max, .. }) => {
                assert_eq!(len, varint::MAX);
                assert_eq!(max, 1024);
            }
            other => panic!("{other:?}"),
        }
        assert!(buf.capacity() < 4096);
        // An unknown type of the same length is skipped as bytes arrive, with no buffering.
        let mut dec = CapsuleDecoder::new(1024);
        let mut buf = BytesMut::from(&[0x17, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(dec.decode(&mut buf).unwrap().is_none());
        for _ in 0..100 {
            buf.extend_from_slice(&[0u8; 4096]);
            assert!(dec.decode(&mut buf).unwrap().is_none());
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn malformed_values() {
        // PE-1: WT_MAX_DATA with one trailing byte.
        assert!(matches!(
            parse_one(&[0x99, 0x0b, 0x4d, 0x3d, 0x02, 0x05, 0x00]),
            Err(CapsuleError::Malformed { .. })
        ));
        // Empty WT_MAX_DATA.
        assert!(matches!(
            parse_one(&[0x99, 0x0b, 0x4d, 0x3d, 0x00]),
            Err(CapsuleError::Malformed { .. })
        ));
        // Truncated varint inside the value.
        assert!(matches!(
            parse_one(&[0x99, 0x0b, 0x4d, 0x3d, 0x01, 0x80]),
            Err(CapsuleError::Malformed { .. })
        ));
        // Close with a 3-byte value.
        assert!(matches!(
            parse_one(&[0x68, 0x43, 0x03, 0x00, 0x00, 0x01]),
            Err(CapsuleError::Malformed { .. })
        ));
        // Drain with a payload.
        assert!(matches!(
            parse_one(&[0x80, 0x00, 0x78, 0xae, 0x01, 0x00]),
            Err(CapsuleError::Malformed { .. })
        ));
        // WT_STREAM without a stream id.
        assert!(matches!(
            parse_one(&[0x99, 0x0b, 0x4d, 0x3b, 0x00]),
            Err(CapsuleError::Malformed { .. })
        ));
        // Reason not UTF-8, and too long.
        assert_eq!(
            parse_one(&[0x68, 0x43, 0x06, 0, 0, 0, 1, 0xff, 0xfe]),
            Err(CapsuleError::ReasonNotUtf8)
        );
        let mut long = vec![0x68, 0x43, 0x44, 0x05];
        long.extend_from_slice(&[0, 0, 0, 1]);
        long.extend(std::iter::repeat_n(b'a', 1025));
        assert_eq!(parse_one(&long), Err(CapsuleError::ReasonTooLong(1025)));
        // Exactly 1024 is fine.
        let mut ok = vec![0x68, 0x43, 0x44, 0x04];
        ok.extend_from_slice(&[0, 0, 0, 1]);
        ok.extend(std::iter::repeat_n(b'a', 1024));
        assert!(parse_one(&ok).is_ok());
        // Non-zero padding is reported, not rejected.
        assert_eq!(
            parse_one(&[0x99, 0x0b, 0x4d, 0x38, 0x02, 0x00, 0x01]).unwrap(),
            Capsule::Padding {
                len: 2,
                zeroed: false
            }
        );
    }

    #[test]
    fn reset_layouts() {
        // RS-8: a two-field reset is malformed for the strict parser, fine for legacy.
        let two = [0x99, 0x0b, 0x4d, 0x39, 0x02, 0x00, 0x07];
        assert!(matches!(
            parse_one(&two),
            Err(CapsuleError::Malformed { .. })
        ));
        assert_eq!(
            parse_with(&two, &CapsuleOptions::LEGACY).unwrap(),
            Capsule::ResetStream {
                id: 0,
                code: 7,
                reliable_size: None
            }
        );
        let three = [0x99, 0x0b, 0x4d, 0x39, 0x03, 0x00, 0x07, 0x02];
        assert!(parse_with(&three, &CapsuleOptions::LEGACY).is_ok());
        let four = [0x99, 0x0b, 0x4d, 0x39, 0x04, 0x00, 0x07, 0x02, 0x00];
        assert!(parse_with(&four, &CapsuleOptions::LEGACY).is_err());
        assert!(parse_one(&four).is_err());
    }

    #[test]
    fn encode_errors_and_reason_truncation() {
        let long = "é".repeat(600); // 1200 bytes
        let c = Capsule::CloseSession {
            code: 1,
            reason: long.clone(),
        };
        assert_eq!(
            c.encode(&opts(), &mut BytesMut::new()),
            Err(EncodeError::ReasonTooLong(1200))
        );
        let t = truncate_reason(&long);
        assert_eq!(t.len(), 1024);
        let odd = format!("a{long}");
        assert_eq!(truncate_reason(&odd).len(), 1023);
        let c = Capsule::MaxData(u64::MAX);
        let mut b = BytesMut::new();
        assert!(c.encode(&opts(), &mut b).is_err());
        assert!(b.is_empty());
    }

    #[test]
    fn stream_header_chaining() {
        let mut b = BytesMut::new();
        encode_stream_header(0, true, 2, FinMapping::Draft15, &mut b).unwrap();
        b.extend_from_slice(b"hi");
        assert_eq!(&b[..], [0x99, 0x0b, 0x4d, 0x3b, 0x03, 0x00, 0x68, 0x69]);
    }

    #[test]
    fn unknown_types_delivered_when_filter_allows() {
        let mut dec = CapsuleDecoder::with_filter(16, |_| true);
        let caps = decode_all(&mut dec, &[0x17, 0x01, 0x09]);
        let parsed = Capsule::parse(caps[0].clone(), &opts()).unwrap();
        assert_eq!(
            parsed,
            Capsule::Unknown(RawCapsule {
                ty: CapsuleType(0x17),
                value: Bytes::from_static(&[0x09])
            })
        );
        assert_eq!(encode(&parsed, &opts()), [0x17, 0x01, 0x09]);
    }
}
