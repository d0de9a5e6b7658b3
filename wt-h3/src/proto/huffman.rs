//! The HPACK/QPACK static Huffman code (RFC 7541 Appendix B).
//!
//! QPACK (RFC 9204 §4.1.2) reuses the HPACK string literal format and its
//! Huffman code unchanged. This module is sans-IO: it turns byte slices into
//! byte buffers and nothing else.
//!
//! The code is *canonical*: within one bit length, codes are consecutive and
//! ordered by symbol value, and each length starts right after the codes of the
//! previous length. The encoder uses the explicit `(code, length)` table below;
//! the decoder uses per-length limits derived from the lengths alone at compile
//! time. A unit test asserts that both views agree.

use bytes::BufMut;

/// Why a Huffman-encoded string literal was rejected (RFC 7541 §5.2).
///
/// Each of these is a decoding error; in QPACK it is a connection error of
/// type `QPACK_DECOMPRESSION_FAILED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum HuffmanError {
    /// The string contains the EOS symbol, which a sender must never encode.
    #[error("huffman string contains the EOS symbol")]
    EosInString,
    /// The string ends with more than 7 bits of padding.
    #[error("huffman padding is longer than 7 bits")]
    PaddingTooLong,
    /// The trailing bits are not a prefix of EOS (padding must be all ones).
    #[error("huffman padding is not all ones")]
    InvalidPadding,
}

/// Number of symbols: the 256 octet values plus EOS.
const SYMBOLS: usize = 257;
/// The EOS symbol, whose code is thirty 1 bits.
const EOS: u16 = 256;
/// Longest code length in bits (EOS and a few control octets).
const MAX_LEN: u32 = 30;
/// Shortest code length in bits.
const MIN_LEN: u32 = 5;
/// Mask of a `MAX_LEN`-bit window.
const WINDOW_MASK: u64 = (1 << MAX_LEN) - 1;
/// Longest valid padding, in bits (RFC 7541 §5.2).
const MAX_PADDING: u32 = 7;

