//! Extended CONNECT requests and their responses as header lists: building, validating, and
//! the structured-field bits WebTransport uses (`wt-available-protocols`, `wt-protocol`).

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use wt_core::Dialect;

use super::qpack::{self, HeaderField};

/// `:protocol` of H3 draft-15+.
pub const PROTOCOL_LATEST: &str = "webtransport-h3";
/// `:protocol` of H3 draft-02…14 (and what browsers send).
pub const PROTOCOL_LEGACY: &str = "webtransport";
/// Request header of draft-02.
pub const DRAFT02_REQUEST: &str = "sec-webtransport-http3-draft02";
/// Response header of draft-02.
pub const DRAFT02_RESPONSE: &str = "sec-webtransport-http3-draft";
/// Offered subprotocols.
pub const AVAILABLE_PROTOCOLS: &str = "wt-available-protocols";
/// Selected subprotocol.
pub const SELECTED_PROTOCOL: &str = "wt-protocol";

/// Why a header section was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The field section did not decode.
    #[error("QPACK: {0}")]
    Qpack(#[from] qpack::QpackError),
    /// The message is malformed (RFC 9114 §4.1.2).
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

/// A parsed request header section.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `:method`.
    pub method: String,
    /// `:protocol`, if present.
    pub protocol: Option<String>,
    /// `:scheme`.
    pub scheme: Option<String>,
    /// `:authority`.
    pub authority: Option<String>,
    /// `:path`.
    pub path: Option<String>,
    /// Regular headers.
    pub headers: HeaderMap,
}

impl Request {
    /// True for an extended CONNECT with every pseudo-header WebTransport needs.
    pub fn is_extended_connect(&self) -> bool {
        self.method == "CONNECT" && self.protocol.is_some()
    }

    /// Checks the extended CONNECT form (RFC 9220): `:scheme https`, `:authority` and `:path`
    /// present and non-empty.
    pub fn check_extended_connect(&self) -> Result<(), HeaderError> {
        if self.method != "CONNECT" || self.protocol.is_none() {
            return Err(HeaderError::Malformed("not an extended CONNECT"));
        }
        if self.scheme.as_deref() != Some("https") {
            return Err(HeaderError::Malformed(":scheme missing or not https"));
        }
        if self.authority.as_deref().is_none_or(str::is_empty) {
            return Err(HeaderError::Malformed(":authority missing"));
        }
        if self.path.as_deref().is_none_or(str::is_empty) {
            return Err(HeaderError::Malformed(":path missing"));
        }
        Ok(())
    }

    /// The `origin` header.
    pub fn origin(&self) -> Option<String> {
        self.headers
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Whether the draft-02 request header is present.
    pub fn has_draft02(&self) -> bool {
        self.headers.contains_key(DRAFT02_REQUEST)
    }

    /// The offered subprotocols (sf-list of strings; tokens accepted, as draft-10…12 used
    /// them). A malformed field is ignored (treated as absent), as the drafts say.
    pub fn offered_protocols(&self) -> Vec<String> {
        self.offered(false)
    }

    /// The offered subprotocols as `dialect` reads them: on the latest dialect (draft-15+) the
    /// field must be an sf-list of strings, and a field of the wrong type (any token member) is
    /// ignored (wire reference §3.3); older dialects also accept tokens.
    pub fn offered_protocols_for(&self, dialect: Dialect) -> Vec<String> {
        self.offered(strings_only(dialect))
    }

    fn offered(&self, strings_only: bool) -> Vec<String> {
        let mut out = Vec::new();
        for v in self.headers.get_all(AVAILABLE_PROTOCOLS) {
            match v
                .to_str()
                .ok()
                .and_then(|v| parse_sf_items(v, strings_only))
            {
                Some(list) => out.extend(list),
                None => return Vec::new(),
            }
        }
        out
    }
}

fn utf8(b: &Bytes) -> Result<String, HeaderError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| HeaderError::Malformed("pseudo-header is not UTF-8"))
}

/// Connection-specific fields forbidden in HTTP/3 (RFC 9114 §4.2).
fn forbidden(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
    )
}

