//! A session's counters (streams opened, bytes and datagrams sent and received), bumped on
//! every stream read and write from whichever runtime thread runs the task.
//!
//! One `AtomicU64` per counter would put every read and write of every stream of a session
//! on the same cache line, which then moves between cores on each of them. So each counter
//! is split into [`SHARDS`] cells on blocks of their own; a thread always adds to the same
//! cell (threads are dealt cells in turn, as they first count), and a read sums the cells.
//! Totals are exact; a read racing with adds sees each add or not, as with a single atomic.
//! (On the bench's stream churn with two runtime threads the difference is within what that
//! machine's clock can resolve, about 2 %: see BENCHMARKS.md.)

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// What is counted.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    BidiLocal,
    UniLocal,
    BidiRemote,
    UniRemote,
    BytesSent,
    BytesReceived,
    DatagramsSent,
    DatagramsReceived,
}

/// How many counters there are (the last variant's index + 1).
const COUNTERS: usize = Counter::DatagramsReceived as usize + 1;

/// Cells per counter: threads beyond this many share cells (still correct, just contended).
pub(crate) const SHARDS: usize = 4;

/// One thread's cells for every counter, alone on a 128-byte block (two cache lines, as
/// adjacent-line prefetching pairs them).
#[derive(Default)]
#[repr(align(128))]
struct Shard([AtomicU64; COUNTERS]);

/// The counters of one session (512 bytes).
#[derive(Default)]
pub(crate) struct Stats {
    shards: [Shard; SHARDS],
}

impl Stats {
    /// Adds `n` to `c`.
    pub(crate) fn add(&self, c: Counter, n: u64) {
        self.shards[thread_shard()].0[c as usize].fetch_add(n, Relaxed);
    }

    /// The total of `c`.
    pub(crate) fn get(&self, c: Counter) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0[c as usize].load(Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// This thread's cell index, for state split per thread (here and in
/// [`EndSignal`](crate::end::EndSignal)): threads are dealt indexes in turn as they first ask.
pub(crate) fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn totals_are_exact_across_threads() {
        let stats = Arc::new(Stats::default());
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|i| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        stats.add(Counter::BytesSent, i as u64 + 1);
                        stats.add(Counter::BidiRemote, 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let want: u64 = (1..=(SHARDS as u64 + 3)).map(|k| 1000 * k).sum();
        assert_eq!(stats.get(Counter::BytesSent), want);
        assert_eq!(stats.get(Counter::BidiRemote), 1000 * (SHARDS as u64 + 3));
        assert_eq!(stats.get(Counter::UniLocal), 0);
    }

    #[test]
    fn cells_sit_on_blocks_of_their_own() {
        assert_eq!(std::mem::align_of::<Shard>(), 128);
        assert_eq!(std::mem::size_of::<Stats>(), 128 * SHARDS);
    }
}
