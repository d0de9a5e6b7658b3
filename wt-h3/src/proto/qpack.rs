//! A sans-IO QPACK field section codec (RFC 9204) restricted to the static
//! table.
//!
//! We advertise `SETTINGS_QPACK_MAX_TABLE_CAPACITY = 0`, so a conforming peer
//! never references a dynamic table, and we never create one. What remains is:
//!
//! * the Encoded Field Section Prefix (RFC 9204 §4.5.1), whose Required Insert
//!   Count must be 0;
//! * indexed field lines that reference the static table (§4.5.2);
//! * literal field lines with a static name reference (§4.5.4);
//! * literal field lines with a literal name (§4.5.6);
//!
//! with prefix integers (RFC 7541 §5.1) and string literals, optionally
//! Huffman-coded (RFC 7541 §5.2, see [`super::huffman`]). Every representation
//! that would touch the dynamic table is rejected with
//! [`QpackError::DynamicTableReference`].
//!
//! Decoding never panics, whatever the input: every read is bounds-checked and
//! every integer is checked for overflow.

use bytes::{BufMut, Bytes, BytesMut};

use super::huffman::{self, HuffmanError};

/// HTTP/3 error code `QPACK_DECOMPRESSION_FAILED` (RFC 9204 §6).
pub const QPACK_DECOMPRESSION_FAILED: u64 = 0x0200;

/// HTTP/3 error code `H3_EXCESSIVE_LOAD` (RFC 9114 §8.1).
pub const H3_EXCESSIVE_LOAD: u64 = 0x0107;

/// Per-field overhead, in octets, added to `name.len() + value.len()` when
/// computing the size of a header list (RFC 9114 §4.2.2, RFC 7541 §4.1).
pub const FIELD_OVERHEAD: usize = 32;

/// Number of entries in the QPACK static table (RFC 9204 Appendix A).
pub const STATIC_TABLE_LEN: usize = 99;

/// Most continuation octets a prefix integer may use. Ten octets carry 70
/// bits, enough for any `u64`; anything longer is refused as absurd.
const MAX_CONTINUATION_OCTETS: u32 = 10;

/// One decoded header field (a name/value pair).
///
/// Names and values are raw octets, exactly as the peer sent them; checking
/// them against HTTP's field syntax is the job of the layer above.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderField {
    /// The field name, for example `:path` or `content-type`.
    pub name: Bytes,
    /// The field value.
    pub value: Bytes,
}