/// RFC 7541 Appendix B: `(code, bit length)` for symbols 0..=255 and EOS (256),
/// the code right-aligned in the `u32`.
#[rustfmt::skip]
static CODES: [(u32, u8); SYMBOLS] = [
    (0x1ff8, 13),      // 0
    (0x7fffd8, 23),    // 1
    (0xfffffe2, 28),   // 2
    (0xfffffe3, 28),   // 3
    (0xfffffe4, 28),   // 4
    (0xfffffe5, 28),   // 5
    (0xfffffe6, 28),   // 6
    (0xfffffe7, 28),   // 7
    (0xfffffe8, 28),   // 8
    (0xffffea, 24),    // 9
    (0x3ffffffc, 30),  // 10
    (0xfffffe9, 28),   // 11
    (0xfffffea, 28),   // 12
    (0x3ffffffd, 30),  // 13
    (0xfffffeb, 28),   // 14
    (0xfffffec, 28),   // 15
    (0xfffffed, 28),   // 16
    (0xfffffee, 28),   // 17
    (0xfffffef, 28),   // 18
    (0xffffff0, 28),   // 19
    (0xffffff1, 28),   // 20
    (0xffffff2, 28),   // 21
    (0x3ffffffe, 30),  // 22
    (0xffffff3, 28),   // 23
    (0xffffff4, 28),   // 24
    (0xffffff5, 28),   // 25
    (0xffffff6, 28),   // 26
    (0xffffff7, 28),   // 27
    (0xffffff8, 28),   // 28
    (0xffffff9, 28),   // 29
    (0xffffffa, 28),   // 30
    (0xffffffb, 28),   // 31
    (0x14, 6),         // 32 ' '
    (0x3f8, 10),       // 33 '!'
    (0x3f9, 10),       // 34 '"'
    (0xffa, 12),       // 35 '#'
    (0x1ff9, 13),      // 36 '$'
    (0x15, 6),         // 37 '%'
    (0xf8, 8),         // 38 '&'
    (0x7fa, 11),       // 39 '''
    (0x3fa, 10),       // 40 '('
    (0x3fb, 10),       // 41 ')'
    (0xf9, 8),         // 42 '*'
    (0x7fb, 11),       // 43 '+'
    (0xfa, 8),         // 44 ','
    (0x16, 6),         // 45 '-'
    (0x17, 6),         // 46 '.'
    (0x18, 6),         // 47 '/'
    (0x0, 5),          // 48 '0'
    (0x1, 5),          // 49 '1'
    (0x2, 5),          // 50 '2'
    (0x19, 6),         // 51 '3'
    (0x1a, 6),         // 52 '4'
    (0x1b, 6),         // 53 '5'
    (0x1c, 6),         // 54 '6'
    (0x1d, 6),         // 55 '7'
    (0x1e, 6),         // 56 '8'
    (0x1f, 6),         // 57 '9'
    (0x5c, 7),         // 58 ':'
    (0xfb, 8),         // 59 ';'
    (0x7ffc, 15),      // 60 '<'
    (0x20, 6),         // 61 '='
    (0xffb, 12),       // 62 '>'
    (0x3fc, 10),       // 63 '?'
    (0x1ffa, 13),      // 64 '@'
    (0x21, 6),         // 65 'A'
    (0x5d, 7),         // 66 'B'
    (0x5e, 7),         // 67 'C'
    (0x5f, 7),         // 68 'D'
    (0x60, 7),         // 69 'E'
    (0x61, 7),         // 70 'F'
    (0x62, 7),         // 71 'G'
    (0x63, 7),         // 72 'H'
    (0x64, 7),         // 73 'I'
    (0x65, 7),         // 74 'J'
    (0x66, 7),         // 75 'K'
    (0x67, 7),         // 76 'L'
    (0x68, 7),         // 77 'M'
    (0x69, 7),         // 78 'N'
    (0x6a, 7),         // 79 'O'
    (0x6b, 7),         // 80 'P'
    (0x6c, 7),         // 81 'Q'
    (0x6d, 7),         // 82 'R'
    (0x6e, 7),         // 83 'S'
    (0x6f, 7),         // 84 'T'
    (0x70, 7),         // 85 'U'
    (0x71, 7),         // 86 'V'
    (0x72, 7),         // 87 'W'
    (0xfc, 8),         // 88 'X'
    (0x73, 7),         // 89 'Y'
    (0xfd, 8),         // 90 'Z'
    (0x1ffb, 13),      // 91 '['
    (0x7fff0, 19),     // 92 '\'
    (0x1ffc, 13),      // 93 ']'
    (0x3ffc, 14),      // 94 '^'
    (0x22, 6),         // 95 '_'
    (0x7ffd, 15),      // 96 '`'
    (0x3, 5),          // 97 'a'
    (0x23, 6),         // 98 'b'
    (0x4, 5),          // 99 'c'
    (0x24, 6),         // 100 'd'
    (0x5, 5),          // 101 'e'
    (0x25, 6),         // 102 'f'
    (0x26, 6),         // 103 'g'
    (0x27, 6),         // 104 'h'
    (0x6, 5),          // 105 'i'
    (0x74, 7),         // 106 'j'
    (0x75, 7),         // 107 'k'
    (0x28, 6),         // 108 'l'
    (0x29, 6),         // 109 'm'
    (0x2a, 6),         // 110 'n'
    (0x7, 5),          // 111 'o'
    (0x2b, 6),         // 112 'p'
    (0x76, 7),         // 113 'q'
    (0x2c, 6),         // 114 'r'
    (0x8, 5),          // 115 's'
    (0x9, 5),          // 116 't'
    (0x2d, 6),         // 117 'u'
    (0x77, 7),         // 118 'v'
    (0x78, 7),         // 119 'w'
    (0x79, 7),         // 120 'x'
    (0x7a, 7),         // 121 'y'
    (0x7b, 7),         // 122 'z'
    (0x7ffe, 15),      // 123 '{'
    (0x7fc, 11),       // 124 '|'
    (0x3ffd, 14),      // 125 '}'
    (0x1ffd, 13),      // 126 '~'
    (0xffffffc, 28),   // 127
    (0xfffe6, 20),     // 128
    (0x3fffd2, 22),    // 129
    (0xfffe7, 20),     // 130
    (0xfffe8, 20),     // 131
    (0x3fffd3, 22),    // 132
    (0x3fffd4, 22),    // 133
    (0x3fffd5, 22),    // 134
    (0x7fffd9, 23),    // 135
    (0x3fffd6, 22),    // 136
    (0x7fffda, 23),    // 137
    (0x7fffdb, 23),    // 138
    (0x7fffdc, 23),    // 139
    (0x7fffdd, 23),    // 140
    (0x7fffde, 23),    // 141
    (0xffffeb, 24),    // 142
    (0x7fffdf, 23),    // 143
    (0xffffec, 24),    // 144
    (0xffffed, 24),    // 145
    (0x3fffd7, 22),    // 146
    (0x7fffe0, 23),    // 147
    (0xffffee, 24),    // 148
    (0x7fffe1, 23),    // 149
    (0x7fffe2, 23),    // 150
    (0x7fffe3, 23),    // 151
    (0x7fffe4, 23),    // 152
    (0x1fffdc, 21),    // 153
    (0x3fffd8, 22),    // 154
    (0x7fffe5, 23),    // 155
    (0x3fffd9, 22),    // 156
    (0x7fffe6, 23),    // 157
    (0x7fffe7, 23),    // 158
    (0xffffef, 24),    // 159
    (0x3fffda, 22),    // 160
    (0x1fffdd, 21),    // 161
    (0xfffe9, 20),     // 162
    (0x3fffdb, 22),    // 163
    (0x3fffdc, 22),    // 164
    (0x7fffe8, 23),    // 165
    (0x7fffe9, 23),    // 166
    (0x1fffde, 21),    // 167
    (0x7fffea, 23),    // 168
    (0x3fffdd, 22),    // 169
    (0x3fffde, 22),    // 170
    (0xfffff0, 24),    // 171
    (0x1fffdf, 21),    // 172
    (0x3fffdf, 22),    // 173
    (0x7fffeb, 23),    // 174
    (0x7fffec, 23),    // 175
    (0x1fffe0, 21),    // 176
    (0x1fffe1, 21),    // 177
    (0x3fffe0, 22),    // 178
    (0x1fffe2, 21),    // 179
    (0x7fffed, 23),    // 180
    (0x3fffe1, 22),    // 181
    (0x7fffee, 23),    // 182
    (0x7fffef, 23),    // 183
    (0xfffea, 20),     // 184
    (0x3fffe2, 22),    // 185
    (0x3fffe3, 22),    // 186
    (0x3fffe4, 22),    // 187
    (0x7ffff0, 23),    // 188
    (0x3fffe5, 22),    // 189
    (0x3fffe6, 22),    // 190
    (0x7ffff1, 23),    // 191
    (0x3ffffe0, 26),   // 192
    (0x3ffffe1, 26),   // 193
    (0xfffeb, 20),     // 194
    (0x7fff1, 19),     // 195
    (0x3fffe7, 22),    // 196
    (0x7ffff2, 23),    // 197
    (0x3fffe8, 22),    // 198
    (0x1ffffec, 25),   // 199
    (0x3ffffe2, 26),   // 200
    (0x3ffffe3, 26),   // 201
    (0x3ffffe4, 26),   // 202
    (0x7ffffde, 27),   // 203
    (0x7ffffdf, 27),   // 204
    (0x3ffffe5, 26),   // 205
    (0xfffff1, 24),    // 206
    (0x1ffffed, 25),   // 207
    (0x7fff2, 19),     // 208
    (0x1fffe3, 21),    // 209
    (0x3ffffe6, 26),   // 210
    (0x7ffffe0, 27),   // 211
    (0x7ffffe1, 27),   // 212
    (0x3ffffe7, 26),   // 213
    (0x7ffffe2, 27),   // 214
    (0xfffff2, 24),    // 215
    (0x1fffe4, 21),    // 216
    (0x1fffe5, 21),    // 217
    (0x3ffffe8, 26),   // 218
    (0x3ffffe9, 26),   // 219
    (0xffffffd, 28),   // 220
    (0x7ffffe3, 27),   // 221
    (0x7ffffe4, 27),   // 222
    (0x7ffffe5, 27),   // 223
    (0xfffec, 20),     // 224
    (0xfffff3, 24),    // 225
    (0xfffed, 20),     // 226
    (0x1fffe6, 21),    // 227
    (0x3fffe9, 22),    // 228
    (0x1fffe7, 21),    // 229
    (0x1fffe8, 21),    // 230
    (0x7ffff3, 23),    // 231
    (0x3fffea, 22),    // 232
    (0x3fffeb, 22),    // 233
    (0x1ffffee, 25),   // 234
    (0x1ffffef, 25),   // 235
    (0xfffff4, 24),    // 236
    (0xfffff5, 24),    // 237
    (0x3ffffea, 26),   // 238
    (0x7ffff4, 23),    // 239
    (0x3ffffeb, 26),   // 240
    (0x7ffffe6, 27),   // 241
    (0x3ffffec, 26),   // 242
    (0x3ffffed, 26),   // 243
    (0x7ffffe7, 27),   // 244
    (0x7ffffe8, 27),   // 245
    (0x7ffffe9, 27),   // 246
    (0x7ffffea, 27),   // 247
    (0x7ffffeb, 27),   // 248
    (0xffffffe, 28),   // 249
    (0x7ffffec, 27),   // 250
    (0x7ffffed, 27),   // 251
    (0x7ffffee, 27),   // 252
    (0x7ffffef, 27),   // 253
    (0x7fffff0, 27),   // 254
    (0x3ffffee, 26),   // 255
    (0x3fffffff, 30),  // 256 EOS
];

