//! The few Structured Field (RFC 8941) shapes WebTransport over HTTP/2 uses:
//! `webtransport-init` (a dictionary of integers), `wt-available-protocols` (a list of
//! strings) and `wt-protocol` (one string).

/// The per-stream byte limits of a `WebTransport-Init` header (`u`, `bl`, `br`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct InitHeader {
    /// Unidirectional streams opened by the recipient.
    pub u: Option<u64>,
    /// Bidirectional streams opened by the sender.
    pub bl: Option<u64>,
    /// Bidirectional streams opened by the recipient.
    pub br: Option<u64>,
}

/// A header that does not parse, or a known key with a non-integer (or negative) value.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct BadHeader;

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }
    fn key(&mut self) -> Result<&str, BadHeader> {
        let start = self.i;
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => self.i += 1,
            _ => return Err(BadHeader),
        }
        while matches!(self.peek(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c))
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).map_err(|_| BadHeader)
    }
    /// Parses a bare item; returns `Some(n)` for a non-negative integer.
    fn bare_item(&mut self) -> Result<Item, BadHeader> {
        match self.peek().ok_or(BadHeader)? {
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                if self.peek() == Some(b'-') {
                    self.i += 1;
                }
                let digits = self.i;
                while matches!(self.peek(), Some(b'0'..=b'9' | b'.')) {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| BadHeader)?;
                if self.i == digits {
                    return Err(BadHeader);
                }
                if text.contains('.') {
                    return Ok(Item::Other);
                }
                if self.i - digits > 15 {
                    return Err(BadHeader);
                }
                let n: i64 = text.parse().map_err(|_| BadHeader)?;
                Ok(Item::Int(n))
            }
            b'"' => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    match self.peek().ok_or(BadHeader)? {
                        b'\\' => {
                            self.i += 1;
                            match self.peek() {
                                Some(c @ (b'"' | b'\\')) => out.push(c as char),
                                _ => return Err(BadHeader),
                            }
                            self.i += 1;
                        }
                        b'"' => {
                            self.i += 1;
                            return Ok(Item::Str(out));
                        }
                        c if (0x20..0x7f).contains(&c) => {
                            out.push(c as char);
                            self.i += 1;
                        }
                        _ => return Err(BadHeader),
                    }
                }
            }
            b'?' => {
                self.i += 1;
                match self.peek() {
                    Some(b'0' | b'1') => {
                        self.i += 1;
                        Ok(Item::Other)
                    }
                    _ => Err(BadHeader),
                }
            }
            b':' => {
                self.i += 1;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || b"+/=".contains(&c))
                {
                    self.i += 1;
                }
                if self.peek() != Some(b':') {
                    return Err(BadHeader);
                }
                self.i += 1;
                Ok(Item::Other)
            }
            c if c.is_ascii_alphabetic() || c == b'*' => {
                let start = self.i;
                while matches!(self.peek(), Some(c) if c.is_ascii_graphic() && !b"\",;()<>=?@[]{}\\".contains(&c) || c == b'/' || c == b':')
                {
                    self.i += 1;
                }
                Ok(Item::Token(
                    String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
                ))
            }
            _ => Err(BadHeader),
        }
    }
    fn params(&mut self) -> Result<(), BadHeader> {
        while self.peek() == Some(b';') {
            self.i += 1;
            self.sp();
            self.key()?;
            if self.peek() == Some(b'=') {
                self.i += 1;
                self.bare_item()?;
            }
        }
        Ok(())
    }
    fn item_or_inner(&mut self) -> Result<Item, BadHeader> {
        if self.peek() == Some(b'(') {
            self.i += 1;
            loop {
                self.sp();
                if self.peek() == Some(b')') {
                    self.i += 1;
                    break;
                }
                self.bare_item()?;
                self.params()?;
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return Err(BadHeader);
                }
            }
            self.params()?;
            return Ok(Item::Other);
        }
        let it = self.bare_item()?;
        self.params()?;
        Ok(it)
    }
    /// After a member: end of input, or a comma followed by another member.
    fn next_member(&mut self) -> Result<bool, BadHeader> {
        self.ows();
        match self.peek() {
            None => Ok(false),
            Some(b',') => {
                self.i += 1;
                self.ows();
                if self.peek().is_none() {
                    return Err(BadHeader);
                }
                Ok(true)
            }
            _ => Err(BadHeader),
        }
    }
}