impl HeaderField {
    /// Creates a field from anything convertible to [`Bytes`].
    pub fn new(name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        HeaderField {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The size of this field in a header list: name + value + 32 octets
    /// (RFC 9114 §4.2.2).
    pub fn size(&self) -> usize {
        field_size(self.name.len(), self.value.len())
    }
}

/// Why a field section could not be decoded.
///
/// Every variant except [`QpackError::HeaderListTooLarge`] means the peer's
/// encoder is broken or hostile; RFC 9204 §2.2 makes them connection errors
/// of type `QPACK_DECOMPRESSION_FAILED` (see [`QpackError::error_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QpackError {
    /// The block ended in the middle of the prefix, a representation, an
    /// integer or a string literal.
    #[error("truncated QPACK field section")]
    Truncated,
    /// A prefix integer does not fit in a `u64` (or in a `usize` where it is
    /// a length), or uses more continuation octets than any `u64` needs.
    #[error("QPACK integer overflow")]
    IntegerOverflow,
    /// The Encoded Field Section Prefix carries a non-zero Required Insert
    /// Count; with a dynamic table capacity of 0 only 0 is valid
    /// (RFC 9204 §4.5.1.1). Holds the encoded value.
    #[error("non-zero QPACK Required Insert Count {0} with a zero-capacity dynamic table")]
    NonZeroRequiredInsertCount(u64),
    /// The prefix's Sign bit is set although Required Insert Count is 0,
    /// which would make the Base negative (RFC 9204 §4.5.1.2).
    #[error("negative QPACK Base")]
    NegativeBase,
    /// A field line references the dynamic table (relative or post-base
    /// index), which we never allow to exist.
    #[error("QPACK dynamic table reference with a zero-capacity dynamic table")]
    DynamicTableReference,
    /// A static table index at or beyond [`STATIC_TABLE_LEN`].
    #[error("invalid QPACK static table index {0}")]
    InvalidStaticIndex(u64),
    /// A Huffman-coded string literal is malformed.
    #[error("invalid Huffman string in QPACK field section: {0}")]
    Huffman(#[from] HuffmanError),
    /// The decoded header list exceeds the caller's limit. `size` is the
    /// size reached when decoding stopped, a lower bound of the full size.
    #[error("header list size {size} exceeds the limit of {max}")]
    HeaderListTooLarge {
        /// Size accounted so far (name + value + 32 per field).
        size: usize,
        /// The limit passed to [`decode_field_section`].
        max: usize,
    },
}

impl QpackError {
    /// The HTTP/3 error code to close the connection or reset the stream
    /// with.
    ///
    /// Decoding failures map to [`QPACK_DECOMPRESSION_FAILED`], a connection
    /// error. [`QpackError::HeaderListTooLarge`] is not a QPACK failure (the
    /// block was well formed): it maps to [`H3_EXCESSIVE_LOAD`], and callers
    /// may prefer to treat it as a stream error (a server can answer 431,
    /// RFC 9114 §4.2.2).
    pub fn error_code(&self) -> u64 {
        match self {
            QpackError::HeaderListTooLarge { .. } => H3_EXCESSIVE_LOAD,
            _ => QPACK_DECOMPRESSION_FAILED,
        }
    }
}

/// The QPACK static table, RFC 9204 Appendix A.
#[rustfmt::skip]
static STATIC_TABLE: [(&[u8], &[u8]); STATIC_TABLE_LEN] = [
    (b":authority", b""),                                      // 0
    (b":path", b"/"),                                          // 1
    (b"age", b"0"),                                            // 2
    (b"content-disposition", b""),                             // 3
    (b"content-length", b"0"),                                 // 4
    (b"cookie", b""),                                          // 5
    (b"date", b""),                                            // 6
    (b"etag", b""),                                            // 7
    (b"if-modified-since", b""),                               // 8
    (b"if-none-match", b""),                                   // 9
    (b"last-modified", b""),                                   // 10
    (b"link", b""),                                            // 11
    (b"location", b""),                                        // 12
    (b"referer", b""),                                         // 13
    (b"set-cookie", b""),                                      // 14
    (b":method", b"CONNECT"),                                  // 15
    (b":method", b"DELETE"),                                   // 16
    (b":method", b"GET"),                                      // 17
    (b":method", b"HEAD"),                                     // 18
    (b":method", b"OPTIONS"),                                  // 19
    (b":method", b"POST"),                                     // 20
    (b":method", b"PUT"),                                      // 21
    (b":scheme", b"http"),                                     // 22
    (b":scheme", b"https"),                                    // 23
    (b":status", b"103"),                                      // 24
    (b":status", b"200"),                                      // 25
    (b":status", b"304"),                                      // 26
    (b":status", b"404"),                                      // 27
    (b":status", b"503"),                                      // 28
    (b"accept", b"*/*"),                                       // 29
    (b"accept", b"application/dns-message"),                   // 30
    (b"accept-encoding", b"gzip, deflate, br"),                // 31
    (b"accept-ranges", b"bytes"),                              // 32
    (b"access-control-allow-headers", b"cache-control"),       // 33
    (b"access-control-allow-headers", b"content-type"),        // 34
    (b"access-control-allow-origin", b"*"),                    // 35
    (b"cache-control", b"max-age=0"),                          // 36
    (b"cache-control", b"max-age=2592000"),                    // 37
    (b"cache-control", b"max-age=604800"),                     // 38
    (b"cache-control", b"no-cache"),                           // 39
    (b"cache-control", b"no-store"),                           // 40
    (b"cache-control", b"public, max-age=31536000"),           // 41
    (b"content-encoding", b"br"),                              // 42
    (b"content-encoding", b"gzip"),                            // 43
    (b"content-type", b"application/dns-message"),            // 44
    (b"content-type", b"application/javascript"),             // 45
    (b"content-type", b"application/json"),                   // 46
    (b"content-type", b"application/x-www-form-urlencoded"),   // 47
    (b"content-type", b"image/gif"),                           // 48
    (b"content-type", b"image/jpeg"),                          // 49
    (b"content-type", b"image/png"),                           // 50
    (b"content-type", b"text/css"),                            // 51
    (b"content-type", b"text/html; charset=utf-8"),            // 52
    (b"content-type", b"text/plain"),                          // 53
    (b"content-type", b"text/plain;charset=utf-8"),            // 54
    (b"range", b"bytes=0-"),                                   // 55
    (b"strict-transport-security", b"max-age=31536000"),       // 56
    (b"strict-transport-security", b"max-age=31536000; includesubdomains"), // 57
    (b"strict-transport-security", b"max-age=31536000; includesubdomains; preload"), // 58
    (b"vary", b"accept-encoding"),                             // 59
    (b"vary", b"origin"),                                      // 60
    (b"x-content-type-options", b"nosniff"),                   // 61
    (b"x-xss-protection", b"1; mode=block"),                   // 62
    (b":status", b"100"),                                      // 63
    (b":status", b"204"),                                      // 64
    (b":status", b"206"),                                      // 65
    (b":status", b"302"),                                      // 66
    (b":status", b"400"),                                      // 67
    (b":status", b"403"),                                      // 68
    (b":status", b"421"),                                      // 69
    (b":status", b"425"),                                      // 70
    (b":status", b"500"),                                      // 71
    (b"accept-language", b""),                                 // 72
    (b"access-control-allow-credentials", b"FALSE"),           // 73
    (b"access-control-allow-credentials", b"TRUE"),            // 74
    (b"access-control-allow-headers", b"*"),                   // 75
    (b"access-control-allow-methods", b"get"),                 // 76
    (b"access-control-allow-methods", b"get, post, options"),  // 77
    (b"access-control-allow-methods", b"options"),             // 78
    (b"access-control-expose-headers", b"content-length"),     // 79
    (b"access-control-request-headers", b"content-type"),      // 80
    (b"access-control-request-method", b"get"),                // 81
    (b"access-control-request-method", b"post"),               // 82
    (b"alt-svc", b"clear"),                                    // 83
    (b"authorization", b""),                                   // 84
    (b"content-security-policy", b"script-src 'none'; object-src 'none'; base-uri 'none'"), // 85
    (b"early-data", b"1"),                                     // 86
    (b"expect-ct", b""),                                       // 87
    (b"forwarded", b""),                                       // 88
    (b"if-range", b""),                                        // 89
    (b"origin", b""),                                          // 90
    (b"purpose", b"prefetch"),                                 // 91
    (b"server", b""),                                          // 92
    (b"timing-allow-origin", b"*"),                            // 93
    (b"upgrade-insecure-requests", b"1"),                      // 94
    (b"user-agent", b""),                                      // 95
    (b"x-forwarded-for", b""),                                 // 96
    (b"x-frame-options", b"deny"),                             // 97
    (b"x-frame-options", b"sameorigin"),                       // 98
];

/// The static table entry at `index` as `(name, value)`, or `None` when
/// `index` is 99 or more.
pub fn static_entry(index: usize) -> Option<(&'static [u8], &'static [u8])> {
    STATIC_TABLE.get(index).copied()
}

/// Size of a field in a header list (RFC 9114 §4.2.2), saturating.
fn field_size(name_len: usize, value_len: usize) -> usize {
    name_len
        .saturating_add(value_len)
        .saturating_add(FIELD_OVERHEAD)
}

// ---------------------------------------------------------------------------
// Primitives: prefix integers and string literals (RFC 7541 §5).
// ---------------------------------------------------------------------------

/// Splits the first octet off `input`.
fn take_octet(input: &mut &[u8]) -> Result<u8, QpackError> {
    let (&first, rest) = input.split_first().ok_or(QpackError::Truncated)?;
    *input = rest;
    Ok(first)
}

/// Splits the first `len` octets off `input`.
fn take_octets<'a>(input: &mut &'a [u8], len: usize) -> Result<&'a [u8], QpackError> {
    let (taken, rest) = input.split_at_checked(len).ok_or(QpackError::Truncated)?;
    *input = rest;
    Ok(taken)
}

