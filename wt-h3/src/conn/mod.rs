//! Per-connection protocol state that needs no sockets: SETTINGS negotiation, dialect
//! detection, and bounded buffering of early streams and datagrams.

pub mod buffer;
pub mod negotiate;
