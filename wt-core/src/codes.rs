//! Wire codepoints and error codes shared by both bindings.
//!
//! Open code spaces are newtypes with associated constants (unknown values survive and print in
//! hex), following the `Reason(u32)` pattern of h2.

use std::fmt;

/// An HTTP/3 (or QUIC application) error code, as carried by RESET_STREAM, STOP_SENDING and
/// CONNECTION_CLOSE.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct H3Code(pub u64);

macro_rules! named_codes {
    ($ty:ident: $($(#[$doc:meta])* $name:ident = $val:expr,)*) => {
        impl $ty {
            $($(#[$doc])* pub const $name: $ty = $ty($val);)*

            /// The codepoint's name, if it is one we know.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(v if v == $val => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({:#x})", stringify!($ty), self.0),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{n} ({:#x})", self.0),
                    None => write!(f, "{:#x}", self.0),
                }
            }
        }
    };
}

named_codes! { H3Code:
    /// No error.
    H3_NO_ERROR = 0x100,
    /// General protocol error.
    H3_GENERAL_PROTOCOL_ERROR = 0x101,
    /// Internal error.
    H3_INTERNAL_ERROR = 0x102,
    /// Stream creation error.
    H3_STREAM_CREATION_ERROR = 0x103,
    /// A critical stream was closed.
    H3_CLOSED_CRITICAL_STREAM = 0x104,
    /// Frame not permitted in the current state.
    H3_FRAME_UNEXPECTED = 0x105,
    /// Malformed frame (also: 0x41 not at the start of a stream).
    H3_FRAME_ERROR = 0x106,
    /// The peer generates excessive load.
    H3_EXCESSIVE_LOAD = 0x107,
    /// Stream or session ID misuse.
    H3_ID_ERROR = 0x108,
    /// Bad SETTINGS.
    H3_SETTINGS_ERROR = 0x109,
    /// No SETTINGS frame at the start of the control stream.
    H3_MISSING_SETTINGS = 0x10a,
    /// Request rejected without processing.
    H3_REQUEST_REJECTED = 0x10b,
    /// Request cancelled.
    H3_REQUEST_CANCELLED = 0x10c,
    /// Stream terminated early.
    H3_REQUEST_INCOMPLETE = 0x10d,
    /// Malformed message (capsules, close reason, headers).
    H3_MESSAGE_ERROR = 0x10e,
    /// CONNECT tunnel error.
    H3_CONNECT_ERROR = 0x10f,
    /// Retry over HTTP/1.1.
    H3_VERSION_FALLBACK = 0x110,
    /// QPACK decompression failed.
    QPACK_DECOMPRESSION_FAILED = 0x200,
    /// QPACK encoder stream error.
    QPACK_ENCODER_STREAM_ERROR = 0x201,
    /// QPACK decoder stream error.
    QPACK_DECODER_STREAM_ERROR = 0x202,
    /// Bad quarter stream ID in an HTTP datagram (RFC 9297).
    H3_DATAGRAM_ERROR = 0x33,
    /// Stream of an unknown session rejected because the buffer is full.
    WT_BUFFERED_STREAM_REJECTED = 0x3994bd84,
    /// Stream of a session that has ended.
    WT_SESSION_GONE = 0x170d7b68,
    /// Session flow-control violation (H3 draft-14+).
    WT_FLOW_CONTROL_ERROR = 0x045d4487,
    /// Protocol negotiation failure (H3 draft-15+).
    WT_ALPN_ERROR = 0x0817b3dd,
    /// The connection lacks WebTransport prerequisites (H3 draft-15+).
    WT_REQUIREMENTS_NOT_MET = 0x212c0d48,
}

impl H3Code {
    /// True for the reserved GREASE codepoints `0x1f * N + 0x21`.
    pub const fn is_reserved(self) -> bool {
        self.0 >= 0x21 && (self.0 - 0x21) % 0x1f == 0
    }

    /// The WebTransport application code carried by this HTTP/3 code, if it is in the
    /// application range (see [`wt_from_h3`]).
    pub const fn to_wt(self) -> Option<u32> {
        wt_from_h3(self.0)
    }

    /// The HTTP/3 code carrying WebTransport application code `code` (see [`wt_to_h3`]).
    pub const fn from_wt(code: u32) -> Self {
        H3Code(wt_to_h3(code))
    }
}

/// First HTTP/3 code of the WebTransport application range (maps app code 0).
pub const WT_APP_FIRST: u64 = 0x52e4a40fa8db;
/// Last HTTP/3 code of the WebTransport application range (maps app code 0xffff_ffff).
pub const WT_APP_LAST: u64 = 0x52e5ac983162;

/// Maps a 32-bit WebTransport application error code into the HTTP/3 code space
/// (H3 draft-07+), skipping the reserved codepoints `0x1f * N + 0x21`.
///
/// ```
/// assert_eq!(wt_core::codes::wt_to_h3(7), 0x52e4a40fa8e2);
/// assert_eq!(wt_core::codes::wt_to_h3(0x1e), 0x52e4a40fa8fa);
/// ```
pub const fn wt_to_h3(code: u32) -> u64 {
    let n = code as u64;
    WT_APP_FIRST + n + n / 0x1e
}

/// Maps an HTTP/3 code back to a WebTransport application code; `None` when the code is
/// outside the application range or is a reserved codepoint.
pub const fn wt_from_h3(h: u64) -> Option<u32> {
    if h < WT_APP_FIRST || h > WT_APP_LAST || (h - 0x21) % 0x1f == 0 {
        return None;
    }
    let s = h - WT_APP_FIRST;
    Some((s - s / 0x1f) as u32)
}

/// An HTTP/2 error code (RST_STREAM, GOAWAY).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct H2Code(pub u32);

named_codes! { H2Code:
    /// Graceful shutdown.
    NO_ERROR = 0x0,
    /// Protocol error (also our default for WT_ERROR / WT_STREAM_STATE_ERROR, which the draft
    /// leaves unassigned).
    PROTOCOL_ERROR = 0x1,
    /// Implementation fault.
    INTERNAL_ERROR = 0x2,
    /// Flow-control violation (our default for WT_FLOW_CONTROL_ERROR).
    FLOW_CONTROL_ERROR = 0x3,
    /// Stream refused before processing.
    REFUSED_STREAM = 0x7,
    /// Stream no longer needed.
    CANCEL = 0x8,
    /// Excessive load.
    ENHANCE_YOUR_CALM = 0xb,
    /// TLS properties inadequate.
    INADEQUATE_SECURITY = 0xc,
}

/// A capsule type (RFC 9297). Unknown values, including GREASE, round-trip.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapsuleType(pub u64);

named_codes! { CapsuleType:
    /// HTTP Datagram carried in a capsule (H2 binding).
    DATAGRAM = 0x00,
    /// Legacy REGISTER_DATAGRAM_NO_CONTEXT (h3-datagram-04/05), sent by Chrome; ignored.
    REGISTER_DATAGRAM_NO_CONTEXT = 0xff37a2,
    /// WT_CLOSE_SESSION: 32-bit code then UTF-8 reason.
    WT_CLOSE_SESSION = 0x2843,
    /// WT_DRAIN_SESSION: empty.
    WT_DRAIN_SESSION = 0x78ae,
    /// PADDING (H2).
    PADDING = 0x190B4D38,
    /// WT_RESET_STREAM (H2).
    WT_RESET_STREAM = 0x190B4D39,
    /// WT_STOP_SENDING (H2).
    WT_STOP_SENDING = 0x190B4D3A,
    /// WT_STREAM, odd variant (draft-15: with FIN; legacy mapping: without).
    WT_STREAM_3B = 0x190B4D3B,
    /// WT_STREAM, even variant (draft-15: without FIN; legacy mapping: with).
    WT_STREAM_3C = 0x190B4D3C,
    /// WT_MAX_DATA.
    WT_MAX_DATA = 0x190B4D3D,
    /// WT_MAX_STREAM_DATA (H2 only).
    WT_MAX_STREAM_DATA = 0x190B4D3E,
    /// WT_MAX_STREAMS for bidirectional streams.
    WT_MAX_STREAMS_BIDI = 0x190B4D3F,
    /// WT_MAX_STREAMS for unidirectional streams.
    WT_MAX_STREAMS_UNI = 0x190B4D40,
    /// WT_DATA_BLOCKED.
    WT_DATA_BLOCKED = 0x190B4D41,
    /// WT_STREAM_DATA_BLOCKED (H2 only).
    WT_STREAM_DATA_BLOCKED = 0x190B4D42,
    /// WT_STREAMS_BLOCKED for bidirectional streams.
    WT_STREAMS_BLOCKED_BIDI = 0x190B4D43,
    /// WT_STREAMS_BLOCKED for unidirectional streams.
    WT_STREAMS_BLOCKED_UNI = 0x190B4D44,
}

impl CapsuleType {
    /// True for the reserved GREASE capsule types `0x29 * N + 0x17`.
    pub const fn is_grease(self) -> bool {
        self.0 >= 0x17 && (self.0 - 0x17) % 0x29 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_from_the_wire_reference() {
        assert_eq!(wt_to_h3(0), 0x52e4a40fa8db);
        assert_eq!(wt_to_h3(0x1d), 0x52e4a40fa8f8);
        assert_eq!(wt_to_h3(0x1e), 0x52e4a40fa8fa);
        assert_eq!(wt_to_h3(0xff), 0x52e4a40fa9e2);
        assert_eq!(wt_to_h3(0xffff_ffff), 0x52e5ac983162);
        assert_eq!(wt_to_h3(7), 0x52e4a40fa8e2);
        assert_eq!(wt_to_h3(9), 0x52e4a40fa8e4);
        assert_eq!(wt_from_h3(0x52e4a40fa8f9), None, "reserved codepoint");
        assert_eq!(wt_from_h3(WT_APP_FIRST - 1), None);
        assert_eq!(wt_from_h3(WT_APP_LAST + 1), None);
        assert_eq!(wt_from_h3(0x10c), None);
    }

    /// Round trip over the whole u32 range: every code maps to a non-reserved codepoint in
    /// range, the mapping is strictly increasing (so injective), and maps back.
    #[test]
    fn round_trip_whole_range() {
        let mut prev = None;
        let mut code: u64 = 0;
        while code <= u32::MAX as u64 {
            let c = code as u32;
            let h = wt_to_h3(c);
            assert!((WT_APP_FIRST..=WT_APP_LAST).contains(&h));
            assert!(!H3Code(h).is_reserved(), "{c} mapped to reserved {h:#x}");
            assert_eq!(wt_from_h3(h), Some(c));
            if let Some(p) = prev {
                // Consecutive codes are adjacent, or skip exactly one reserved codepoint.
                match h - p {
                    1 => {}
                    2 => {
                        assert!(H3Code(p + 1).is_reserved());
                        assert_eq!(wt_from_h3(p + 1), None);
                    }
                    d => panic!("gap of {d} after {p:#x}"),
                }
            }
            prev = Some(h);
            code += 1;
        }
    }

    #[test]
    fn grease_and_debug() {
        assert!(CapsuleType(0x17).is_grease());
        assert!(CapsuleType(0x40).is_grease());
        assert!(CapsuleType(0x69).is_grease());
        assert!(!CapsuleType(0x2843).is_grease());
        assert!(H3Code(0x21).is_reserved());
        assert!(H3Code(0x5f).is_reserved());
        assert_eq!(
            format!("{:?}", H3Code::H3_MESSAGE_ERROR),
            "H3_MESSAGE_ERROR"
        );
        assert_eq!(format!("{:?}", H3Code(0x1234)), "H3Code(0x1234)");
        assert_eq!(format!("{}", CapsuleType(0x17)), "0x17");
    }
}