/// Canonical-code decoding tables, indexed by code length (0..=30).
struct Canonical {
    /// `limit[len]`: one past the last code of length `len`, left-aligned in a
    /// `MAX_LEN`-bit window. A window value below `limit[len]` (and not below
    /// `limit[len - 1]`) starts with a code of exactly `len` bits.
    limit: [u32; MAX_LEN as usize + 1],
    /// `first[len]`: the numerically smallest code of length `len`.
    first: [u32; MAX_LEN as usize + 1],
    /// `offset[len]`: position in `symbols` of the symbol whose code is
    /// `first[len]`.
    offset: [u16; MAX_LEN as usize + 1],
    /// All symbols ordered by (code length, symbol value), i.e. by code.
    symbols: [u16; SYMBOLS],
}

/// Decoding tables, computed at compile time from the code lengths in `CODES`.
static CANONICAL: Canonical = build_canonical();

/// Derives the canonical decoding tables from the code lengths.
const fn build_canonical() -> Canonical {
    const LENS: usize = MAX_LEN as usize + 1;
    let mut count = [0u32; LENS];
    let mut sym = 0;
    while sym < SYMBOLS {
        count[CODES[sym].1 as usize] += 1;
        sym += 1;
    }

    let mut limit = [0u32; LENS];
    let mut first = [0u32; LENS];
    let mut offset = [0u16; LENS];
    let mut code = 0u32;
    let mut position = 0u16;
    let mut len = 1;
    while len < LENS {
        first[len] = code;
        offset[len] = position;
        code += count[len];
        position += count[len] as u16;
        limit[len] = code << (MAX_LEN as usize - len);
        code <<= 1;
        len += 1;
    }

    let mut symbols = [0u16; SYMBOLS];
    let mut next = offset;
    sym = 0;
    while sym < SYMBOLS {
        let len = CODES[sym].1 as usize;
        symbols[next[len] as usize] = sym as u16;
        next[len] += 1;
        sym += 1;
    }

    Canonical {
        limit,
        first,
        offset,
        symbols,
    }
}

