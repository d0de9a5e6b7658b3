//! TLS options shared by both transports (rustls with the *ring* provider).
//!
//! Clients verify servers against the bundled Mozilla roots (webpki-roots) by default. They can
//! add CA certificates, present a client certificate, pin server certificates by SHA-256 hash
//! (the semantics of the browsers' `serverCertificateHashes`), or switch verification off
//! explicitly (`insecure`, logged as a warning).
//!
//! Servers load a certificate chain and key from PEM, or generate a self-signed ECDSA P-256
//! certificate valid for 14 days, which browsers accept through `serverCertificateHashes`.
//!
//! ```
//! use wt_core::tls::{ClientTls, ServerTls};
//! let server = ServerTls::self_signed(&["localhost"]).unwrap();
//! let mut client = ClientTls::default();
//! client.cert_hashes.push(server.cert_hash());
//! let config = client.build(&[b"h3"], false).unwrap();
//! assert_eq!(config.alpn_protocols, vec![b"h3".to_vec()]);
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Longest validity a pinned certificate may have (W3C WebTransport: two weeks).
pub const MAX_PINNED_VALIDITY: Duration = Duration::from_secs(14 * 24 * 3600);

/// TLS configuration problems (local input, not peer behaviour).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// PEM input held no certificate.
    #[error("no certificate found in PEM input")]
    NoCertificate,
    /// PEM input held no private key, or an unusable one.
    #[error("no usable private key in PEM input")]
    NoKey,
    /// A CA certificate was rejected by the root store.
    #[error("CA certificate rejected: {0}")]
    BadCa(String),
    /// rustls refused the configuration.
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

