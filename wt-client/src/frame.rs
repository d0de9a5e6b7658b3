//! What is sent ([`Frame`]) and what arrives ([`Msg`], [`StreamData`], [`Event`]).

use bytes::Bytes;

use crate::{Error, StreamId};

/// Bookkeeping bytes charged per buffered item on top of its payload, so that a flood of
/// empty datagrams or stream ends is bounded by `max_recv_buffer` too.
///
/// ```
/// assert_eq!(wt_client::ITEM_OVERHEAD, 32);
/// ```
pub const ITEM_OVERHEAD: usize = 32;

/// Something to send with [`Connection::send`](crate::Connection::send).
///
/// `Binary`, `Text` and raw bytes go to the default stream as they are: no framing is added,
/// so the peer's reads need not line up with our sends (a stream is a byte stream).
///
/// ```
/// use wt_client::Frame;
/// use bytes::Bytes;
/// assert_eq!(Frame::binary("hi"), Frame::Binary(Bytes::from_static(b"hi")));
/// assert_eq!(Frame::from(b"raw".to_vec()), Frame::Binary(Bytes::from_static(b"raw")));
/// assert_eq!(Frame::text("hé"), Frame::Text("hé".to_owned()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Bytes for the default stream.
    Binary(Bytes),
    /// Text for the default stream, sent as its UTF-8 bytes.
    Text(String),
    /// A datagram (unreliable over HTTP/3, reliable over HTTP/2).
    Datagram(Bytes),
    /// Bytes for a given stream; `true` ends (FINs) the stream after them.
    Stream(StreamId, Bytes, bool),
    /// A WebSocket ping: refused with [`Error::UnsupportedFrame`].
    Ping(Bytes),
    /// A WebSocket pong: refused with [`Error::UnsupportedFrame`].
    Pong(Bytes),
}

impl Frame {
    /// A [`Frame::Binary`].
    ///
    /// ```
    /// let f = wt_client::Frame::binary("Hello!");
    /// assert!(matches!(f, wt_client::Frame::Binary(_)));
    /// ```
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Frame::Binary(data.into())
    }

    /// A [`Frame::Text`].
    ///
    /// ```
    /// let f = wt_client::Frame::text("Hello!");
    /// assert_eq!(f, wt_client::Frame::Text("Hello!".into()));
    /// ```
    pub fn text(text: impl Into<String>) -> Self {
        Frame::Text(text.into())
    }

    /// A [`Frame::Datagram`].
    ///
    /// ```
    /// let f = wt_client::Frame::datagram(vec![1, 2, 3]);
    /// assert!(matches!(f, wt_client::Frame::Datagram(_)));
    /// ```
    pub fn datagram(data: impl Into<Bytes>) -> Self {
        Frame::Datagram(data.into())
    }

    /// A [`Frame::Stream`].
    ///
    /// ```
    /// use wt_client::{Frame, StreamId};
    /// let f = Frame::stream(StreamId(4), "last words", true);
    /// assert!(matches!(f, Frame::Stream(StreamId(4), _, true)));
    /// ```
    pub fn stream(id: StreamId, data: impl Into<Bytes>, fin: bool) -> Self {
        Frame::Stream(id, data.into(), fin)
    }
}

impl From<Bytes> for Frame {
    fn from(b: Bytes) -> Self {
        Frame::Binary(b)
    }
}

impl From<Vec<u8>> for Frame {
    fn from(b: Vec<u8>) -> Self {
        Frame::Binary(b.into())
    }
}

impl From<&'static [u8]> for Frame {
    fn from(b: &'static [u8]) -> Self {
        Frame::Binary(Bytes::from_static(b))
    }
}

impl From<String> for Frame {
    fn from(s: String) -> Self {
        Frame::Text(s)
    }
}

/// Why a stream of the peer ended, in [`Msg::StreamClosed`] and [`Event::StreamClosed`].
///
/// ```
/// use wt_client::CloseReason;
/// assert_ne!(CloseReason::Reset(3), CloseReason::StopSending(3));
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both directions ended cleanly (the peer's FIN arrived and ours, if any, was sent).
    Normal,
    /// The peer reset its sending side with this code (0 when the code was outside the
    /// WebTransport range).
    Reset(u32),
    /// The peer asked us to stop sending, with this code.
    StopSending(u32),
}