/// The all-ones value of an N-bit prefix (`prefix_bits` in 1..=8).
fn prefix_max(prefix_bits: u32) -> u64 {
    (1u64 << prefix_bits.clamp(1, 8)) - 1
}

/// Decodes a prefix integer (RFC 7541 §5.1) whose first octet, `first`, has
/// already been read; its low `prefix_bits` bits start the value and any
/// continuation octets are read from `input`.
fn decode_int(first: u8, prefix_bits: u32, input: &mut &[u8]) -> Result<u64, QpackError> {
    let max = prefix_max(prefix_bits);
    let mut value = u64::from(first) & max;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0u32;
    for _ in 0..MAX_CONTINUATION_OCTETS {
        let octet = take_octet(input)?;
        let chunk = u64::from(octet & 0x7f);
        let shifted = chunk << shift;
        if shifted >> shift != chunk {
            return Err(QpackError::IntegerOverflow);
        }
        value = value
            .checked_add(shifted)
            .ok_or(QpackError::IntegerOverflow)?;
        if octet & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
    Err(QpackError::IntegerOverflow)
}

/// Like [`decode_int`], for a length or index that must fit in a `usize`.
fn decode_len(first: u8, prefix_bits: u32, input: &mut &[u8]) -> Result<usize, QpackError> {
    let value = decode_int(first, prefix_bits, input)?;
    usize::try_from(value).map_err(|_| QpackError::IntegerOverflow)
}

/// Encodes `value` as a prefix integer with `prefix_bits` (1..=8) bits in the
/// first octet, whose other bits are taken from `pattern`.
fn encode_int(pattern: u8, prefix_bits: u32, value: u64, out: &mut impl BufMut) {
    let max = prefix_max(prefix_bits);
    if value < max {
        out.put_u8(pattern | value as u8);
        return;
    }
    out.put_u8(pattern | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.put_u8(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.put_u8(rest as u8);
}

/// Reads a string literal whose length prefix starts in `first` (already
/// read): bit `huffman_flag` of `first` is the H bit and its low
/// `prefix_bits` bits start the length.
///
/// `budget` is charged with the decoded length; a raw literal is charged
/// before it is copied, a Huffman one right after it is decoded, so at most
/// one over-long string is ever materialised.
fn decode_string(
    first: u8,
    huffman_flag: u8,
    prefix_bits: u32,
    input: &mut &[u8],
    budget: &mut SizeBudget,
) -> Result<Bytes, QpackError> {
    let len = decode_len(first, prefix_bits, input)?;
    let raw = take_octets(input, len)?;
    if first & huffman_flag == 0 {
        budget.charge(raw.len())?;
        return Ok(Bytes::copy_from_slice(raw));
    }
    let mut decoded = Vec::new();
    huffman::decode(raw, &mut decoded)?;
    budget.charge(decoded.len())?;
    Ok(Bytes::from(decoded))
}

/// Writes `s` as a string literal: the H bit `huffman_flag` and a
/// `prefix_bits` length prefix in one octet with `pattern`, then the octets.
/// Huffman coding is used when `huffman` is set and it is strictly shorter.
fn encode_string(
    pattern: u8,
    huffman_flag: u8,
    prefix_bits: u32,
    s: &[u8],
    huffman: bool,
    out: &mut BytesMut,
) {
    let coded_len = huffman::encoded_len(s);
    if huffman && coded_len < s.len() {
        encode_int(pattern | huffman_flag, prefix_bits, coded_len as u64, out);
        huffman::encode(s, out);
    } else {
        encode_int(pattern, prefix_bits, s.len() as u64, out);
        out.put_slice(s);
    }
}

// ---------------------------------------------------------------------------
// Decoding.
// ---------------------------------------------------------------------------

/// Running header list size, checked against the caller's limit.
struct SizeBudget {
    used: usize,
    max: usize,
}

impl SizeBudget {
    /// Adds `octets` to the running size, failing once it exceeds the limit.
    fn charge(&mut self, octets: usize) -> Result<(), QpackError> {
        self.used = self.used.saturating_add(octets);
        if self.used > self.max {
            return Err(QpackError::HeaderListTooLarge {
                size: self.used,
                max: self.max,
            });
        }
        Ok(())
    }
}

/// Looks up a static table index taken off the wire.
fn static_by_wire_index(index: u64) -> Result<(&'static [u8], &'static [u8]), QpackError> {
    usize::try_from(index)
        .ok()
        .and_then(static_entry)
        .ok_or(QpackError::InvalidStaticIndex(index))
}

/// Decodes the Encoded Field Section Prefix (RFC 9204 §4.5.1).
///
/// Required Insert Count must be 0. A field section without dynamic
/// references may use any Base (§4.5.1.2), so any Delta Base is accepted with
/// the Sign bit clear; with the Sign bit set the Base would be negative.
fn decode_prefix(input: &mut &[u8]) -> Result<(), QpackError> {
    let first = take_octet(input)?;
    let required_insert_count = decode_int(first, 8, input)?;
    if required_insert_count != 0 {
        return Err(QpackError::NonZeroRequiredInsertCount(
            required_insert_count,
        ));
    }
    let base = take_octet(input)?;
    decode_int(base, 7, input)?;
    if base & 0x80 != 0 {
        return Err(QpackError::NegativeBase);
    }
    Ok(())
}

/// Indexed Field Line (RFC 9204 §4.5.2): `1 T Index(6+)`.
fn decode_indexed(
    first: u8,
    input: &mut &[u8],
    budget: &mut SizeBudget,
) -> Result<HeaderField, QpackError> {
    if first & 0x40 == 0 {
        return Err(QpackError::DynamicTableReference);
    }
    let (name, value) = static_by_wire_index(decode_int(first, 6, input)?)?;
    budget.charge(field_size(name.len(), value.len()))?;
    Ok(HeaderField::new(
        Bytes::from_static(name),
        Bytes::from_static(value),
    ))
}

/// Literal Field Line with Name Reference (RFC 9204 §4.5.4):
/// `0 1 N T NameIndex(4+)`, then the value string. The N bit is accepted and
/// not reported.
fn decode_literal_name_ref(
    first: u8,
    input: &mut &[u8],
    budget: &mut SizeBudget,
) -> Result<HeaderField, QpackError> {
    if first & 0x10 == 0 {
        return Err(QpackError::DynamicTableReference);
    }
    let (name, _) = static_by_wire_index(decode_int(first, 4, input)?)?;
    budget.charge(field_size(name.len(), 0))?;
    let value_first = take_octet(input)?;
    let value = decode_string(value_first, 0x80, 7, input, budget)?;
    Ok(HeaderField::new(Bytes::from_static(name), value))
}

/// Literal Field Line with Literal Name (RFC 9204 §4.5.6):
/// `0 0 1 N H NameLen(3+)`, the name string, then the value string. The N
/// bit is accepted and not reported.
fn decode_literal_literal(
    first: u8,
    input: &mut &[u8],
    budget: &mut SizeBudget,
) -> Result<HeaderField, QpackError> {
    budget.charge(FIELD_OVERHEAD)?;
    let name = decode_string(first, 0x08, 3, input, budget)?;
    let value_first = take_octet(input)?;
    let value = decode_string(value_first, 0x80, 7, input, budget)?;
    Ok(HeaderField { name, value })
}

/// Decodes one field line representation (RFC 9204 §4.5.2 to §4.5.6).
fn decode_field_line(
    input: &mut &[u8],
    budget: &mut SizeBudget,
) -> Result<HeaderField, QpackError> {
    let first = take_octet(input)?;
    match first {
        // 1xxxxxxx: Indexed Field Line.
        0x80..=0xff => decode_indexed(first, input, budget),
        // 01xxxxxx: Literal Field Line with Name Reference.
        0x40..=0x7f => decode_literal_name_ref(first, input, budget),
        // 001xxxxx: Literal Field Line with Literal Name.
        0x20..=0x3f => decode_literal_literal(first, input, budget),
        // 0001xxxx: Indexed Field Line with Post-Base Index;
        // 0000xxxx: Literal Field Line with Post-Base Name Reference.
        0x00..=0x1f => Err(QpackError::DynamicTableReference),
    }
}

/// Decodes a complete field section (the payload of a HEADERS frame).
///
/// `max_size` bounds the decoded header list size (the sum of
/// name + value + 32 over all fields, RFC 9114 §4.2.2), typically our
/// `SETTINGS_MAX_FIELD_SECTION_SIZE`. It is checked as decoding goes, so
/// memory stays bounded by `max_size` plus at most one string literal (and
/// the number of fields by `max_size / 32`).
///
/// Only the static table is supported: any dynamic table reference, and a
/// non-zero Required Insert Count, is an error (our table capacity is 0).
pub fn decode_field_section(block: &[u8], max_size: usize) -> Result<Vec<HeaderField>, QpackError> {
    let mut input = block;
    decode_prefix(&mut input)?;
    let mut budget = SizeBudget {
        used: 0,
        max: max_size,
    };
    let mut fields = Vec::new();
    while !input.is_empty() {
        fields.push(decode_field_line(&mut input, &mut budget)?);
    }
    Ok(fields)
}

// ---------------------------------------------------------------------------
// Encoding.
// ---------------------------------------------------------------------------

/// How a field can use the static table.
enum StaticMatch {
    /// Name and value match entry `.0`.
    Exact(usize),
    /// Only the name matches; `.0` is the first such entry.
    Name(usize),
    /// Neither matches.
    None,
}

/// Finds the best static table match for a field.
fn find_static(name: &[u8], value: &[u8]) -> StaticMatch {
    let mut name_match = None;
    for (index, &(entry_name, entry_value)) in STATIC_TABLE.iter().enumerate() {
        if entry_name != name {
            continue;
        }
        if entry_value == value {
            return StaticMatch::Exact(index);
        }
        name_match.get_or_insert(index);
    }
    name_match.map_or(StaticMatch::None, StaticMatch::Name)
}

/// Encodes one field line using the static table where possible.
fn encode_field(name: &[u8], value: &[u8], huffman: bool, out: &mut BytesMut) {
    match find_static(name, value) {
        StaticMatch::Exact(index) => {
            // 1 T=1 Index(6+)
            encode_int(0xc0, 6, index as u64, out);
        }
        StaticMatch::Name(index) => {
            // 0 1 N=0 T=1 NameIndex(4+), H Value(7+)
            encode_int(0x50, 4, index as u64, out);
            encode_string(0x00, 0x80, 7, value, huffman, out);
        }
        StaticMatch::None => {
            // 0 0 1 N=0 H NameLen(3+), H Value(7+)
            encode_string(0x20, 0x08, 3, name, huffman, out);
            encode_string(0x00, 0x80, 7, value, huffman, out);
        }
    }
}

/// Encodes a field section using only the static table.
///
/// Writes the prefix `0x00 0x00` (Required Insert Count 0, Delta Base 0),
/// then one line per field, in order: an indexed line for an exact static
/// table match, a literal with a static name reference when only the name
/// matches, a literal name otherwise. With `huffman`, each literal string is
/// Huffman-coded when that is strictly shorter. The N bit is never set.
///
/// Names are written as given: HTTP/3 requires them to be lowercase, which
/// is the caller's responsibility.
pub fn encode_field_section(fields: &[(&[u8], &[u8])], huffman: bool, out: &mut BytesMut) {
    out.put_u8(0x00);
    out.put_u8(0x00);
    for &(name, value) in fields {
        encode_field(name, value, huffman, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn decode(block: &[u8]) -> Result<Vec<HeaderField>, QpackError> {
        decode_field_section(block, usize::MAX)
    }

    fn pairs(fields: &[HeaderField]) -> Vec<(Vec<u8>, Vec<u8>)> {
        fields
            .iter()
            .map(|f| (f.name.to_vec(), f.value.to_vec()))
            .collect()
    }

    fn owned(fields: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
        fields
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect()
    }

    fn encode(fields: &[(&[u8], &[u8])], huffman: bool) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_field_section(fields, huffman, &mut out);
        out.to_vec()
    }

    const CONNECT: &[(&[u8], &[u8])] = &[
        (b":method", b"CONNECT"),
        (b":protocol", b"webtransport-h3"),
        (b":scheme", b"https"),
        (b":authority", b"example.com"),
        (b":path", b"/wt"),
        (b"origin", b"https://example.com"),
    ];

    // --- static table -----------------------------------------------------

    #[test]
    fn static_table_spot_checks() {
        let e = |i| static_entry(i).unwrap();
        assert_eq!(e(0), (&b":authority"[..], &b""[..]));
        assert_eq!(e(1), (&b":path"[..], &b"/"[..]));
        let methods: [&[u8]; 7] = [
            b"CONNECT", b"DELETE", b"GET", b"HEAD", b"OPTIONS", b"POST", b"PUT",
        ];
        for (i, m) in methods.iter().enumerate() {
            assert_eq!(e(15 + i), (&b":method"[..], *m));
        }
        assert_eq!(e(22), (&b":scheme"[..], &b"http"[..]));
        assert_eq!(e(23), (&b":scheme"[..], &b"https"[..]));
        let statuses: [(usize, &[u8]); 14] = [
            (24, b"103"),
            (25, b"200"),
            (26, b"304"),
            (27, b"404"),
            (28, b"503"),
            (63, b"100"),
            (64, b"204"),
            (65, b"206"),
            (66, b"302"),
            (67, b"400"),
            (68, b"403"),
            (69, b"421"),
            (70, b"425"),
            (71, b"500"),
        ];
        for (i, s) in statuses {
            assert_eq!(e(i), (&b":status"[..], s));
        }
        assert_eq!(
            e(52),
            (&b"content-type"[..], &b"text/html; charset=utf-8"[..])
        );
        assert_eq!(
            e(54),
            (&b"content-type"[..], &b"text/plain;charset=utf-8"[..])
        );
        assert_eq!(e(62), (&b"x-xss-protection"[..], &b"1; mode=block"[..]));
        assert_eq!(e(72), (&b"accept-language"[..], &b""[..]));
        assert_eq!(e(90), (&b"origin"[..], &b""[..]));
        assert_eq!(e(98), (&b"x-frame-options"[..], &b"sameorigin"[..]));
        assert_eq!(static_entry(99), None);
        assert_eq!(static_entry(usize::MAX), None);
    }

    #[test]
    fn static_table_names_are_lowercase() {
        for i in 0..STATIC_TABLE_LEN {
            let (name, _) = static_entry(i).unwrap();
            assert!(!name.is_empty());
            assert!(!name.iter().any(u8::is_ascii_uppercase), "entry {i}");
        }
    }

    #[test]
    fn every_static_entry_round_trips_as_one_indexed_line() {
        for i in 0..STATIC_TABLE_LEN {
            let (name, value) = static_entry(i).unwrap();
            let block = encode(&[(name, value)], false);
            // Duplicated entries do not exist, so the exact index comes back.
            let mut expected = BytesMut::new();
            expected.put_slice(&[0, 0]);
            encode_int(0xc0, 6, i as u64, &mut expected);
            assert_eq!(block, expected.to_vec(), "entry {i}");
            assert_eq!(pairs(&decode(&block).unwrap()), owned(&[(name, value)]));
        }
    }

    // --- integers -----------------------------------------------------------

    #[test]
    fn integer_rfc7541_examples() {
        // C.1.1: 10 with a 5-bit prefix.
        let mut out = Vec::new();
        encode_int(0, 5, 10, &mut out);
        assert_eq!(out, [0x0a]);
        // C.1.2: 1337 with a 5-bit prefix.
        out.clear();
        encode_int(0, 5, 1337, &mut out);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        let mut rest: &[u8] = &out[1..];
        assert_eq!(decode_int(0x1f, 5, &mut rest), Ok(1337));
        assert!(rest.is_empty());
        // C.1.3: 42 with an 8-bit prefix.
        out.clear();
        encode_int(0, 8, 42, &mut out);
        assert_eq!(out, [0x2a]);
    }

    #[test]
    fn integer_round_trips_all_prefixes() {
        let values = [
            0,
            1,
            6,
            7,
            8,
            126,
            127,
            128,
            254,
            255,
            256,
            1 << 14,
            (1 << 21) + 3,
            1 << 62,
            u64::MAX - 255,
            u64::MAX - 1,
            u64::MAX,
        ];
        for prefix in 1..=8u32 {
            for &v in &values {
                let mut out = Vec::new();
                encode_int(0, prefix, v, &mut out);
                assert!(out.len() <= 1 + MAX_CONTINUATION_OCTETS as usize);
                let (&first, mut rest) = out.split_first().unwrap();
                assert_eq!(decode_int(first, prefix, &mut rest), Ok(v), "{prefix} {v}");
                assert!(rest.is_empty());
            }
        }
    }

    #[test]
    fn integer_overflow_is_rejected() {
        let mut rest: &[u8] = &hex("ff ff ff ff ff ff ff ff ff ff 7f");
        assert_eq!(
            decode_int(0xff, 8, &mut rest),
            Err(QpackError::IntegerOverflow)
        );
        // One past u64::MAX: u64::MAX - 255 would need 0x80 | .. at the end.
        let mut out = Vec::new();
        encode_int(0, 8, u64::MAX, &mut out);
        let last = out.len() - 1;
        out[last] += 1;
        let (&first, mut rest) = out.split_first().unwrap();
        assert_eq!(
            decode_int(first, 8, &mut rest),
            Err(QpackError::IntegerOverflow)
        );
        // Absurdly long zero padding.
        let mut rest: &[u8] = &hex("80 80 80 80 80 80 80 80 80 80 00");
        assert_eq!(
            decode_int(0x1f, 5, &mut rest),
            Err(QpackError::IntegerOverflow)
        );
        // Ten continuation octets that still fit are fine.
        let mut rest: &[u8] = &hex("80 80 80 80 80 80 80 80 80 00");
        assert_eq!(decode_int(0x1f, 5, &mut rest), Ok(31));
    }

    #[test]
    fn integer_overflow_in_a_field_section() {
        assert_eq!(
            decode(&hex("ff ff ff ff ff ff ff ff ff ff ff 7f")),
            Err(QpackError::IntegerOverflow)
        );
        assert_eq!(
            decode(&hex("0000 ff ff ff ff ff ff ff ff ff ff ff 7f")),
            Err(QpackError::IntegerOverflow)
        );
        // A value length that does not fit in a u64.
        assert_eq!(
            decode(&hex("0000 5f00 ff ff ff ff ff ff ff ff ff ff 7f")),
            Err(QpackError::IntegerOverflow)
        );
    }

    // --- decoding valid input -------------------------------------------

    #[test]
    fn rfc9204_appendix_b1() {
        let fields = decode(&hex("0000 510b 2f69 6e64 6578 2e68 746d 6c")).unwrap();
        assert_eq!(pairs(&fields), owned(&[(b":path", b"/index.html")]));
    }

    #[test]
    fn empty_field_section_and_any_delta_base() {
        assert_eq!(decode(&hex("0000")).unwrap(), Vec::new());
        // RFC 9204 §4.5.1.2: without dynamic references any Base is valid.
        for block in ["0001", "004c", "007f 00", "007f 80 01 d1"] {
            assert!(decode(&hex(block)).is_ok(), "{block}");
        }
        assert_eq!(
            pairs(&decode(&hex("0005 d1")).unwrap()),
            owned(&[(b":method", b"GET")])
        );
    }

    #[test]
    fn indexed_lines_with_multi_octet_indices() {
        // 98 = 63 + 35: 0xff 0x23.
        let fields = decode(&hex("0000 ff23 c0 d7")).unwrap();
        assert_eq!(
            pairs(&fields),
            owned(&[
                (b"x-frame-options", b"sameorigin"),
                (b":authority", b""),
                (b":scheme", b"https"),
            ])
        );
    }

    #[test]
    fn literal_with_name_reference_and_n_bit() {
        // origin (90 = 15 + 75): 0x5f 0x4b, value "x"; then N set (0x70).
        let fields = decode(&hex("0000 5f4b 0178 7f4b 0179")).unwrap();
        assert_eq!(
            pairs(&fields),
            owned(&[(b"origin", b"x"), (b"origin", b"y")])
        );
    }

    #[test]
    fn literal_with_literal_name_raw_and_huffman() {
        // Raw name "ab", raw value "cd"; then N bit + Huffman name
        // "custom-key" (8 octets: 0x3f 0x01) and Huffman value "custom-value".
        let block = hex("0000 2261 6202 6364 \
             3f01 25a8 49e9 5ba9 7d7f 89 25a8 49e9 5bb8 e8b4 bf");
        let fields = decode(&block).unwrap();
        assert_eq!(
            pairs(&fields),
            owned(&[(b"ab", b"cd"), (b"custom-key", b"custom-value")])
        );
    }

    #[test]
    fn huffman_value_with_name_reference() {
        // :authority (index 0) = "www.example.com", Huffman (RFC 7541 C.4.1).
        let fields = decode(&hex("0000 50 8c f1e3 c2e5 f23a 6ba0 ab90 f4ff")).unwrap();
        assert_eq!(
            pairs(&fields),
            owned(&[(b":authority", b"www.example.com")])
        );
    }

    #[test]
    fn empty_strings_decode() {
        // Literal name "" with value "" (raw and Huffman H bits).
        let fields = decode(&hex("0000 2000 2880 5080")).unwrap();
        assert_eq!(
            pairs(&fields),
            owned(&[(b"", b""), (b"", b""), (b":authority", b"")])
        );
    }

    // --- encoding ---------------------------------------------------------

    #[test]
    fn encodes_extended_connect_exactly() {
        let block = encode(CONNECT, false);
        let mut expected = hex("0000 cf");
        // ":protocol" is not in the static table: literal name.
        expected.extend(hex("27 02"));
        expected.extend(b":protocol");
        expected.push(15);
        expected.extend(b"webtransport-h3");
        expected.push(0xd7);
        expected.extend(hex("50 0b"));
        expected.extend(b"example.com");
        expected.extend(hex("51 03"));
        expected.extend(b"/wt");
        expected.extend(hex("5f 4b 13"));
        expected.extend(b"https://example.com");
        assert_eq!(block, expected);
    }

    #[test]
    fn extended_connect_round_trips() {
        for huffman in [false, true] {
            let block = encode(CONNECT, huffman);
            let fields = decode(&block).unwrap();
            assert_eq!(pairs(&fields), owned(CONNECT), "huffman {huffman}");
        }
        assert!(encode(CONNECT, true).len() < encode(CONNECT, false).len());
    }

    #[test]
    fn huffman_is_used_only_when_shorter() {
        // "\x00" is 13 bits Huffman-coded: raw stays.
        let raw = encode(&[(b"x", b"\x00")], true);
        assert_eq!(raw, hex("0000 2178 0100"));
        let coded = encode(&[(b"aaaaaaaa", b"")], true);
        // 8 x 5 bits = 5 octets < 8: H bit set, length 5.
        assert_eq!(coded[2], 0x20 | 0x08 | 5);
    }

    #[test]
    fn long_literals_round_trip() {
        let name = vec![b'n'; 300];
        let value: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        for huffman in [false, true] {
            let fields: &[(&[u8], &[u8])] = &[(&name, &value), (b":status", &value)];
            let block = encode(fields, huffman);
            assert_eq!(pairs(&decode(&block).unwrap()), owned(fields));
        }
    }

    // --- header list size limit -------------------------------------------

    #[test]
    fn header_list_size_limit() {
        let block = encode(CONNECT, true);
        let size: usize = CONNECT.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
        assert_eq!(decode_field_section(&block, size).unwrap().len(), 6);
        let too_small = decode_field_section(&block, size - 1);
        assert_eq!(
            too_small,
            Err(QpackError::HeaderListTooLarge {
                size,
                max: size - 1
            })
        );
        assert_eq!(
            decode_field_section(&block, 0),
            Err(QpackError::HeaderListTooLarge { size: 46, max: 0 })
        );
        assert_eq!(
            decode_field_section(&block, 0).unwrap_err().error_code(),
            H3_EXCESSIVE_LOAD
        );
    }

    #[test]
    fn header_list_limit_stops_before_copying_a_raw_literal() {
        // A 1000-octet raw value against a 100-octet limit: rejected with
        // the size the declared length would have reached.
        let value = vec![b'v'; 1000];
        let block = encode(&[(b"x-big", &value)], false);
        assert_eq!(
            decode_field_section(&block, 100),
            Err(QpackError::HeaderListTooLarge {
                size: 32 + 5 + 1000,
                max: 100
            })
        );
    }

    #[test]
    fn many_tiny_fields_are_bounded_by_the_limit() {
        let mut block = hex("0000");
        block.extend(std::iter::repeat_n(0xc0, 10_000)); // :authority ""
        let max = (":authority".len() + FIELD_OVERHEAD) * 100;
        assert_eq!(decode_field_section(&block[..102], max).unwrap().len(), 100);
        assert!(matches!(
            decode_field_section(&block, max),
            Err(QpackError::HeaderListTooLarge { .. })
        ));
    }

    // --- malformed input --------------------------------------------------

    #[test]
    fn truncated_prefix() {
        assert_eq!(decode(b""), Err(QpackError::Truncated));
        assert_eq!(decode(&hex("00")), Err(QpackError::Truncated));
        assert_eq!(decode(&hex("00 7f")), Err(QpackError::Truncated));
    }

    #[test]
    fn truncated_integer() {
        assert_eq!(decode(&hex("0000 ff")), Err(QpackError::Truncated));
        assert_eq!(decode(&hex("0000 ff80")), Err(QpackError::Truncated));
        assert_eq!(decode(&hex("0000 5f")), Err(QpackError::Truncated));
        assert_eq!(decode(&hex("0000 51 7f")), Err(QpackError::Truncated));
    }

    #[test]
    fn truncated_string() {
        // Value length 11, only 3 octets.
        assert_eq!(
            decode(&hex("0000 510b 2f69 6e")),
            Err(QpackError::Truncated)
        );
        // Missing value length octet.
        assert_eq!(decode(&hex("0000 51")), Err(QpackError::Truncated));
        // Literal name cut short, and name present but value missing.
        assert_eq!(decode(&hex("0000 2361 62")), Err(QpackError::Truncated));
        assert_eq!(decode(&hex("0000 2261 62")), Err(QpackError::Truncated));
        // Length far beyond the block.
        assert_eq!(
            decode(&hex("0000 517f ffff ffff 0f")),
            Err(QpackError::Truncated)
        );
    }

    #[test]
    fn invalid_static_index() {
        // Indexed line, index 99 = 63 + 36.
        assert_eq!(
            decode(&hex("0000 ff24")),
            Err(QpackError::InvalidStaticIndex(99))
        );
        // Name reference, index 99 = 15 + 84.
        assert_eq!(
            decode(&hex("0000 5f54 00")),
            Err(QpackError::InvalidStaticIndex(99))
        );
        // The largest possible index.
        let mut block = hex("0000");
        encode_int(0xc0, 6, u64::MAX, &mut block);
        assert_eq!(
            decode(&block),
            Err(QpackError::InvalidStaticIndex(u64::MAX))
        );
    }

    #[test]
    fn dynamic_table_references() {
        for block in [
            "0000 80",    // indexed, T=0
            "0000 bf01",  // indexed, T=0, multi-octet index
            "0000 4000",  // name reference, T=0
            "0000 6000",  // name reference, T=0, N=1
            "0000 10",    // indexed with post-base index
            "0000 1f",    // post-base, even when truncated
            "0000 00 00", // literal with post-base name reference
            "0000 08 00", // ... with N=1
            "0000 d1 80", // after a valid line
        ] {
            assert_eq!(
                decode(&hex(block)),
                Err(QpackError::DynamicTableReference),
                "{block}"
            );
        }
    }

    #[test]
    fn non_zero_required_insert_count() {
        let err = decode(&hex("0100 d1")).unwrap_err();
        assert_eq!(err, QpackError::NonZeroRequiredInsertCount(1));
        assert_eq!(err.error_code(), QPACK_DECOMPRESSION_FAILED);
        assert_eq!(
            decode(&hex("ff05 00")),
            Err(QpackError::NonZeroRequiredInsertCount(260))
        );
    }

    #[test]
    fn negative_base() {
        assert_eq!(decode(&hex("0080")), Err(QpackError::NegativeBase));
        assert_eq!(decode(&hex("0081 d1")), Err(QpackError::NegativeBase));
    }

    #[test]
    fn bad_huffman_strings() {
        // Value "a" + 000 padding.
        assert_eq!(
            decode(&hex("0000 51 81 18")),
            Err(QpackError::Huffman(HuffmanError::InvalidPadding))
        );
        // Value "a" + 11 one bits.
        assert_eq!(
            decode(&hex("0000 51 82 1fff")),
            Err(QpackError::Huffman(HuffmanError::PaddingTooLong))
        );
        // Name: 'a' then EOS.
        let err = decode(&hex("0000 2d 1fff ffff ff 00")).unwrap_err();
        assert_eq!(err, QpackError::Huffman(HuffmanError::EosInString));
        assert_eq!(err.error_code(), QPACK_DECOMPRESSION_FAILED);
    }

    #[test]
    fn every_truncation_of_a_valid_block_fails_cleanly() {
        for huffman in [false, true] {
            let block = encode(CONNECT, huffman);
            for cut in 0..block.len() {
                // A cut may land between lines: then fewer fields decode.
                match decode(&block[..cut]) {
                    Ok(fields) => assert!(fields.len() < CONNECT.len()),
                    Err(err) => assert!(
                        matches!(err, QpackError::Truncated | QpackError::Huffman(_)),
                        "cut {cut}: {err:?}"
                    ),
                }
            }
            assert_eq!(decode(&block).unwrap().len(), CONNECT.len());
        }
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = XorShift(0x853c_49e6_748f_ea9b);
        let mut decoded = 0;
        for i in 0..20_000 {
            let len = (rng.next() % 48) as usize;
            let mut block: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Give half the inputs a valid prefix so field lines get exercised.
            if i % 2 == 0 && block.len() >= 2 {
                block[0] = 0;
                block[1] &= 0x7f;
            }
            if let Ok(fields) = decode_field_section(&block, 4096) {
                decoded += 1;
                // Whatever decodes must survive re-encoding.
                let view: Vec<(&[u8], &[u8])> =
                    fields.iter().map(|f| (&f.name[..], &f.value[..])).collect();
                let again = decode(&encode(&view, true)).unwrap();
                assert_eq!(again, fields);
            }
        }
        assert!(decoded > 0);
    }

    #[test]
    fn random_mutations_of_a_valid_block_never_panic() {
        let mut rng = XorShift(0xda94_2042_e4dd_58b5);
        let base = encode(CONNECT, true);
        for _ in 0..20_000 {
            let mut block = base.clone();
            for _ in 0..=(rng.next() % 4) {
                let at = (rng.next() as usize) % block.len();
                block[at] ^= 1 << (rng.next() % 8);
            }
            let _ = decode_field_section(&block, 1 << 16);
        }
    }

    #[test]
    fn errors_display() {
        let err = QpackError::HeaderListTooLarge { size: 10, max: 5 };
        assert_eq!(
            err.to_string(),
            "header list size 10 exceeds the limit of 5"
        );
        assert!(QpackError::InvalidStaticIndex(99)
            .to_string()
            .contains("99"));
    }
}
