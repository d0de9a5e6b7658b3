//! The driver's receive buffers: one queue per channel, with a global arrival order so that
//! switching between passive and active delivery neither loses nor reorders anything.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use bytes::Bytes;
use wt_core::StreamError;

use crate::frame::ITEM_OVERHEAD;
use crate::{CloseReason, Event, Msg, StreamData, StreamId};

/// A receive channel: the default channel, or one stream we opened.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Chan {
    Main,
    Own(StreamId),
}

/// An item of a stream we opened.
#[derive(Clone, Debug)]
pub(crate) enum OwnItem {
    Data(Bytes),
    Fin(Bytes),
    Err(StreamError),
}

/// A buffered item.
#[derive(Clone, Debug)]
pub(crate) enum Item {
    Main(Msg),
    Own(StreamId, OwnItem),
}

impl Item {
    pub(crate) fn chan(&self) -> Chan {
        match self {
            Item::Main(_) => Chan::Main,
            Item::Own(id, _) => Chan::Own(*id),
        }
    }

    /// Same as [`Event::accounted`] of the corresponding event.
    pub(crate) fn accounted(&self) -> usize {
        match self {
            Item::Main(Msg::Binary(b))
            | Item::Main(Msg::Datagram(b))
            | Item::Main(Msg::Stream(_, b))
            | Item::Main(Msg::StreamFin(_, b))
            | Item::Own(_, OwnItem::Data(b))
            | Item::Own(_, OwnItem::Fin(b)) => b.len() + ITEM_OVERHEAD,
            Item::Main(Msg::StreamClosed(..)) | Item::Own(_, OwnItem::Err(_)) => ITEM_OVERHEAD,
        }
    }

    pub(crate) fn into_event(self) -> Event {
        match self {
            Item::Main(m) => m.into(),
            Item::Own(id, OwnItem::Data(b)) => Event::Stream(id, b),
            Item::Own(id, OwnItem::Fin(b)) => Event::StreamFin(id, b),
            Item::Own(id, OwnItem::Err(StreamError::Stopped(c))) => {
                Event::StreamClosed(id, CloseReason::StopSending(c.unwrap_or(0)))
            }
            Item::Own(id, OwnItem::Err(e)) => {
                let code = match e {
                    StreamError::Reset(c) => c.unwrap_or(0),
                    _ => 0,
                };
                Event::StreamClosed(id, CloseReason::Reset(code))
            }
        }
    }

    pub(crate) fn into_msg(self) -> Option<Msg> {
        match self {
            Item::Main(m) => Some(m),
            Item::Own(..) => None,
        }
    }

    pub(crate) fn into_stream_data(self) -> Result<StreamData, crate::Error> {
        match self {
            Item::Own(_, OwnItem::Data(b)) => Ok(StreamData::Data(b)),
            Item::Own(_, OwnItem::Fin(b)) => Ok(StreamData::Fin(b)),
            Item::Own(_, OwnItem::Err(e)) => Err(crate::Error::Stream(e)),
            Item::Main(_) => Err(crate::Error::driver_gone()),
        }
    }
}

/// Buffered items in arrival order, indexed by channel.
///
/// Steady traffic allocates nothing: the item map and the default channel's queue keep their
/// capacity when they run empty (queues of streams we opened are dropped when drained, as
/// such streams come and go). The default stream's data, the bulk of most traffic, has a
/// queue of its own and skips the item map.
#[derive(Default)]
pub(crate) struct Store {
    next_seq: u64,
    items: FxHashMap<u64, Item>,
    chans: FxHashMap<Chan, VecDeque<u64>>,
    /// Default-stream data ([`Msg::Binary`]) with its sequence numbers, in order.
    binary: VecDeque<(u64, Bytes)>,
}

/// Puts `e` into `q` (sorted by `seq`) where its sequence number belongs. New items, the
/// usual case, have the highest number yet and go to the back without a search; an item put
/// back after a dropped `recv` goes where the search puts it.
fn insert_in_order<T>(q: &mut VecDeque<T>, e: T, seq: impl Fn(&T) -> u64) {
    let s = seq(&e);
    if q.back().is_none_or(|b| seq(b) < s) {
        q.push_back(e);
    } else {
        let at = q.partition_point(|x| seq(x) < s);
        q.insert(at, e);
    }
}