/// What [`Connection::recv`](crate::Connection::recv) returns: the next item of the default
/// channel.
///
/// The default channel carries the default stream's bytes, datagrams, and everything from
/// streams the *server* opened (data of streams *we* opened is read with
/// [`stream_recv`](crate::Connection::stream_recv)).
///
/// ```
/// use wt_client::Msg;
/// use bytes::Bytes;
/// assert_eq!(Msg::Binary(Bytes::from("Hello!")), Msg::Binary("Hello!".into()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// The next chunk of the default stream (chunks need not line up with the peer's sends).
    Binary(Bytes),
    /// A datagram.
    Datagram(Bytes),
    /// A chunk of a stream the server opened.
    Stream(StreamId, Bytes),
    /// The peer ended a stream (a server-opened one, or the default stream) cleanly; the bytes
    /// are the last chunk, usually empty.
    StreamFin(StreamId, Bytes),
    /// A server-opened stream (or the default stream) ended: fully closed, reset, or stopped.
    StreamClosed(StreamId, CloseReason),
}

/// What [`Connection::stream_recv`](crate::Connection::stream_recv) returns for a stream we
/// opened.
///
/// ```
/// use wt_client::StreamData;
/// assert_ne!(StreamData::Data("x".into()), StreamData::Fin("x".into()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamData {
    /// The next chunk.
    Data(Bytes),
    /// The peer finished the stream; the last chunk, usually empty. Later calls return
    /// `Fin` with no bytes again while the stream is known.
    Fin(Bytes),
}

/// An event delivered in active mode through the [`EventReceiver`](crate::EventReceiver).
///
/// Every item that passive mode would return from `recv` or `stream_recv` becomes one event,
/// tagged with its stream; the last event is [`Event::Closed`] or [`Event::Error`].
///
/// ```
/// use wt_client::{Event, Msg};
/// let e: Event = Msg::Datagram("d".into()).into();
/// assert_eq!(e, Event::Datagram("d".into()));
/// ```
#[derive(Clone, Debug)]
pub enum Event {
    /// A chunk of the default stream.
    Binary(Bytes),
    /// A datagram.
    Datagram(Bytes),
    /// A chunk of any other stream (ours or the server's).
    Stream(StreamId, Bytes),
    /// The peer finished a stream; the last chunk, usually empty.
    StreamFin(StreamId, Bytes),
    /// A stream was reset or stopped by the peer, or (server-opened streams) fully closed.
    StreamClosed(StreamId, CloseReason),
    /// The session closed (by the peer or by us) with this code and reason. Last event.
    Closed {
        /// Application close code.
        code: u32,
        /// Close reason.
        reason: String,
    },
    /// The session ended with an error (for example [`Error::RecvBufferOverflow`]). Last
    /// event.
    Error(Error),
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        use Event::*;
        match (self, other) {
            (Binary(a), Binary(b)) | (Datagram(a), Datagram(b)) => a == b,
            (Stream(i, a), Stream(j, b)) | (StreamFin(i, a), StreamFin(j, b)) => i == j && a == b,
            (StreamClosed(i, a), StreamClosed(j, b)) => i == j && a == b,
            (Closed { code: c, reason: r }, Closed { code: d, reason: s }) => c == d && r == s,
            (Error(a), Error(b)) => a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

impl From<Msg> for Event {
    fn from(m: Msg) -> Self {
        match m {
            Msg::Binary(b) => Event::Binary(b),
            Msg::Datagram(b) => Event::Datagram(b),
            Msg::Stream(id, b) => Event::Stream(id, b),
            Msg::StreamFin(id, b) => Event::StreamFin(id, b),
            Msg::StreamClosed(id, r) => Event::StreamClosed(id, r),
        }
    }
}

impl Event {
    /// Bytes this event is charged against `max_recv_buffer` while unread (payload plus
    /// [`ITEM_OVERHEAD`]; the final `Closed`/`Error` events are free).
    pub(crate) fn accounted(&self) -> usize {
        match self {
            Event::Binary(b)
            | Event::Datagram(b)
            | Event::Stream(_, b)
            | Event::StreamFin(_, b) => b.len() + ITEM_OVERHEAD,
            Event::StreamClosed(..) => ITEM_OVERHEAD,
            Event::Closed { .. } | Event::Error(_) => 0,
        }
    }
}