enum Item {
    Int(i64),
    Str(String),
    Token(String),
    Other,
}

/// Parses `webtransport-init`. Unknown keys are ignored; `u`, `bl`, `br` must be
/// non-negative integers.
pub(crate) fn parse_init(value: &[u8]) -> Result<InitHeader, BadHeader> {
    let mut p = P { s: value, i: 0 };
    let mut out = InitHeader::default();
    p.sp();
    if p.peek().is_none() {
        return Ok(out);
    }
    loop {
        let key = p.key()?.to_owned();
        let item = if p.peek() == Some(b'=') {
            p.i += 1;
            p.item_or_inner()?
        } else {
            p.params()?;
            Item::Other // boolean true
        };
        let slot = match key.as_str() {
            "u" => Some(&mut out.u),
            "bl" => Some(&mut out.bl),
            "br" => Some(&mut out.br),
            _ => None,
        };
        if let Some(slot) = slot {
            match item {
                Item::Int(n) if n >= 0 => *slot = Some(n as u64),
                _ => return Err(BadHeader),
            }
        }
        if !p.next_member()? {
            return Ok(out);
        }
    }
}

/// Formats a `webtransport-init` value.
pub(crate) fn format_init(u: u64, bl: u64, br: u64) -> String {
    const MAX: u64 = 999_999_999_999_999;
    format!("u={}, bl={}, br={}", u.min(MAX), bl.min(MAX), br.min(MAX))
}

/// Parses `wt-available-protocols` (strings; tokens accepted too). `None` if malformed.
pub(crate) fn parse_protocols(value: &[u8]) -> Option<Vec<String>> {
    let mut p = P { s: value, i: 0 };
    let mut out = Vec::new();
    p.sp();
    if p.peek().is_none() {
        return Some(out);
    }
    loop {
        match p.item_or_inner().ok()? {
            Item::Str(s) | Item::Token(s) => out.push(s),
            _ => return None,
        }
        if !p.next_member().ok()? {
            return Some(out);
        }
    }
}

/// Parses `wt-protocol` (one string or token).
pub(crate) fn parse_protocol(value: &[u8]) -> Option<String> {
    match parse_protocols(value)?.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// Formats a list of strings.
pub(crate) fn format_protocols(list: &[String]) -> String {
    list.iter()
        .map(|s| format_string(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Formats one sf-string (non-printable characters dropped).
pub(crate) fn format_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_header() {
        assert_eq!(
            parse_init(b"u=1000, bl=2000, br=3000"),
            Ok(InitHeader {
                u: Some(1000),
                bl: Some(2000),
                br: Some(3000)
            })
        );
        assert_eq!(
            parse_init(b"bl=5;x=1,zz=\"hi\",  other=?1, q=(1 2)"),
            Ok(InitHeader {
                bl: Some(5),
                ..Default::default()
            })
        );
        // HS-15: bad type for a known key, negative, decimal, garbage.
        assert_eq!(parse_init(b"u=1000, bl=2000, br=x"), Err(BadHeader));
        assert_eq!(parse_init(b"u=-1"), Err(BadHeader));
        assert_eq!(parse_init(b"u=1.5"), Err(BadHeader));
        assert_eq!(parse_init(b"u=1,"), Err(BadHeader));
        assert_eq!(parse_init(b"U=1"), Err(BadHeader));
        assert_eq!(parse_init(b"u=1 bl=2"), Err(BadHeader));
        assert_eq!(parse_init(b"u=1234567890123456"), Err(BadHeader));
        assert_eq!(parse_init(b""), Ok(InitHeader::default()));
        let f = format_init(1, 2, 3);
        assert_eq!(
            parse_init(f.as_bytes()),
            Ok(InitHeader {
                u: Some(1),
                bl: Some(2),
                br: Some(3)
            })
        );
    }

    #[test]
    fn protocols() {
        assert_eq!(
            parse_protocols(b"\"a\", \"b\""),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(parse_protocol(b"\"b\""), Some("b".into()));
        assert_eq!(parse_protocol(b"tok"), Some("tok".into()));
        assert_eq!(parse_protocols(b"\"a"), None);
        assert_eq!(
            format_protocols(&["a\"b".into(), "c".into()]),
            "\"a\\\"b\", \"c\""
        );
    }
}
