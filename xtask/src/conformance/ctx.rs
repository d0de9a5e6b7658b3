//! What a case gets: the transport and dialect it runs in, the target server, and helpers to
//! open raw or regular sessions with every wait bounded.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;
use wt_core::capsule::FinMapping;
use wt_core::tls::ClientTls;

use super::ours::Embedded;
use super::peer::h2::{H2Conn, H2Session, H2Settings};
use super::peer::h3::{ids, Fields, H3Conn, H3Options, H3Stream};

/// Transport.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Tp {
    /// HTTP/3.
    H3,
    /// HTTP/2.
    H2,
}

impl Tp {
    /// `h3` / `h2`.
    pub const fn name(self) -> &'static str {
        match self {
            Tp::H3 => "h3",
            Tp::H2 => "h2",
        }
    }
}

/// Dialect.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Dl {
    /// H3 draft-16 / H2 draft-15.
    Latest,
    /// What browsers speak: H3 draft-02 signals, H2 legacy FIN mapping.
    Legacy,
}

impl Dl {
    /// `latest` / `legacy`.
    pub const fn name(self) -> &'static str {
        match self {
            Dl::Latest => "latest",
            Dl::Legacy => "legacy",
        }
    }
}

/// Why a case did not pass.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The server (or client) did not behave as the reference says: expected vs got.
    Fail(String),
    /// The case cannot run here, and why.
    Skip(String),
}

impl<E: std::fmt::Display> From<E> for Verdict {
    fn from(e: E) -> Self {
        Verdict::Fail(e.to_string())
    }
}

/// Result of a case.
pub type CaseResult = Result<(), Verdict>;

/// Shorthand for a failure.
pub fn fail<T>(why: impl Into<String>) -> Result<T, Verdict> {
    Err(Verdict::Fail(why.into()))
}

/// Shorthand for a skip.
pub fn skip<T>(why: impl Into<String>) -> Result<T, Verdict> {
    Err(Verdict::Skip(why.into()))
}

/// Fails with `why()` unless `cond`.
pub fn ensure(cond: bool, why: impl FnOnce() -> String) -> CaseResult {
    if cond {
        Ok(())
    } else {
        Err(Verdict::Fail(why()))
    }
}

/// Adds context to errors.
pub trait Context<T> {
    /// `what: error`.
    fn ctx(self, what: &str) -> Result<T, Verdict>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, Verdict> {
        self.map_err(|e| Verdict::Fail(format!("{what}: {e}")))
    }
}

/// The server under test.
pub struct Target {
    /// Host name for TLS (SNI) and requests.
    pub host: String,
    /// UDP address for HTTP/3.
    pub h3_addr: SocketAddr,
    /// TCP address for HTTP/2 (latest dialect).
    pub h2_addr: SocketAddr,
    /// TCP address for HTTP/2 in the legacy dialect (the embedded server runs a second
    /// HTTP/2 server with the legacy FIN mapping; external targets use `h2_addr`).
    pub h2_legacy_addr: SocketAddr,
    /// `:authority`.
    pub authority: String,
    /// Path prefix (from --url), without trailing slash.
    pub prefix: String,
    /// How to trust the server.
    pub tls: ClientTls,
    /// The embedded server, when the suite started it.
    pub embedded: Option<Embedded>,
    /// The server's HTTP/2 SETTINGS, probed once.
    pub h2_settings: OnceCell<Result<H2Settings, String>>,
}

/// Everything a case needs.
pub struct Ctx {
    /// Transport of this run.
    pub tp: Tp,
    /// Dialect of this run.
    pub dl: Dl,
    /// The server.
    pub target: Arc<Target>,
    /// Bound on every wait.
    pub timeout: Duration,
}

impl Ctx {
    /// A context.
    pub fn new(tp: Tp, dl: Dl, target: Arc<Target>, timeout: Duration) -> Self {
        Ctx {
            tp,
            dl,
            target,
            timeout,
        }
    }

    /// Awaits `f`, failing with "timed out waiting for `what`".
    pub async fn within<T>(&self, what: &str, f: impl Future<Output = T>) -> Result<T, Verdict> {
        tokio::time::timeout(self.timeout, f).await.map_err(|_| {
            Verdict::Fail(format!(
                "timed out after {:?} waiting for {what}",
                self.timeout
            ))
        })
    }

