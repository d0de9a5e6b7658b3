//! Per-connection protocol state that needs no sockets: SETTINGS negotiation, dialect
//! detection, session flow-control arithmetic, and bounded buffering of early streams and
//! datagrams.

pub mod buffer;
pub mod flow;
pub mod negotiate;
