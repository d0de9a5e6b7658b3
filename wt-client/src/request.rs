//! Turning a URL and [`Options`] into a [`ConnectRequest`], before any network I/O.

use wt_core::{ConnectRequest, RequestError};

use crate::Options;

const FORBIDDEN: [char; 3] = ['\r', '\n', '\0'];

fn check_chars(field: &'static str, s: &str) -> Result<(), RequestError> {
    match s.chars().find(|c| FORBIDDEN.contains(c)) {
        Some(ch) => Err(RequestError::ForbiddenCharacter { field, ch }),
        None => Ok(()),
    }
}

/// Parses `https://host[:port]/path?query` (`wss://` accepted as an alias) and the request
/// options into a [`ConnectRequest`]. The fragment is dropped, the query kept in the path,
/// the port defaults to 443.
///
/// ```
/// use wt_client::{build_request, Options};
/// let req = build_request("wss://example.com/chat?room=1#x", &Options::default()).unwrap();
/// assert_eq!((req.host.as_str(), req.port, req.path.as_str()), ("example.com", 443, "/chat?room=1"));
/// assert!(build_request("http://example.com/", &Options::default()).is_err());
/// ```
pub fn build_request(url: &str, opts: &Options) -> Result<ConnectRequest, RequestError> {
    let (scheme, rest) = url.split_once("://").ok_or(RequestError::BadUrl)?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "wss" {
        return Err(RequestError::UnsupportedScheme(scheme));
    }
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    check_chars("host", authority)?;
    check_chars("path", tail)?;
    let tail = tail.split('#').next().unwrap_or("");
    let path = if tail.starts_with('/') {
        tail.to_owned()
    } else {
        format!("/{tail}")
    };
    if http::uri::PathAndQuery::try_from(path.as_str()).is_err() {
        return Err(RequestError::BadUrl);
    }
    // Drop any userinfo.
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or(RequestError::BadUrl)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(RequestError::BadUrl)?),
        };
        (h, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(RequestError::MissingHost);
    }
    let port = match port {
        None | Some("") => 443,
        Some(p) => p.parse::<u16>().map_err(|_| RequestError::BadUrl)?,
    };
    let host_for_authority = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let authority = if port == 443 {
        host_for_authority
    } else {
        format!("{host_for_authority}:{port}")
    };
    if http::uri::Authority::try_from(authority.as_str()).is_err() {
        return Err(RequestError::BadUrl);
    }

    let mut headers = http::HeaderMap::new();
    for (name, value) in &opts.headers {
        check_chars("header", name)?;
        check_chars("header", value)?;
        let n = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| RequestError::InvalidHeader(name.clone()))?;
        let v = http::HeaderValue::from_str(value)
            .map_err(|_| RequestError::InvalidHeader(name.clone()))?;
        headers.append(n, v);
    }
    if let Some(origin) = &opts.origin {
        check_chars("origin", origin)?;
        if http::HeaderValue::from_str(origin).is_err() {
            return Err(RequestError::InvalidHeader("origin".into()));
        }
    }
    for p in &opts.protocols {
        check_chars("protocol", p)?;
    }
    Ok(ConnectRequest {
        host: host.to_ascii_lowercase(),
        port,
        authority,
        path,
        origin: opts.origin.clone(),
        protocols: opts.protocols.clone(),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(url: &str) -> Result<ConnectRequest, RequestError> {
        build_request(url, &Options::default())
    }

    #[test]
    fn parses_urls() {
        let r = req("https://Example.com/wt").unwrap();
        assert_eq!(r.host, "example.com");
        assert_eq!(r.port, 443);
        assert_eq!(r.authority, "Example.com");
        assert_eq!(r.path, "/wt");
        let r = req("wss://127.0.0.1:4433?x=1").unwrap();
        assert_eq!((r.port, r.path.as_str()), (4433, "/?x=1"));
        assert_eq!(r.authority, "127.0.0.1:4433");
        let r = req("https://[::1]:8443/a/b?c=d&e#frag").unwrap();
        assert_eq!(r.host, "::1");
        assert_eq!(r.authority, "[::1]:8443");
        assert_eq!(r.path, "/a/b?c=d&e");
        let r = req("https://user:pw@h.example").unwrap();
        assert_eq!((r.host.as_str(), r.path.as_str()), ("h.example", "/"));
    }

    #[test]
    fn rejects_bad_urls() {
        assert_eq!(
            req("http://example.com/").unwrap_err(),
            RequestError::UnsupportedScheme("http".into())
        );
        assert_eq!(
            req("ws://example.com/").unwrap_err(),
            RequestError::UnsupportedScheme("ws".into())
        );
        assert_eq!(req("example.com/").unwrap_err(), RequestError::BadUrl);
        assert_eq!(req("https:///path").unwrap_err(), RequestError::MissingHost);
        assert_eq!(req("https://h:99999/").unwrap_err(), RequestError::BadUrl);
        assert_eq!(
            req("https://ex\r\nample.com/").unwrap_err(),
            RequestError::ForbiddenCharacter {
                field: "host",
                ch: '\r'
            }
        );
        assert_eq!(
            req("https://example.com/a\nb").unwrap_err(),
            RequestError::ForbiddenCharacter {
                field: "path",
                ch: '\n'
            }
        );
        assert_eq!(
            req("https://example.com/a\0b").unwrap_err(),
            RequestError::ForbiddenCharacter {
                field: "path",
                ch: '\0'
            }
        );
        assert_eq!(
            req("https://example.com/a b").unwrap_err(),
            RequestError::BadUrl
        );
    }

    #[test]
    fn checks_headers() {
        let o = Options::default().header("x-a", "1\r\nx-b: 2");
        assert_eq!(
            build_request("https://h/", &o).unwrap_err(),
            RequestError::ForbiddenCharacter {
                field: "header",
                ch: '\r'
            }
        );
        let o = Options::default().header("bad name", "v");
        assert_eq!(
            build_request("https://h/", &o).unwrap_err(),
            RequestError::InvalidHeader("bad name".into())
        );
        let o = Options::default()
            .header("x-a", "1")
            .origin("https://o")
            .protocol("p");
        let r = build_request("https://h/", &o).unwrap();
        assert_eq!(r.headers["x-a"], "1");
        assert_eq!(r.origin.as_deref(), Some("https://o"));
        assert_eq!(r.protocols, ["p"]);
        let o = Options::default().origin("https://o\n");
        assert!(build_request("https://h/", &o).is_err());
    }
}
