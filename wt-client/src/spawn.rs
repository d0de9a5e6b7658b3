//! Starting the driver for an established session (generic over the transport).

use std::sync::Arc;

use wt_core::{ConnectError, Session};

use crate::connection::DatagramSender;
use crate::driver::{Driver, DriverConfig};
use crate::{Connection, Error, Options};

/// Opens the default stream on `session`, spawns the driver task and returns the handle.
pub(crate) async fn start<S: Session>(session: S, opts: &Options) -> Result<Connection, Error> {
    let transport = session.info().transport;
    let default = tokio::time::timeout(opts.connect_timeout, session.open_bi())
        .await
        .map_err(|_| Error::Connect(ConnectError::Timeout(opts.connect_timeout)))??;
    Ok(start_with(session, default, opts, transport))
}

/// Spawns the driver for a session whose default stream is already open.
pub(crate) fn start_with<S: Session>(
    session: S,
    default: (S::SendStream, S::RecvStream),
    opts: &Options,
    transport: wt_core::TransportKind,
) -> Connection {
    let cfg = DriverConfig {
        max_recv_buffer: opts.max_recv_buffer,
        active: opts.active,
    };
    // Datagrams bypass the driver: `send_datagram` is synchronous and the handle is cheap to
    // clone, so the caller's task sends directly (see `Connection::send_datagram`).
    let datagram: DatagramSender = Arc::new(session.clone());
    let (driver, handles) = Driver::new(session, default, cfg);
    tokio::spawn(driver.run());
    Connection::from_handles(handles, datagram, transport, opts.recv_timeout)
}