fn regular(headers: &mut HeaderMap, f: &HeaderField) -> Result<(), HeaderError> {
    if f.name.iter().any(u8::is_ascii_uppercase) {
        return Err(HeaderError::Malformed("upper-case field name"));
    }
    if forbidden(&f.name) {
        return Err(HeaderError::Malformed("connection-specific field"));
    }
    if &f.name[..] == b"te" && &f.value[..] != b"trailers" {
        return Err(HeaderError::Malformed("te other than trailers"));
    }
    let name = HeaderName::from_bytes(&f.name)
        .map_err(|_| HeaderError::Malformed("invalid field name"))?;
    let value = HeaderValue::from_bytes(&f.value)
        .map_err(|_| HeaderError::Malformed("invalid field value"))?;
    headers.append(name, value);
    Ok(())
}

/// Decodes and validates a request field section.
pub fn parse_request(block: &[u8]) -> Result<Request, HeaderError> {
    let fields = qpack::decode_field_section(block, wt_core::limits::MAX_FIELD_SECTION_SIZE)?;
    let mut req = Request::default();
    let mut method = None;
    let mut seen_regular = false;
    for f in &fields {
        if f.name.first() == Some(&b':') {
            if seen_regular {
                return Err(HeaderError::Malformed("pseudo-header after regular field"));
            }
            let slot = match &f.name[..] {
                b":method" => &mut method,
                b":protocol" => &mut req.protocol,
                b":scheme" => &mut req.scheme,
                b":authority" => &mut req.authority,
                b":path" => &mut req.path,
                _ => return Err(HeaderError::Malformed("unknown pseudo-header")),
            };
            if slot.is_some() {
                return Err(HeaderError::Malformed("duplicate pseudo-header"));
            }
            *slot = Some(utf8(&f.value)?);
        } else {
            seen_regular = true;
            regular(&mut req.headers, f)?;
        }
    }
    req.method = method.ok_or(HeaderError::Malformed(":method missing"))?;
    if req.method != "CONNECT" && (req.scheme.is_none() || req.path.is_none()) {
        return Err(HeaderError::Malformed(":scheme or :path missing"));
    }
    if req.protocol.is_some() && req.method != "CONNECT" {
        return Err(HeaderError::Malformed(":protocol on a non-CONNECT request"));
    }
    Ok(req)
}

/// A parsed response header section.
#[derive(Clone, Debug)]
pub struct Response {
    /// `:status`.
    pub status: StatusCode,
    /// Regular headers.
    pub headers: HeaderMap,
}

impl Response {
    /// The selected subprotocol (`wt-protocol`, sf-string or token). Malformed → `None`.
    pub fn selected_protocol(&self) -> Option<String> {
        self.selected(false)
    }

    /// The selected subprotocol as `dialect` reads it: on the latest dialect (draft-15+)
    /// `wt-protocol` must be an sf-string, and a field of another type (a token) is ignored
    /// (wire reference §3.3); older dialects also accept a token. Malformed → `None`.
    pub fn selected_protocol_for(&self, dialect: Dialect) -> Option<String> {
        self.selected(strings_only(dialect))
    }

    fn selected(&self, strings_only: bool) -> Option<String> {
        let v = self.headers.get(SELECTED_PROTOCOL)?.to_str().ok()?;
        let mut list = parse_sf_items(v, strings_only)?;
        if list.len() == 1 {
            list.pop()
        } else {
            None
        }
    }
}

/// Decodes and validates a response field section.
pub fn parse_response(block: &[u8]) -> Result<Response, HeaderError> {
    let fields = qpack::decode_field_section(block, wt_core::limits::MAX_FIELD_SECTION_SIZE)?;
    let mut status = None;
    let mut headers = HeaderMap::new();
    let mut seen_regular = false;
    for f in &fields {
        if f.name.first() == Some(&b':') {
            if seen_regular || &f.name[..] != b":status" || status.is_some() {
                return Err(HeaderError::Malformed("bad pseudo-header in response"));
            }
            status = Some(
                StatusCode::from_bytes(&f.value)
                    .map_err(|_| HeaderError::Malformed("bad :status"))?,
            );
        } else {
            seen_regular = true;
            regular(&mut headers, f)?;
        }
    }
    let status = status.ok_or(HeaderError::Malformed(":status missing"))?;
    if status.is_success() {
        if headers.contains_key(http::header::CONTENT_LENGTH) {
            return Err(HeaderError::Malformed(
                "content-length in a 2xx CONNECT response",
            ));
        }
        if matches!(status.as_u16(), 204..=206) {
            return Err(HeaderError::Malformed("status 204/205/206 for CONNECT"));
        }
    }
    Ok(Response { status, headers })
}