impl Store {
    pub(crate) fn push(&mut self, item: Item) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.insert(seq, item);
        seq
    }

    fn insert(&mut self, seq: u64, item: Item) {
        match item {
            Item::Main(Msg::Binary(b)) => insert_in_order(&mut self.binary, (seq, b), |e| e.0),
            item => {
                let q = self.chans.entry(item.chan()).or_default();
                insert_in_order(q, seq, |s| *s);
                self.items.insert(seq, item);
            }
        }
    }

    /// Puts an item taken earlier back in its place.
    pub(crate) fn put_back(&mut self, seq: u64, item: Item) {
        self.insert(seq, item);
    }

    fn took(&mut self, chan: Chan) {
        if chan != Chan::Main && self.chans.get(&chan).is_some_and(VecDeque::is_empty) {
            self.chans.remove(&chan);
        }
    }

    pub(crate) fn pop(&mut self, chan: Chan) -> Option<(u64, Item)> {
        let front = self.chans.get(&chan).and_then(|q| q.front().copied());
        if chan == Chan::Main {
            if let Some(&(b, _)) = self.binary.front() {
                if front.is_none_or(|s| b < s) {
                    let (seq, data) = self.binary.pop_front()?;
                    return Some((seq, Item::Main(Msg::Binary(data))));
                }
            }
        }
        let seq = self.chans.get_mut(&chan)?.pop_front()?;
        self.took(chan);
        let item = self.items.remove(&seq)?;
        Some((seq, item))
    }

    /// The oldest item of any channel.
    pub(crate) fn pop_first(&mut self) -> Option<(u64, Item)> {
        // Each queue is in arrival order, so the oldest item heads one of them.
        let chan = self
            .chans
            .iter()
            .filter_map(|(c, q)| q.front().map(|s| (*s, *c)))
            .chain(self.binary.front().map(|(s, _)| (*s, Chan::Main)))
            .min_by_key(|(s, _)| *s)?
            .1;
        self.pop(chan)
    }

    pub(crate) fn has(&self, chan: Chan) -> bool {
        (chan == Chan::Main && !self.binary.is_empty())
            || self.chans.get(&chan).is_some_and(|q| !q.is_empty())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty() && self.binary.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(id: u64, s: &'static str) -> Item {
        Item::Own(
            StreamId(id),
            OwnItem::Data(Bytes::from_static(s.as_bytes())),
        )
    }

    #[test]
    fn per_channel_and_global_order() {
        let mut st = Store::default();
        st.push(Item::Main(Msg::Binary("a".into())));
        st.push(data(4, "b"));
        st.push(Item::Main(Msg::Datagram("c".into())));
        let (seq, first) = st.pop(Chan::Main).unwrap();
        assert!(matches!(first, Item::Main(Msg::Binary(_))));
        st.put_back(seq, first);
        let order: Vec<_> = std::iter::from_fn(|| st.pop_first())
            .map(|(s, _)| s)
            .collect();
        assert_eq!(order, vec![0, 1, 2]);
        assert!(st.is_empty());
        assert!(!st.has(Chan::Main));
    }

    #[test]
    fn default_stream_data_keeps_its_place_among_other_items() {
        let mut st = Store::default();
        st.push(Item::Main(Msg::Datagram("d0".into())));
        st.push(Item::Main(Msg::Binary("b1".into())));
        st.push(data(4, "o2"));
        st.push(Item::Main(Msg::Binary("b3".into())));
        st.push(Item::Main(Msg::StreamFin(StreamId(0), Bytes::new())));
        assert!(st.has(Chan::Main));
        // The default channel in arrival order, across both of its queues.
        let (s0, i0) = st.pop(Chan::Main).unwrap();
        assert!(matches!(i0, Item::Main(Msg::Datagram(_))));
        let (s1, i1) = st.pop(Chan::Main).unwrap();
        assert!(matches!(&i1, Item::Main(Msg::Binary(b)) if b == "b1"));
        // Put back, data goes to its place again.
        st.put_back(s1, i1);
        st.put_back(s0, i0);
        let order: Vec<u64> = std::iter::from_fn(|| st.pop_first())
            .map(|(s, _)| s)
            .collect();
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
        assert!(st.is_empty());
        assert!(!st.has(Chan::Main));

        // Only data buffered: the store is not empty.
        st.push(Item::Main(Msg::Binary("b5".into())));
        assert!(!st.is_empty());
        assert!(st.has(Chan::Main));
        assert!(!st.has(Chan::Own(StreamId(4))));
        assert!(matches!(
            st.pop(Chan::Main),
            Some((5, Item::Main(Msg::Binary(_))))
        ));
        assert!(st.pop(Chan::Main).is_none());
    }

    #[test]
    fn in_order_insert_appends_new_and_places_put_back_items() {
        let mut q = VecDeque::new();
        for s in [2u64, 5, 7] {
            insert_in_order(&mut q, s, |x| *x);
        }
        // Put back: before all, in the middle, and after all.
        for s in [0u64, 6, 3, 9] {
            insert_in_order(&mut q, s, |x| *x);
        }
        assert_eq!(q, [0, 2, 3, 5, 6, 7, 9]);
    }

    #[test]
    fn put_back_keeps_channel_order() {
        let mut st = Store::default();
        st.push(data(4, "1"));
        st.push(data(4, "2"));
        let (s1, i1) = st.pop(Chan::Own(StreamId(4))).unwrap();
        st.put_back(s1, i1);
        let (s, _) = st.pop(Chan::Own(StreamId(4))).unwrap();
        assert_eq!(s, 0);
        assert_eq!(
            Item::Main(Msg::Binary("xyz".into())).accounted(),
            3 + ITEM_OVERHEAD
        );
    }
}
