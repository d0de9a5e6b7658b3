//! Wire types and codecs, sans-IO: HTTP/3 frames, SETTINGS, stream preambles and datagram
//! prefixes, QPACK (static table + literals), and request/response header sections.

pub mod frame;
pub mod headers;
pub mod huffman;
pub mod qpack;
pub mod settings;
pub mod stream_type;