/// What the client puts in its CONNECT request.
#[derive(Clone, Debug)]
pub struct RequestParts<'a> {
    /// `:protocol`.
    pub protocol: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// `:path`.
    pub path: &'a str,
    /// `origin`.
    pub origin: Option<&'a str>,
    /// Whether to add `sec-webtransport-http3-draft02: 1`.
    pub draft02: bool,
    /// Offered subprotocols.
    pub protocols: &'a [String],
    /// Extra headers.
    pub headers: &'a HeaderMap,
}

/// Encodes a CONNECT request field section.
pub fn encode_request(parts: &RequestParts<'_>, out: &mut BytesMut) {
    let offered = if parts.protocols.is_empty() {
        None
    } else {
        Some(
            parts
                .protocols
                .iter()
                .map(|p| sf_string(p))
                .collect::<Vec<_>>()
                .join(", "),
        )
    };
    let mut fields: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"CONNECT"),
        (b":protocol", parts.protocol.as_bytes()),
        (b":scheme", b"https"),
        (b":authority", parts.authority.as_bytes()),
        (b":path", parts.path.as_bytes()),
    ];
    if let Some(o) = parts.origin {
        fields.push((b"origin", o.as_bytes()));
    }
    if parts.draft02 {
        fields.push((DRAFT02_REQUEST.as_bytes(), b"1"));
    }
    if let Some(o) = &offered {
        fields.push((AVAILABLE_PROTOCOLS.as_bytes(), o.as_bytes()));
    }
    for (k, v) in parts.headers {
        fields.push((k.as_str().as_bytes(), v.as_bytes()));
    }
    qpack::encode_field_section(&fields, true, out);
}

/// Encodes a response field section: status, optional `wt-protocol`, the draft-02 header if
/// asked, extra headers.
pub fn encode_response(
    status: StatusCode,
    protocol: Option<&str>,
    draft02: bool,
    extra: &HeaderMap,
    out: &mut BytesMut,
) {
    let selected = protocol.map(sf_string);
    let mut fields: Vec<(&[u8], &[u8])> = vec![(b":status", status.as_str().as_bytes())];
    if let Some(p) = &selected {
        fields.push((SELECTED_PROTOCOL.as_bytes(), p.as_bytes()));
    }
    if draft02 {
        fields.push((DRAFT02_RESPONSE.as_bytes(), b"draft02"));
    }
    for (k, v) in extra {
        fields.push((k.as_str().as_bytes(), v.as_bytes()));
    }
    qpack::encode_field_section(&fields, true, out);
}

/// Serialises an sf-string (RFC 8941 §3.3.3): quotes, with `"` and `\` escaped.
pub fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Whether `dialect` types `wt-available-protocols` / `wt-protocol` strictly as sf-strings
/// (draft-15+; older drafts used tokens).
fn strings_only(dialect: Dialect) -> bool {
    matches!(dialect, Dialect::H3Latest | Dialect::H2Latest)
}

/// Parses an sf-list whose members are strings or tokens (parameters are ignored). `None`
/// if malformed.
pub fn parse_sf_list(input: &str) -> Option<Vec<String>> {
    parse_sf_items(input, false)
}

/// Parses an sf-list whose members are all sf-strings (parameters are ignored). `None` if
/// malformed or if a member is of another type (a token).
pub fn parse_sf_string_list(input: &str) -> Option<Vec<String>> {
    parse_sf_items(input, true)
}

