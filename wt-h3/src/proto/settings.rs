//! HTTP/3 SETTINGS (RFC 9114 §7.2.4) and the setting identifiers WebTransport uses.

use bytes::BytesMut;
use wt_core::codes::H3Code;
use wt_core::varint;
use wt_core::ProtocolError;

use super::frame;

/// QPACK_MAX_TABLE_CAPACITY.
pub const QPACK_MAX_TABLE_CAPACITY: u64 = 0x01;
/// MAX_FIELD_SECTION_SIZE.
pub const MAX_FIELD_SECTION_SIZE: u64 = 0x06;
/// QPACK_BLOCKED_STREAMS.
pub const QPACK_BLOCKED_STREAMS: u64 = 0x07;
/// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 9220).
pub const ENABLE_CONNECT_PROTOCOL: u64 = 0x08;
/// SETTINGS_H3_DATAGRAM (RFC 9297).
pub const H3_DATAGRAM: u64 = 0x33;
/// SETTINGS_H3_DATAGRAM of h3-datagram-04/05 (Chrome, Firefox).
pub const H3_DATAGRAM_DRAFT04: u64 = 0xffd277;
/// SETTINGS_ENABLE_WEBTRANSPORT (H3 draft-02…06).
pub const ENABLE_WEBTRANSPORT: u64 = 0x2b603742;
/// SETTINGS_WEBTRANSPORT_MAX_SESSIONS (H3 draft-07…12).
pub const WEBTRANSPORT_MAX_SESSIONS_D07: u64 = 0xc671706a;
/// SETTINGS_WT_MAX_SESSIONS (H3 draft-13/14).
pub const WT_MAX_SESSIONS_D13: u64 = 0x14e9cd29;
/// SETTINGS_WT_ENABLED (H3 draft-15/16).
pub const WT_ENABLED: u64 = 0x2c7cf000;
/// SETTINGS_WT_INITIAL_MAX_DATA.
pub const WT_INITIAL_MAX_DATA: u64 = 0x2b61;
/// SETTINGS_WT_INITIAL_MAX_STREAMS_UNI.
pub const WT_INITIAL_MAX_STREAMS_UNI: u64 = 0x2b64;
/// SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI.
pub const WT_INITIAL_MAX_STREAMS_BIDI: u64 = 0x2b65;

/// The name of a setting identifier we know.
pub fn name(id: u64) -> &'static str {
    match id {
        QPACK_MAX_TABLE_CAPACITY => "SETTINGS_QPACK_MAX_TABLE_CAPACITY",
        MAX_FIELD_SECTION_SIZE => "SETTINGS_MAX_FIELD_SECTION_SIZE",
        QPACK_BLOCKED_STREAMS => "SETTINGS_QPACK_BLOCKED_STREAMS",
        ENABLE_CONNECT_PROTOCOL => "SETTINGS_ENABLE_CONNECT_PROTOCOL",
        H3_DATAGRAM => "SETTINGS_H3_DATAGRAM",
        H3_DATAGRAM_DRAFT04 => "SETTINGS_H3_DATAGRAM_DRAFT04",
        ENABLE_WEBTRANSPORT => "SETTINGS_ENABLE_WEBTRANSPORT",
        WEBTRANSPORT_MAX_SESSIONS_D07 => "SETTINGS_WEBTRANSPORT_MAX_SESSIONS",
        WT_MAX_SESSIONS_D13 => "SETTINGS_WT_MAX_SESSIONS",
        WT_ENABLED => "SETTINGS_WT_ENABLED",
        WT_INITIAL_MAX_DATA => "SETTINGS_WT_INITIAL_MAX_DATA",
        WT_INITIAL_MAX_STREAMS_UNI => "SETTINGS_WT_INITIAL_MAX_STREAMS_UNI",
        WT_INITIAL_MAX_STREAMS_BIDI => "SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI",
        _ => "unknown setting",
    }
}

/// Largest number of entries we keep from one SETTINGS frame (unknown ones included); the
/// frame is at most 16 KiB anyway.
const MAX_ENTRIES: usize = 4096;