/// A client certificate and its key.
#[derive(Debug)]
pub struct ClientCert {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for ClientCert {
    fn clone(&self) -> Self {
        ClientCert {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Client-side TLS options.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// Trust the bundled Mozilla root certificates (default true).
    pub webpki_roots: bool,
    /// Extra trusted CA certificates (DER).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Certificate to present if the server asks for one.
    pub client_cert: Option<ClientCert>,
    /// SHA-256 hashes of acceptable server certificates (DER). When non-empty, the server is
    /// trusted only if its leaf certificate matches one, is currently valid, is valid for at
    /// most 14 days and has an ECDSA P-256 key, as for browsers' `serverCertificateHashes`;
    /// the CA roots are not consulted.
    pub cert_hashes: Vec<[u8; 32]>,
    /// Accept any server certificate (still checks handshake signatures). Dangerous: only for
    /// tests; a warning is logged each time a configuration is built with it.
    pub insecure: bool,
}

impl Default for ClientTls {
    fn default() -> Self {
        ClientTls {
            webpki_roots: true,
            extra_roots: Vec::new(),
            client_cert: None,
            cert_hashes: Vec::new(),
            insecure: false,
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|e| TlsConfigError::Read {
        path: path.display().to_string(),
        source: Arc::new(e),
    })
}

/// Parses every certificate of a PEM document.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsConfigError::NoCertificate)?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, SEC1 or PKCS#1) of a PEM document.
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|_| TlsConfigError::NoKey)
}

/// SHA-256 of a certificate's DER encoding (the value of `serverCertificateHashes`).
pub fn cert_hash(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Parses a certificate hash written as hex, with or without `:` separators.
pub fn parse_cert_hash(text: &str) -> Option<[u8; 32]> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Formats a hash as lower-case hex.
pub fn hash_hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

impl ClientTls {
    /// Adds every certificate of a PEM document as a trusted CA.
    pub fn add_ca_pem(&mut self, pem: &[u8]) -> Result<(), TlsConfigError> {
        self.extra_roots.extend(certs_from_pem(pem)?);
        Ok(())
    }

    /// Adds the CA certificates of a PEM file.
    pub fn add_ca_file(&mut self, path: impl AsRef<Path>) -> Result<(), TlsConfigError> {
        let pem = read_file(path.as_ref())?;
        self.add_ca_pem(&pem)
    }

    /// Sets the client certificate and key from PEM files.
    pub fn set_client_cert_files(
        &mut self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<(), TlsConfigError> {
        let chain = certs_from_pem(&read_file(cert.as_ref())?)?;
        let key = key_from_pem(&read_file(key.as_ref())?)?;
        self.client_cert = Some(ClientCert { chain, key });
        Ok(())
    }

    /// Builds a rustls client configuration offering `alpn`. `allow_tls12` permits TLS 1.2
    /// (with extended master secret required), for HTTP/2; QUIC always uses TLS 1.3.
    pub fn build(
        &self,
        alpn: &[&[u8]],
        allow_tls12: bool,
    ) -> Result<rustls::ClientConfig, TlsConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if allow_tls12 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?;
        let builder = if self.insecure || !self.cert_hashes.is_empty() {
            if self.insecure {
                tracing::warn!(
                    "TLS certificate verification is DISABLED (insecure option); \
                     any server can impersonate the target"
                );
            }
            let verifier = PinnedVerifier {
                hashes: self.cert_hashes.clone(),
                insecure: self.insecure,
                provider: provider.clone(),
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            if self.webpki_roots {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            for ca in &self.extra_roots {
                roots
                    .add(ca.clone())
                    .map_err(|e| TlsConfigError::BadCa(e.to_string()))?;
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match &self.client_cert {
            Some(c) => builder.with_client_auth_cert(c.chain.clone(), c.key.clone_key())?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.require_ems = allow_tls12;
        Ok(config)
    }
}

/// Verifies by certificate hash (W3C `serverCertificateHashes` rules), or accepts anything in
/// insecure mode. Handshake signatures are always verified.
#[derive(Debug)]
struct PinnedVerifier {
    hashes: Vec<[u8; 32]>,
    insecure: bool,
    provider: Arc<CryptoProvider>,
}

/// Checks the W3C custom-certificate requirements: X.509v3, ECDSA P-256 key, validity period at
/// most 14 days and containing `now`.
pub fn check_pinnable(der: &[u8], now: SystemTime) -> Result<(), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("certificate does not parse: {e}"))?;
    if cert.version() != x509_parser::x509::X509Version::V3 {
        return Err("certificate is not X.509v3".into());
    }
    let spki = &cert.tbs_certificate.subject_pki;
    let is_ec = spki.algorithm.algorithm == x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY;
    let is_p256 = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .is_some_and(|oid| oid == x509_parser::oid_registry::OID_EC_P256);
    if !(is_ec && is_p256) {
        return Err("certificate key is not ECDSA P-256".into());
    }
    let validity = cert.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if not_after - not_before > MAX_PINNED_VALIDITY.as_secs() as i64 {
        return Err("certificate validity exceeds 14 days".into());
    }
    if now < not_before || now > not_after {
        return Err("certificate is not currently valid".into());
    }
    Ok(())
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        let hash = cert_hash(end_entity.as_ref());
        if !self.hashes.contains(&hash) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
        check_pinnable(end_entity.as_ref(), now).map_err(|why| {
            tracing::warn!("pinned certificate refused: {why}");
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(PinError(why)),
            )))
        })?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug)]
struct PinError(String);

impl std::fmt::Display for PinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PinError {}

/// Server-side TLS material: a certificate chain and its key.
#[derive(Debug)]
pub struct ServerTls {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Trust anchors for client certificates; when set, clients must present one.
    pub client_ca: Vec<CertificateDer<'static>>,
}

impl Clone for ServerTls {
    fn clone(&self) -> Self {
        ServerTls {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            client_ca: self.client_ca.clone(),
        }
    }
}

impl ServerTls {
    /// From PEM documents (the chain, leaf first, and the key).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsConfigError> {
        Ok(ServerTls {
            chain: certs_from_pem(cert_pem)?,
            key: key_from_pem(key_pem)?,
            client_ca: Vec::new(),
        })
    }

    /// From PEM files.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsConfigError> {
        Self::from_pem(&read_file(cert.as_ref())?, &read_file(key.as_ref())?)
    }

    /// Generates a self-signed ECDSA P-256 certificate for `names` (DNS names or IP
    /// literals), valid from one minute ago for 14 days — pinnable by browsers.
    pub fn self_signed(names: &[&str]) -> Result<Self, TlsConfigError> {
        let gen = |e: rcgen::Error| TlsConfigError::Generate(e.to_string());
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .map_err(gen)?;
        let start = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
        params.not_before = start;
        params.not_after = start + time::Duration::days(14);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wt test server");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen)?;
        let cert = params.self_signed(&key).map_err(gen)?;
        Ok(ServerTls {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            client_ca: Vec::new(),
        })
    }

