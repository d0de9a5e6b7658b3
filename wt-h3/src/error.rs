//! Errors of binding and configuring endpoints.

use std::sync::Arc;

/// Why a server could not be bound (or a client endpoint configured).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Socket failure.
    #[error("I/O error: {0}")]
    Io(#[source] Arc<std::io::Error>),
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(#[from] wt_core::tls::TlsConfigError),
    /// rustls offered no cipher suite usable by QUIC.
    #[error("TLS configuration has no QUIC-compatible initial cipher suite")]
    NoInitialCipherSuite,
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}