/// A received or to-be-sent SETTINGS frame: identifier/value pairs in wire order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    entries: Vec<(u64, u64)>,
}

impl Settings {
    /// Settings from pairs (for sending).
    pub fn from_pairs(pairs: &[(u64, u64)]) -> Self {
        Settings {
            entries: pairs.to_vec(),
        }
    }

    /// The value of `id`, if present.
    pub fn get(&self, id: u64) -> Option<u64> {
        self.entries.iter().find(|(i, _)| *i == id).map(|(_, v)| *v)
    }

    /// True if `id` is present with a non-zero value.
    pub fn enabled(&self, id: u64) -> bool {
        self.get(id).is_some_and(|v| v != 0)
    }

    /// Every pair, in wire order.
    pub fn pairs(&self) -> &[(u64, u64)] {
        &self.entries
    }

    /// Parses a SETTINGS payload. Duplicate identifiers and the HTTP/2-only identifiers
    /// 0x02…0x05 are H3_SETTINGS_ERROR; a truncated pair is H3_FRAME_ERROR.
    pub fn parse(mut payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut entries: Vec<(u64, u64)> = Vec::new();
        while !payload.is_empty() {
            let (id, value) = match (varint::decode(&mut payload), varint::decode(&mut payload)) {
                (Ok(i), Ok(v)) => (i, v),
                _ => {
                    return Err(ProtocolError::h3(
                        H3Code::H3_FRAME_ERROR,
                        "truncated setting in SETTINGS frame",
                    ))
                }
            };
            if (0x02..=0x05).contains(&id) {
                return Err(ProtocolError::h3(
                    H3Code::H3_SETTINGS_ERROR,
                    "HTTP/2 setting identifier in SETTINGS",
                ));
            }
            if entries.iter().any(|(i, _)| *i == id) {
                return Err(ProtocolError::h3(
                    H3Code::H3_SETTINGS_ERROR,
                    "duplicate setting identifier",
                ));
            }
            if entries.len() >= MAX_ENTRIES {
                return Err(ProtocolError::h3(
                    H3Code::H3_EXCESSIVE_LOAD,
                    "too many settings",
                ));
            }
            entries.push((id, value));
        }
        Ok(Settings { entries })
    }

    /// Appends a SETTINGS frame.
    pub fn encode(&self, out: &mut BytesMut) {
        let len: usize = self
            .entries
            .iter()
            .map(|(i, v)| varint::size(*i) + varint::size(*v))
            .sum();
        frame::encode_header(frame::SETTINGS, len as u64, out);
        for (i, v) in &self.entries {
            varint::encode_unchecked(*i, out);
            varint::encode_unchecked(*v, out);
        }
    }

