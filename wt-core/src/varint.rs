//! QUIC variable-length integers (RFC 9000 §16).
//!
//! The two most significant bits of the first byte give the encoded length (1, 2, 4 or 8
//! bytes); the rest is the value, big-endian. Encoding is always minimal; decoding accepts
//! any length, as RFC 9297 and the WebTransport drafts require.
//!
//! ```
//! use wt_core::varint::{self, VarInt};
//! let mut out = Vec::new();
//! VarInt::from_u32(15293).encode(&mut out);
//! assert_eq!(out, [0x7b, 0xbd]);
//! let mut input = &out[..];
//! assert_eq!(varint::decode(&mut input).unwrap(), 15293);
//! ```

use bytes::{Buf, BufMut};

/// The largest value a varint can carry: 2^62 − 1.
pub const MAX: u64 = (1 << 62) - 1;

/// A value in the range `0..=2^62-1`, encodable as a QUIC varint.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VarInt(u64);

/// The value does not fit in 62 bits.
#[derive(Debug, Copy, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value {0} does not fit in a QUIC varint (max 2^62-1)")]
pub struct VarIntBoundsExceeded(pub u64);

/// Decoding failed: the input ended in the middle of a varint.
///
/// For incremental decoders this means "need more bytes"; for a parser of a complete
/// frame or capsule it means the frame is truncated.
#[derive(Debug, Copy, Clone, PartialEq, Eq, thiserror::Error)]
#[error("truncated varint")]
pub struct UnexpectedEnd;

impl VarInt {
    /// The largest representable value.
    pub const MAX: VarInt = VarInt(MAX);

    /// Builds a varint from a `u32` (always in range).
    pub const fn from_u32(v: u32) -> Self {
        VarInt(v as u64)
    }

    /// Builds a varint, failing if `v` exceeds 2^62 − 1.
    pub const fn from_u64(v: u64) -> Result<Self, VarIntBoundsExceeded> {
        if v <= MAX {
            Ok(VarInt(v))
        } else {
            Err(VarIntBoundsExceeded(v))
        }
    }

    /// The value.
    pub const fn into_inner(self) -> u64 {
        self.0
    }

    /// Number of bytes of the minimal encoding.
    pub const fn size(self) -> usize {
        size(self.0)
    }

    /// Appends the minimal encoding to `buf`.
    pub fn encode<B: BufMut>(self, buf: &mut B) {
        encode_unchecked(self.0, buf)
    }
}

impl From<u32> for VarInt {
    fn from(v: u32) -> Self {
        VarInt(v as u64)
    }
}

impl From<u16> for VarInt {
    fn from(v: u16) -> Self {
        VarInt(v as u64)
    }
}

impl From<u8> for VarInt {
    fn from(v: u8) -> Self {
        VarInt(v as u64)
    }
}

impl TryFrom<u64> for VarInt {
    type Error = VarIntBoundsExceeded;
    fn try_from(v: u64) -> Result<Self, Self::Error> {
        VarInt::from_u64(v)
    }
}

impl From<VarInt> for u64 {
    fn from(v: VarInt) -> u64 {
        v.0
    }
}

impl std::fmt::Display for VarInt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Size in bytes of the minimal encoding of `v` (values above 2^62 − 1 report 8).
pub const fn size(v: u64) -> usize {
    if v < (1 << 6) {
        1
    } else if v < (1 << 14) {
        2
    } else if v < (1 << 30) {
        4
    } else {
        8
    }
}

/// Appends the minimal encoding of `v`; fails if `v` exceeds 2^62 − 1.
pub fn encode<B: BufMut>(v: u64, buf: &mut B) -> Result<(), VarIntBoundsExceeded> {
    if v > MAX {
        return Err(VarIntBoundsExceeded(v));
    }
    encode_unchecked(v, buf);
    Ok(())
}

/// Appends the minimal encoding of `v`, which the caller guarantees is at most 2^62 − 1.
/// Larger values are masked to 62 bits (debug builds assert).
pub fn encode_unchecked<B: BufMut>(v: u64, buf: &mut B) {
    debug_assert!(v <= MAX, "varint out of range: {v}");
    if v < (1 << 6) {
        buf.put_u8(v as u8);
    } else if v < (1 << 14) {
        buf.put_u16(0x4000 | v as u16);
    } else if v < (1 << 30) {
        buf.put_u32(0x8000_0000 | v as u32);
    } else {
        buf.put_u64(0xc000_0000_0000_0000 | (v & MAX));
    }
}

