//! UDP sockets for the quinn endpoints, with enlarged kernel buffers.
//!
//! A busy server receives bursts of QUIC Initials (hundreds of clients connecting at once);
//! with the common 208 KiB default receive buffer the kernel drops them before quinn can read.
//! We ask for [`SOCKET_BUFFER`] bytes both ways, best effort (the kernel may cap the value,
//! e.g. at `net.core.rmem_max` on Linux), and log the effective sizes at debug level.

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::debug;

/// Requested SO_RCVBUF / SO_SNDBUF size.
pub(crate) const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// A bound UDP socket with large buffers. IPv6 wildcard sockets are made dual-stack when the
/// platform allows it (as quinn's `Endpoint::client` does).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        if let Err(e) = socket.set_only_v6(false) {
            debug!(error = %e, "unable to make the UDP socket dual-stack");
        }
    }
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
        debug!(error = %e, "unable to set SO_RCVBUF");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER) {
        debug!(error = %e, "unable to set SO_SNDBUF");
    }
    debug!(
        %addr,
        requested = SOCKET_BUFFER,
        recv_buffer = socket.recv_buffer_size().ok(),
        send_buffer = socket.send_buffer_size().ok(),
        "UDP socket buffers"
    );
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A quinn endpoint on a fresh socket bound to `addr` (a server when `server` is given).
pub(crate) fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let socket = bind(addr)?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_with_buffers() {
        let s = bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        assert_ne!(s.local_addr().unwrap().port(), 0);
        let s2 = Socket::from(s);
        // Best effort: the kernel may cap the value, but never below its own default.
        assert!(s2.recv_buffer_size().unwrap() > 0);
    }
}