    /// Checks values that must be 0 or 1 (H3_DATAGRAM, ENABLE_CONNECT_PROTOCOL, WT_ENABLED):
    /// anything else is H3_SETTINGS_ERROR.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        for (id, what) in [
            (H3_DATAGRAM, "SETTINGS_H3_DATAGRAM not 0 or 1"),
            (
                H3_DATAGRAM_DRAFT04,
                "SETTINGS_H3_DATAGRAM_DRAFT04 not 0 or 1",
            ),
            (
                ENABLE_CONNECT_PROTOCOL,
                "SETTINGS_ENABLE_CONNECT_PROTOCOL not 0 or 1",
            ),
            (WT_ENABLED, "SETTINGS_WT_ENABLED greater than 1"),
        ] {
            if self.get(id).is_some_and(|v| v > 1) {
                return Err(ProtocolError::h3(H3Code::H3_SETTINGS_ERROR, what));
            }
        }
        Ok(())
    }

    /// True if the peer enabled HTTP datagrams (either codepoint).
    pub fn datagrams(&self) -> bool {
        self.get(H3_DATAGRAM) == Some(1) || self.get(H3_DATAGRAM_DRAFT04) == Some(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: ProtocolError) -> H3Code {
        match e.code {
            wt_core::WireCode::H3(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn control_stream_bytes_from_the_wire_reference() {
        // 00 = control stream type, then SETTINGS (d16, flow control on, 1 MiB / 100 / 100).
        let s = Settings::from_pairs(&[
            (ENABLE_CONNECT_PROTOCOL, 1),
            (H3_DATAGRAM, 1),
            (WT_ENABLED, 1),
            (WT_INITIAL_MAX_DATA, 1 << 20),
            (WT_INITIAL_MAX_STREAMS_UNI, 100),
            (WT_INITIAL_MAX_STREAMS_BIDI, 100),
        ]);
        let mut out = BytesMut::from(&[0x00][..]);
        s.encode(&mut out);
        assert_eq!(
            &out[..],
            &[
                0x00, 0x04, 0x17, 0x08, 0x01, 0x33, 0x01, 0xac, 0x7c, 0xf0, 0x00, 0x01, 0x6b, 0x61,
                0x80, 0x10, 0x00, 0x00, 0x6b, 0x64, 0x40, 0x64, 0x6b, 0x65, 0x40, 0x64
            ]
        );
        let parsed = Settings::parse(&out[3..]).unwrap();
        assert_eq!(parsed, s);
    }

    #[test]
    fn accept_everything_bytes() {
        let s = Settings::from_pairs(&[
            (ENABLE_CONNECT_PROTOCOL, 1),
            (H3_DATAGRAM, 1),
            (H3_DATAGRAM_DRAFT04, 1),
            (ENABLE_WEBTRANSPORT, 1),
            (WEBTRANSPORT_MAX_SESSIONS_D07, 1),
            (WT_MAX_SESSIONS_D13, 1),
            (WT_ENABLED, 1),
        ]);
        let mut out = BytesMut::from(&[0x00][..]);
        s.encode(&mut out);
        let want = [
            0x00, 0x04, 0x21, 0x08, 0x01, 0x33, 0x01, 0x80, 0xff, 0xd2, 0x77, 0x01, 0xab, 0x60,
            0x37, 0x42, 0x01, 0xc0, 0x00, 0x00, 0x00, 0xc6, 0x71, 0x70, 0x6a, 0x01, 0x94, 0xe9,
            0xcd, 0x29, 0x01, 0xac, 0x7c, 0xf0, 0x00, 0x01,
        ];
        assert_eq!(&out[..], &want);
    }

    #[test]
    fn malformed_settings() {
        assert_eq!(
            code(Settings::parse(&[0x33, 0x01, 0x33, 0x00]).unwrap_err()),
            H3Code::H3_SETTINGS_ERROR
        );
        assert_eq!(
            code(Settings::parse(&[0x03, 0x01]).unwrap_err()),
            H3Code::H3_SETTINGS_ERROR
        );
        // Trailing partial varints: every truncation of a two-setting payload.
        let full = [0x33, 0x01, 0xab, 0x60, 0x37, 0x42, 0x01];
        for cut in 1..full.len() {
            let r = Settings::parse(&full[..cut]);
            if cut == 2 {
                assert!(r.is_ok());
            } else {
                assert_eq!(code(r.unwrap_err()), H3Code::H3_FRAME_ERROR, "cut {cut}");
            }
        }
        // GREASE identifiers are kept but ignored by lookups of known ones.
        let s = Settings::parse(&[0x21, 0x05, 0x33, 0x01]).unwrap();
        assert!(s.datagrams());
        assert_eq!(s.get(0x21), Some(5));
    }

    #[test]
    fn value_validation() {
        assert!(Settings::from_pairs(&[(H3_DATAGRAM, 1), (WT_ENABLED, 1)])
            .validate()
            .is_ok());
        assert_eq!(
            code(
                Settings::from_pairs(&[(H3_DATAGRAM, 2)])
                    .validate()
                    .unwrap_err()
            ),
            H3Code::H3_SETTINGS_ERROR
        );
        assert_eq!(
            code(
                Settings::from_pairs(&[(WT_ENABLED, 2)])
                    .validate()
                    .unwrap_err()
            ),
            H3Code::H3_SETTINGS_ERROR
        );
        assert!(!Settings::from_pairs(&[(H3_DATAGRAM, 0)]).datagrams());
        assert!(Settings::from_pairs(&[(H3_DATAGRAM_DRAFT04, 1)]).datagrams());
    }
}