    /// Awaits `f` for at most `d`; `None` if it did not complete (for "nothing happens" checks).
    pub async fn quiet<T>(&self, d: Duration, f: impl Future<Output = T>) -> Option<T> {
        tokio::time::timeout(d, f).await.ok()
    }

    /// The embedded server, or SKIP for cases that need it.
    pub fn embedded(&self) -> Result<&Embedded, Verdict> {
        self.target.embedded.as_ref().ok_or_else(|| {
            Verdict::Skip(
                "tests our client against a deliberately broken raw server: embedded mode only"
                    .into(),
            )
        })
    }

    /// The request path for a server path (`/echo` → prefix + `/echo`).
    pub fn path(&self, p: &str) -> String {
        format!("{}{}", self.target.prefix, p)
    }

    /// The origin the cases send.
    pub fn origin(&self) -> String {
        format!("https://{}", self.target.authority)
    }

    /// The HTTP/2 address for this dialect.
    pub fn h2_addr(&self) -> SocketAddr {
        match self.dl {
            Dl::Latest => self.target.h2_addr,
            Dl::Legacy => self.target.h2_legacy_addr,
        }
    }

    /// The H2 WT_STREAM FIN mapping of this dialect.
    pub fn fin_mapping(&self) -> FinMapping {
        match self.dl {
            Dl::Latest => FinMapping::Draft15,
            Dl::Legacy => FinMapping::Legacy,
        }
    }

    // ----- HTTP/3 raw peer -----

    /// Our SETTINGS for this dialect: latest = draft-16 (no flow control), legacy = Chrome's
    /// draft-02 set.
    pub fn h3_settings(&self) -> Vec<(u64, u64)> {
        match self.dl {
            Dl::Latest => vec![
                (ids::QPACK_MAX_TABLE_CAPACITY, 0),
                (ids::H3_DATAGRAM, 1),
                (ids::WT_ENABLED, 1),
            ],
            Dl::Legacy => vec![
                (ids::QPACK_MAX_TABLE_CAPACITY, 0),
                (ids::H3_DATAGRAM, 1),
                (ids::H3_DATAGRAM_DRAFT04, 1),
                (ids::ENABLE_WEBTRANSPORT, 1),
            ],
        }
    }

    /// Default raw H3 options of this dialect.
    pub fn h3_options(&self) -> H3Options {
        H3Options {
            settings: self.h3_settings(),
            datagrams: true,
            send_settings: true,
        }
    }

    /// A raw HTTP/3 connection.
    pub async fn h3_conn(&self, opts: H3Options) -> Result<H3Conn, Verdict> {
        let t = &self.target;
        self.within(
            "the QUIC handshake",
            H3Conn::connect(t.h3_addr, &t.host, &t.tls, opts),
        )
        .await?
        .ctx("raw HTTP/3 connection")
    }

    /// The CONNECT request fields of this dialect for `path` (with `origin`), plus `extra`.
    pub fn h3_connect_fields(&self, path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut f: Vec<(String, String)> = vec![
            (":method".into(), "CONNECT".into()),
            (
                ":protocol".into(),
                match self.dl {
                    Dl::Latest => "webtransport-h3".into(),
                    Dl::Legacy => "webtransport".into(),
                },
            ),
            (":scheme".into(), "https".into()),
            (":authority".into(), self.target.authority.clone()),
            (":path".into(), self.path(path)),
            ("origin".into(), self.origin()),
        ];
        if self.dl == Dl::Legacy {
            f.push(("sec-webtransport-http3-draft02".into(), "1".into()));
        }
        for (n, v) in extra {
            f.push(((*n).into(), (*v).into()));
        }
        f
    }