/// Finds the symbol whose code starts the `MAX_LEN`-bit `window`.
///
/// Returns the symbol and its code length in bits. Every window value starts
/// with exactly one code because the code is complete (its Kraft sum is 1).
fn lookup(window: u32) -> Option<(u16, u32)> {
    let table = &CANONICAL;
    for len in MIN_LEN..=MAX_LEN {
        let slot = len as usize;
        let limit = *table.limit.get(slot)?;
        if window < limit {
            let code = window >> (MAX_LEN - len);
            let first = *table.first.get(slot)?;
            let offset = u32::from(*table.offset.get(slot)?);
            let index = offset + code.checked_sub(first)?;
            let symbol = *table.symbols.get(usize::try_from(index).ok()?)?;
            return Some((symbol, len));
        }
    }
    None
}

/// Decodes one symbol from the top of a `MAX_LEN`-bit window, rejecting EOS.
fn decode_symbol(window: u32) -> Result<(u16, u32), HuffmanError> {
    match lookup(window) {
        Some((EOS, _)) | None => Err(HuffmanError::EosInString),
        Some(found) => Ok(found),
    }
}

/// Checks the `bits` low bits of `acc` left over after the last symbol.
fn check_padding(acc: u64, bits: u32) -> Result<(), HuffmanError> {
    let ones = (1u64 << bits) - 1;
    if acc & ones != ones {
        return Err(HuffmanError::InvalidPadding);
    }
    if bits > MAX_PADDING {
        return Err(HuffmanError::PaddingTooLong);
    }
    Ok(())
}