/// The sf-list parser; with `strings_only` a token member makes the list `None`.
fn parse_sf_items(input: &str, strings_only: bool) -> Option<Vec<String>> {
    let b = input.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ows = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    skip_ows(&mut i);
    if i == b.len() {
        return Some(out);
    }
    loop {
        // Item.
        if b.get(i) == Some(&b'"') {
            i += 1;
            let mut s = String::new();
            loop {
                match *b.get(i)? {
                    b'\\' => {
                        let c = *b.get(i + 1)?;
                        if c != b'"' && c != b'\\' {
                            return None;
                        }
                        s.push(c as char);
                        i += 2;
                    }
                    b'"' => {
                        i += 1;
                        break;
                    }
                    c if (0x20..0x7f).contains(&c) => {
                        s.push(c as char);
                        i += 1;
                    }
                    _ => return None,
                }
            }
            out.push(s);
        } else {
            if strings_only {
                return None;
            }
            let start = i;
            let first = *b.get(i)?;
            if !(first.is_ascii_alphabetic() || first == b'*') {
                return None;
            }
            while i < b.len() && is_tchar(b[i]) {
                i += 1;
            }
            out.push(input[start..i].to_owned());
        }
        // Parameters: ;key[=value] — skipped.
        while b.get(i) == Some(&b';') {
            i += 1;
            while i < b.len() && b[i] != b',' && b[i] != b';' {
                if b[i] == b'"' {
                    i += 1;
                    while i < b.len() && b[i] != b'"' {
                        i += if b[i] == b'\\' { 2 } else { 1 };
                    }
                }
                i += 1;
            }
        }
        skip_ows(&mut i);
        if i >= b.len() {
            return Some(out);
        }
        if b[i] != b',' {
            return None;
        }
        i += 1;
        skip_ows(&mut i);
        if i >= b.len() {
            return None;
        }
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_block(fields: &[(&str, &str)]) -> BytesMut {
        let f: Vec<(&[u8], &[u8])> = fields
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        let mut out = BytesMut::new();
        qpack::encode_field_section(&f, false, &mut out);
        out
    }

    #[test]
    fn request_round_trip() {
        let mut extra = HeaderMap::new();
        extra.insert("x-foo", HeaderValue::from_static("bar"));
        let protocols = vec!["a".to_owned(), "b\"q".to_owned()];
        let mut out = BytesMut::new();
        encode_request(
            &RequestParts {
                protocol: PROTOCOL_LATEST,
                authority: "localhost:4433",
                path: "/echo?x=1",
                origin: Some("https://example.org"),
                draft02: true,
                protocols: &protocols,
                headers: &extra,
            },
            &mut out,
        );
        let r = parse_request(&out).unwrap();
        r.check_extended_connect().unwrap();
        assert_eq!(r.protocol.as_deref(), Some(PROTOCOL_LATEST));
        assert_eq!(r.path.as_deref(), Some("/echo?x=1"));
        assert_eq!(r.origin().as_deref(), Some("https://example.org"));
        assert!(r.has_draft02());
        assert_eq!(r.offered_protocols(), protocols);
        assert_eq!(r.headers.get("x-foo").unwrap(), "bar");
    }

    #[test]
    fn malformed_requests() {
        let bad: &[&[(&str, &str)]] = &[
            &[(":protocol", "webtransport")],
            &[(":method", "CONNECT"), (":method", "CONNECT")],
            &[(":method", "CONNECT"), ("x", "y"), (":path", "/")],
            &[(":method", "CONNECT"), (":foo", "y")],
            &[(":method", "CONNECT"), ("X-Upper", "y")],
            &[(":method", "CONNECT"), ("connection", "close")],
            &[
                (":method", "GET"),
                (":protocol", "webtransport"),
                (":scheme", "https"),
                (":path", "/"),
            ],
            &[(":method", "GET"), (":path", "/")],
        ];
        for f in bad {
            assert!(parse_request(&req_block(f)).is_err(), "{f:?}");
        }
        // Extended CONNECT missing :authority / wrong scheme.
        let r = parse_request(&req_block(&[
            (":method", "CONNECT"),
            (":protocol", "webtransport-h3"),
            (":scheme", "https"),
            (":path", "/"),
        ]))
        .unwrap();
        assert!(r.check_extended_connect().is_err());
        let r = parse_request(&req_block(&[
            (":method", "CONNECT"),
            (":protocol", "webtransport-h3"),
            (":scheme", "http"),
            (":authority", "a"),
            (":path", "/"),
        ]))
        .unwrap();
        assert!(r.check_extended_connect().is_err());
        // Garbage QPACK.
        assert!(parse_request(&[0xff, 0xff, 0xff]).is_err());
        assert!(parse_request(&[]).is_err());
    }

    #[test]
    fn responses() {
        let mut out = BytesMut::new();
        encode_response(StatusCode::OK, Some("b"), true, &HeaderMap::new(), &mut out);
        let r = parse_response(&out).unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.selected_protocol().as_deref(), Some("b"));
        assert_eq!(r.headers.get(DRAFT02_RESPONSE).unwrap(), "draft02");
        let f = |fields: &[(&str, &str)]| parse_response(&req_block(fields));
        assert!(f(&[(":status", "200"), ("content-length", "0")]).is_err());
        assert!(f(&[(":status", "204")]).is_err());
        assert!(f(&[(":status", "2000")]).is_err());
        assert!(f(&[("x", "y")]).is_err());
        assert!(f(&[(":status", "200"), (":status", "200")]).is_err());
        assert!(f(&[(":method", "GET")]).is_err());
        assert_eq!(
            f(&[(":status", "404")]).unwrap().status,
            StatusCode::NOT_FOUND
        );
        // Token accepted for wt-protocol; list or garbage ignored.
        assert_eq!(
            f(&[(":status", "200"), ("wt-protocol", "tok")])
                .unwrap()
                .selected_protocol()
                .as_deref(),
            Some("tok")
        );
        assert_eq!(
            f(&[(":status", "200"), ("wt-protocol", "\"a\", \"b\"")])
                .unwrap()
                .selected_protocol(),
            None
        );
    }

    #[test]
    fn sf_lists() {
        assert_eq!(
            parse_sf_list("\"a\", \"b\"").unwrap(),
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert_eq!(
            parse_sf_list("tok1,\"s\\\"x\";q=1 ,tok2;a").unwrap(),
            vec!["tok1".to_owned(), "s\"x".to_owned(), "tok2".to_owned()]
        );
        assert_eq!(parse_sf_list("").unwrap(), Vec::<String>::new());
        for bad in [
            "\"unterminated",
            "a,",
            ",a",
            "1abc",
            "\"a\" \"b\"",
            "\"\\x\"",
        ] {
            assert!(parse_sf_list(bad).is_none(), "{bad}");
        }
        assert_eq!(sf_string("a\"b\\"), "\"a\\\"b\\\\\"");
        // Strings only (draft-15+): any token member makes the field the wrong type.
        assert_eq!(
            parse_sf_string_list("\"a\";q=1, \"b\"").unwrap(),
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert_eq!(parse_sf_string_list("").unwrap(), Vec::<String>::new());
        for bad in ["a, b", "\"a\", b", "tok", "\"a\",", "\"unterminated"] {
            assert!(parse_sf_string_list(bad).is_none(), "{bad}");
        }
    }

    fn offer(value: &str) -> Request {
        let mut r = Request::default();
        r.headers
            .append(AVAILABLE_PROTOCOLS, HeaderValue::from_str(value).unwrap());
        r
    }

    #[test]
    fn offered_protocols_by_dialect() {
        let tokens = offer("a, b");
        assert_eq!(
            tokens.offered_protocols_for(Dialect::H3Latest),
            Vec::<String>::new()
        );
        let legacy = ["a".to_owned(), "b".to_owned()];
        for d in [Dialect::H3Draft13, Dialect::H3Draft07, Dialect::H3Draft02] {
            assert_eq!(tokens.offered_protocols_for(d), legacy, "{d:?}");
        }
        assert_eq!(tokens.offered_protocols(), legacy);
        let mixed = offer("\"a\", b");
        assert_eq!(
            mixed.offered_protocols_for(Dialect::H3Latest),
            Vec::<String>::new()
        );
        assert_eq!(mixed.offered_protocols_for(Dialect::H3Draft07), legacy);
        let strings = offer("\"a\", \"b\"");
        for d in [Dialect::H3Latest, Dialect::H3Draft13, Dialect::H3Draft02] {
            assert_eq!(strings.offered_protocols_for(d), legacy, "{d:?}");
        }
        // A second field line of the wrong type discards the whole offer.
        let mut two = offer("\"a\"");
        two.headers
            .append(AVAILABLE_PROTOCOLS, HeaderValue::from_static("b"));
        assert_eq!(
            two.offered_protocols_for(Dialect::H3Latest),
            Vec::<String>::new()
        );
        assert_eq!(two.offered_protocols_for(Dialect::H3Draft13), legacy);
    }

    #[test]
    fn selected_protocol_by_dialect() {
        let resp = |v: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(SELECTED_PROTOCOL, HeaderValue::from_str(v).unwrap());
            Response {
                status: StatusCode::OK,
                headers,
            }
        };
        let token = resp("tok");
        assert_eq!(token.selected_protocol_for(Dialect::H3Latest), None);
        assert_eq!(
            token.selected_protocol_for(Dialect::H3Draft07).as_deref(),
            Some("tok")
        );
        let string = resp("\"tok\"");
        for d in [Dialect::H3Latest, Dialect::H3Draft13, Dialect::H3Draft02] {
            assert_eq!(
                string.selected_protocol_for(d).as_deref(),
                Some("tok"),
                "{d:?}"
            );
        }
        assert_eq!(
            resp("\"a\", \"b\"").selected_protocol_for(Dialect::H3Latest),
            None
        );
    }
}