    /// The leaf certificate (DER).
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The certificate chain.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// SHA-256 of the leaf certificate, for clients' `serverCertificateHashes`.
    pub fn cert_hash(&self) -> [u8; 32] {
        cert_hash(self.leaf().as_ref())
    }

    /// The leaf certificate as PEM, for clients that trust it as a CA.
    pub fn leaf_pem(&self) -> String {
        pem_encode("CERTIFICATE", self.leaf().as_ref())
    }

    /// The private key as PKCS#8 PEM (when it is PKCS#8).
    pub fn key_pem(&self) -> Option<String> {
        match &self.key {
            PrivateKeyDer::Pkcs8(k) => Some(pem_encode("PRIVATE KEY", k.secret_pkcs8_der())),
            _ => None,
        }
    }

    /// Builds a rustls server configuration offering `alpn`. `allow_tls12` permits TLS 1.2
    /// with extended master secret (HTTP/2); QUIC uses TLS 1.3 only.
    pub fn build(
        &self,
        alpn: &[&[u8]],
        allow_tls12: bool,
    ) -> Result<rustls::ServerConfig, TlsConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if allow_tls12 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?;
        let builder = if self.client_ca.is_empty() {
            builder.with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for ca in &self.client_ca {
                roots
                    .add(ca.clone())
                    .map_err(|e| TlsConfigError::BadCa(e.to_string()))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsConfigError::BadCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut config = builder.with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.require_ems = allow_tls12;
        config.max_early_data_size = 0;
        Ok(config)
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let n = match chunk.len() {
            3 => (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8 | chunk[2] as u32,
            2 => (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8,
            _ => (chunk[0] as u32) << 16,
        };
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_pinnable_and_round_trips_pem() {
        let s = ServerTls::self_signed(&["localhost", "127.0.0.1"]).unwrap();
        check_pinnable(s.leaf().as_ref(), SystemTime::now()).unwrap();
        let later = SystemTime::now() + Duration::from_secs(15 * 24 * 3600);
        assert!(check_pinnable(s.leaf().as_ref(), later).is_err());
        let again =
            ServerTls::from_pem(s.leaf_pem().as_bytes(), s.key_pem().unwrap().as_bytes()).unwrap();
        assert_eq!(again.cert_hash(), s.cert_hash());
    }

    #[test]
    fn long_lived_or_rsa_certs_are_not_pinnable() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let start = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
        params.not_before = start;
        params.not_after = start + time::Duration::days(30);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let err = check_pinnable(cert.der(), SystemTime::now()).unwrap_err();
        assert!(err.contains("14 days"), "{err}");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = start;
        params.not_after = start + time::Duration::days(10);
        let cert = params.self_signed(&key).unwrap();
        let err = check_pinnable(cert.der(), SystemTime::now()).unwrap_err();
        assert!(err.contains("P-256"), "{err}");
        assert!(check_pinnable(b"not a certificate", SystemTime::now()).is_err());
    }

    #[test]
    fn hash_parsing() {
        let h = [0xabu8; 32];
        assert_eq!(parse_cert_hash(&hash_hex(&h)), Some(h));
        let colons = hash_hex(&h)
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_cert_hash(&colons), Some(h));
        assert_eq!(parse_cert_hash("abcd"), None);
        assert_eq!(parse_cert_hash(&"zz".repeat(32)), None);
    }

    #[test]
    fn bad_pem_is_a_typed_error() {
        assert!(matches!(
            certs_from_pem(b"hello"),
            Err(TlsConfigError::NoCertificate)
        ));
        assert!(matches!(key_from_pem(b"hello"), Err(TlsConfigError::NoKey)));
        assert!(matches!(
            ServerTls::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem"),
            Err(TlsConfigError::Read { .. })
        ));
    }

    #[test]
    fn configs_build() {
        let s = ServerTls::self_signed(&["localhost"]).unwrap();
        let sc = s.build(&[b"h2"], true).unwrap();
        assert!(sc.require_ems);
        let mut c = ClientTls::default();
        c.add_ca_pem(s.leaf_pem().as_bytes()).unwrap();
        let cc = c.build(&[b"h2"], true).unwrap();
        assert!(cc.require_ems);
        let insecure = ClientTls {
            insecure: true,
            ..ClientTls::default()
        };
        insecure.build(&[b"h3"], false).unwrap();
    }
}