/// Decodes the Huffman-encoded string `input`, appending the octets to `out`.
///
/// Rejects, as RFC 7541 §5.2 requires, an EOS symbol anywhere in the string,
/// padding longer than 7 bits, and padding that is not the most significant
/// bits of EOS (all ones). On error, `out` may hold a partial result.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    // Every symbol takes at least 5 bits, so the output is at most 8/5 of the
    // input length.
    out.reserve(input.len().saturating_add(input.len() / 2 + 1));
    // `acc` holds the `bits` not yet consumed in its low bits; `bits` stays
    // below MAX_LEN + 8, so it always fits in a u64.
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    for &byte in input {
        acc = (acc << 8) | u64::from(byte);
        bits += 8;
        while bits >= MAX_LEN {
            let window = (acc >> (bits - MAX_LEN)) & WINDOW_MASK;
            let (symbol, len) = decode_symbol(window as u32)?;
            push_symbol(out, symbol);
            bits -= len;
            acc &= (1u64 << bits) - 1;
        }
    }
    decode_tail(acc, bits, out)
}

/// Decodes the final `bits` (< `MAX_LEN`) bits of a string, then its padding.
fn decode_tail(mut acc: u64, mut bits: u32, out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    while bits > 0 {
        // Pretend the window is filled with 1 bits, as padding would be.
        let fill = MAX_LEN - bits;
        let window = ((acc << fill) | ((1u64 << fill) - 1)) & WINDOW_MASK;
        let Some((symbol, len)) = lookup(window as u32) else {
            return Err(HuffmanError::InvalidPadding);
        };
        if len > bits {
            // The remaining bits are only a prefix of a code (EOS when they
            // are all ones): they must be valid padding.
            return check_padding(acc, bits);
        }
        // A complete code within fewer than MAX_LEN bits is never EOS.
        push_symbol(out, symbol);
        bits -= len;
        acc &= (1u64 << bits) - 1;
    }
    Ok(())
}

/// Appends a decoded octet symbol (never EOS, which is rejected earlier).
fn push_symbol(out: &mut Vec<u8>, symbol: u16) {
    if let Ok(octet) = u8::try_from(symbol) {
        out.push(octet);
    }
}

/// The `(code, bit length)` of an octet.
fn code_of(octet: u8) -> (u32, u32) {
    // An octet is always below SYMBOLS, so the fallback is never taken.
    let (code, len) = CODES.get(usize::from(octet)).copied().unwrap_or((0, 0));
    (code, u32::from(len))
}