    /// Sends a CONNECT for `path` on `conn` (without waiting for the response).
    pub async fn h3_request(
        &self,
        conn: &H3Conn,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Result<H3Stream, Verdict> {
        let fields = self.h3_connect_fields(path, extra);
        let refs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        self.within("opening the CONNECT stream", conn.request(&refs))
            .await?
            .ctx("sending CONNECT")
    }

    /// Sends a CONNECT and waits for a 2xx.
    pub async fn h3_accept(
        &self,
        conn: &H3Conn,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Result<(H3Stream, Fields), Verdict> {
        let mut s = self.h3_request(conn, path, extra).await?;
        let resp = self
            .within("the CONNECT response", s.response())
            .await?
            .ctx("reading the CONNECT response")?;
        ensure((200..300).contains(&resp.status()), || {
            format!(
                "expected a 2xx response to CONNECT {path}, got :status {}",
                resp.status()
            )
        })?;
        Ok((s, resp))
    }

    /// A raw connection with this dialect's settings and an established session on `path`.
    pub async fn h3_session(&self, path: &str) -> Result<(H3Conn, H3Stream), Verdict> {
        let mut conn = self.h3_conn(self.h3_options()).await?;
        self.within("the server's SETTINGS", conn.server_settings())
            .await?
            .ctx("server SETTINGS")?;
        let (s, _) = self.h3_accept(&conn, path, &[]).await?;
        Ok((conn, s))
    }

    // ----- HTTP/2 raw peer -----

    /// The server's HTTP/2 SETTINGS (probed once per run on a separate connection).
    pub async fn h2_settings(&self) -> Result<H2Settings, Verdict> {
        let t = &self.target;
        let r = t
            .h2_settings
            .get_or_init(|| async {
                match tokio::time::timeout(
                    self.timeout,
                    super::peer::h2::probe_settings(t.h2_addr, &t.host, &t.tls),
                )
                .await
                {
                    Ok(Ok(s)) => Ok(s),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".into()),
                }
            })
            .await;
        r.clone()
            .map_err(|e| Verdict::Fail(format!("probing the server's SETTINGS: {e}")))
    }

    /// A raw HTTP/2 connection (h2 crate), with stream windows of `window` bytes.
    pub async fn h2_conn_window(&self, window: u32) -> Result<H2Conn, Verdict> {
        let t = &self.target;
        self.within(
            "the HTTP/2 handshake",
            H2Conn::connect(
                self.h2_addr(),
                &t.host,
                &t.authority,
                &t.tls,
                window,
                self.timeout,
            ),
        )
        .await?
        .ctx("raw HTTP/2 connection")
    }

    /// A raw HTTP/2 connection with roomy windows.
    pub async fn h2_conn(&self) -> Result<H2Conn, Verdict> {
        self.h2_conn_window(4 << 20).await
    }

    /// The request headers the raw H2 client sends besides the pseudo-headers: `origin` and
    /// a `webtransport-init` granting the server generous per-stream credit.
    pub fn h2_headers(&self) -> Vec<(String, String)> {
        vec![
            ("origin".into(), self.origin()),
            (
                "webtransport-init".into(),
                "u=1048576, bl=1048576, br=1048576".into(),
            ),
        ]
    }

    /// Opens a session on `path` with `headers` (defaults of [`Ctx::h2_headers`] when
    /// `None`), sends the initial credit capsules, and waits for the response (any status).
    pub async fn h2_open(
        &self,
        conn: &mut H2Conn,
        path: &str,
        headers: Option<Vec<(String, String)>>,
        credit: bool,
    ) -> Result<H2Session, Verdict> {
        let headers = headers.unwrap_or_else(|| self.h2_headers());
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut pending = self
            .within(
                "sending CONNECT",
                conn.connect_request(&self.path(path), "webtransport", &refs),
            )
            .await?
            .ctx("sending CONNECT")?;
        if credit {
            pending
                .send(super::cases::h2_credit(), false)
                .ctx("sending credit")?;
        }
        self.within("the CONNECT response", pending.response())
            .await?
            .ctx("reading the CONNECT response")
    }

    /// A raw HTTP/2 connection and an accepted session on `path` (credit granted).
    pub async fn h2_session(&self, path: &str) -> Result<(H2Conn, H2Session), Verdict> {
        let mut conn = self.h2_conn().await?;
        let s = self.h2_open(&mut conn, path, None, true).await?;
        ensure((200..300).contains(&s.status), || {
            format!(
                "expected a 2xx response to CONNECT {path}, got :status {}",
                s.status
            )
        })?;
        Ok((conn, s))
    }
}