/// Decodes one varint from the front of `buf`, advancing it. On [`UnexpectedEnd`] the buffer
/// is left untouched. Works on chained (non-contiguous) buffers too.
pub fn decode<B: Buf>(buf: &mut B) -> Result<u64, UnexpectedEnd> {
    if !buf.has_remaining() {
        return Err(UnexpectedEnd);
    }
    let len = 1usize << (buf.chunk()[0] >> 6);
    if buf.remaining() < len {
        return Err(UnexpectedEnd);
    }
    Ok(match len {
        1 => (buf.get_u8() & 0x3f) as u64,
        2 => (buf.get_u16() & 0x3fff) as u64,
        4 => (buf.get_u32() & 0x3fff_ffff) as u64,
        _ => buf.get_u64() & MAX,
    })
}

/// Decodes one varint from the front of `bytes` without consuming: returns the value and the
/// number of bytes it occupies.
pub fn peek(bytes: &[u8]) -> Result<(u64, usize), UnexpectedEnd> {
    let mut b = bytes;
    let v = decode(&mut b)?;
    Ok((v, bytes.len() - b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, &mut out).unwrap();
        out
    }

    #[test]
    fn rfc_vectors() {
        assert_eq!(enc(37), [0x25]);
        assert_eq!(enc(15293), [0x7b, 0xbd]);
        assert_eq!(enc(494878333), [0x9d, 0x7f, 0x3e, 0x7d]);
        assert_eq!(
            enc(151288809941952652),
            [0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]
        );
        for (bytes, v) in [
            (&[0x25][..], 37u64),
            (&[0x40, 0x25], 37),
            (&[0x7b, 0xbd], 15293),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494878333),
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151288809941952652,
            ),
        ] {
            let mut b = bytes;
            assert_eq!(decode(&mut b).unwrap(), v);
            assert!(b.is_empty());
        }
    }

    #[test]
    fn codepoints_from_the_wire_reference() {
        assert_eq!(enc(0xffd277), [0x80, 0xff, 0xd2, 0x77]);
        assert_eq!(enc(0x2b603742), [0xab, 0x60, 0x37, 0x42]);
        assert_eq!(
            enc(0xc671706a),
            [0xc0, 0x00, 0x00, 0x00, 0xc6, 0x71, 0x70, 0x6a]
        );
        assert_eq!(enc(0x2c7cf000), [0xac, 0x7c, 0xf0, 0x00]);
        assert_eq!(enc(0x41), [0x40, 0x41]);
        assert_eq!(enc(0x2843), [0x68, 0x43]);
        assert_eq!(enc(0x78ae), [0x80, 0x00, 0x78, 0xae]);
        assert_eq!(enc(0x190B4D38), [0x99, 0x0b, 0x4d, 0x38]);
        assert_eq!(
            enc(0x52e4a40fa8db),
            [0xc0, 0x00, 0x52, 0xe4, 0xa4, 0x0f, 0xa8, 0xdb]
        );
    }

    #[test]
    fn boundaries_round_trip() {
        for v in [
            0,
            63,
            64,
            16383,
            16384,
            (1 << 30) - 1,
            1 << 30,
            MAX - 1,
            MAX,
        ] {
            let e = enc(v);
            assert_eq!(e.len(), size(v));
            let mut s = &e[..];
            assert_eq!(decode(&mut s).unwrap(), v);
        }
        assert_eq!(
            encode(MAX + 1, &mut Vec::new()),
            Err(VarIntBoundsExceeded(MAX + 1))
        );
        assert!(VarInt::from_u64(u64::MAX).is_err());
    }

    #[test]
    fn truncated_input_is_not_consumed() {
        for full in [enc(15293), enc(494878333), enc(MAX)] {
            for cut in 0..full.len() {
                let mut s = &full[..cut];
                assert_eq!(decode(&mut s), Err(UnexpectedEnd));
                assert_eq!(s.len(), cut, "input must be left untouched");
            }
        }
    }

    #[test]
    fn chained_buffers_decode() {
        let full = enc(151288809941952652);
        for split in 1..full.len() {
            let mut chain = (&full[..split]).chain(&full[split..]);
            assert_eq!(decode(&mut chain).unwrap(), 151288809941952652);
            assert_eq!(chain.remaining(), 0);
        }
    }
}