/// The length in octets of the Huffman encoding of `input`, padding included.
pub fn encoded_len(input: &[u8]) -> usize {
    let bits: u64 = input.iter().map(|&b| u64::from(code_of(b).1)).sum();
    usize::try_from(bits.div_ceil(8)).unwrap_or(usize::MAX)
}

/// Huffman-encodes `input` into `out`, padding the last octet with 1 bits.
///
/// Writes exactly [`encoded_len`]`(input)` octets. Like every [`BufMut`]
/// write, this panics if `out` cannot grow to hold them (a `BytesMut` or
/// `Vec<u8>` always can).
pub fn encode(input: &[u8], out: &mut impl BufMut) {
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    for &octet in input {
        let (code, len) = code_of(octet);
        acc = (acc << len) | u64::from(code);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            out.put_u8((acc >> bits) as u8);
        }
        acc &= (1u64 << bits) - 1;
    }
    if bits > 0 {
        let pad = 8 - bits;
        out.put_u8(((acc << pad) | ((1u64 << pad) - 1)) as u8);
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

    fn enc(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(input, &mut out);
        assert_eq!(out.len(), encoded_len(input));
        out
    }

    fn dec(input: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(input, &mut out).map(|()| out)
    }

    /// RFC 7541 Appendix C.4 and C.6 Huffman-coded strings.
    const RFC_VECTORS: &[(&str, &str)] = &[
        ("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
        ("no-cache", "a8eb 1064 9cbf"),
        ("custom-key", "25a8 49e9 5ba9 7d7f"),
        ("custom-value", "25a8 49e9 5bb8 e8b4 bf"),
        ("302", "6402"),
        ("307", "640e ff"),
        ("private", "aec3 771a 4b"),
        (
            "Mon, 21 Oct 2013 20:13:21 GMT",
            "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
        ),
        (
            "Mon, 21 Oct 2013 20:13:22 GMT",
            "d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff",
        ),
        (
            "https://www.example.com",
            "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
        ),
        ("gzip", "9bd9 ab"),
        (
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ),
    ];

    #[test]
    fn rfc7541_appendix_c_vectors_encode() {
        for (plain, coded) in RFC_VECTORS {
            assert_eq!(enc(plain.as_bytes()), hex(coded), "{plain}");
        }
    }

    #[test]
    fn rfc7541_appendix_c_vectors_decode() {
        for (plain, coded) in RFC_VECTORS {
            assert_eq!(dec(&hex(coded)).unwrap(), plain.as_bytes(), "{plain}");
        }
    }

    #[test]
    fn table_is_the_canonical_code_for_its_lengths() {
        // Re-derive every code from the lengths alone, canonically, and check
        // that the typed-in codes are exactly those.
        let mut order: Vec<usize> = (0..SYMBOLS).collect();
        order.sort_by_key(|&s| (CODES[s].1, s));
        let mut code = 0u32;
        let mut prev_len = CODES[order[0]].1;
        for &sym in &order {
            let len = CODES[sym].1;
            code <<= len - prev_len;
            prev_len = len;
            assert_eq!(CODES[sym].0, code, "symbol {sym}");
            code += 1;
        }
        assert_eq!(code, 1 << MAX_LEN, "code is not complete");
    }

    #[test]
    fn kraft_sum_is_exactly_one() {
        let sum: u64 = CODES
            .iter()
            .map(|&(_, len)| 1u64 << (MAX_LEN - u32::from(len)))
            .sum();
        assert_eq!(sum, 1 << MAX_LEN);
    }

    #[test]
    fn codes_fit_their_lengths_and_eos_is_all_ones() {
        for (sym, &(code, len)) in CODES.iter().enumerate() {
            assert!((MIN_LEN..=MAX_LEN).contains(&u32::from(len)), "{sym}");
            assert!(u64::from(code) < (1u64 << len), "{sym}");
        }
        assert_eq!(CODES[usize::from(EOS)], (0x3fff_ffff, 30));
    }

    #[test]
    fn lookup_finds_every_code() {
        for (sym, &(code, len)) in CODES.iter().enumerate() {
            let shift = MAX_LEN - u32::from(len);
            let window = code << shift;
            let filled = window | ((1 << shift) - 1);
            for w in [window, filled] {
                assert_eq!(lookup(w), Some((sym as u16, u32::from(len))));
            }
        }
    }

    #[test]
    fn round_trips_every_single_octet() {
        for b in 0..=255u8 {
            let coded = enc(&[b]);
            assert_eq!(dec(&coded).unwrap(), vec![b], "octet {b}");
        }
    }

    #[test]
    fn round_trips_all_octets_and_empty() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(dec(&enc(&all)).unwrap(), all);
        let rev: Vec<u8> = (0..=255).rev().collect();
        assert_eq!(dec(&enc(&rev)).unwrap(), rev);
        assert_eq!(enc(b""), Vec::<u8>::new());
        assert_eq!(dec(b"").unwrap(), Vec::<u8>::new());
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
    fn round_trips_random_strings() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5_000 {
            let len = (rng.next() % 64) as usize;
            let text_like = rng.next() % 2 == 0;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next() as u8;
                    if text_like {
                        b' ' + r % 95
                    } else {
                        r
                    }
                })
                .collect();
            assert_eq!(dec(&enc(&input)).unwrap(), input);
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let len = (rng.next() % 40) as usize;
            let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Ok(out) = dec(&input) {
                // Whatever decodes must re-encode to the same bits.
                assert_eq!(enc(&out), input);
            }
        }
    }

    #[test]
    fn rejects_eos_in_string() {
        // 'a' (00011), EOS (30 ones), 5 bits of padding.
        assert_eq!(dec(&hex("1fff ffff ff")), Err(HuffmanError::EosInString));
        // EOS alone plus 2 padding bits.
        assert_eq!(dec(&hex("ffff ffff")), Err(HuffmanError::EosInString));
        // EOS followed by a real symbol.
        let mut bits = hex("ffff fffc"); // EOS then "00" ...
        bits.push(0x7f); // ... "011" = 'a', then 5 ones.
        assert_eq!(dec(&bits), Err(HuffmanError::EosInString));
    }

    #[test]
    fn rejects_padding_longer_than_seven_bits() {
        // 'a' then 11 one bits.
        assert_eq!(dec(&hex("1fff")), Err(HuffmanError::PaddingTooLong));
        // 8 one bits and nothing else.
        assert_eq!(dec(&hex("ff")), Err(HuffmanError::PaddingTooLong));
        // "302" (6402) followed by a whole octet of padding.
        assert_eq!(dec(&hex("6402 ff")), Err(HuffmanError::PaddingTooLong));
    }

    #[test]
    fn rejects_padding_that_is_not_all_ones() {
        // 'a' (00011) then 000.
        assert_eq!(dec(&hex("18")), Err(HuffmanError::InvalidPadding));
        // 'a' then 110.
        assert_eq!(dec(&hex("1e")), Err(HuffmanError::InvalidPadding));
        // "www.example.com" with its last padding bit cleared.
        assert_eq!(
            dec(&hex("f1e3 c2e5 f23a 6ba0 ab90 f4fe")),
            Err(HuffmanError::InvalidPadding)
        );
    }

    #[test]
    fn accepts_padding_up_to_seven_bits() {
        // 'a' + 3 ones, and "00" = '0' ... exercising both ends.
        assert_eq!(dec(&hex("1f")).unwrap(), b"a");
        // '0' (00000) + '0' (00000) + 6 ones: 16 bits.
        assert_eq!(dec(&hex("003f")).unwrap(), b"00");
        // '&' is exactly 8 bits: no padding at all.
        assert_eq!(dec(&hex("f8")).unwrap(), b"&");
    }

    #[test]
    fn encoded_len_matches_rfc_vectors() {
        for (plain, coded) in RFC_VECTORS {
            assert_eq!(encoded_len(plain.as_bytes()), hex(coded).len());
        }
    }
}
