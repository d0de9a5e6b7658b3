//! Allocation counting on the data path.
//!
//! With the `bench` feature the whole xtask binary runs on `stats_alloc`'s instrumented system
//! allocator (a `#[global_allocator]` wrapper that counts calls; no unsafe code of ours). The
//! counts are process-wide, so a bulk run's figure covers client and server together — the
//! same for our stack and the baselines. Without the feature, nothing is counted.

use super::common::Sample;

#[cfg(feature = "bench")]
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// Allocation calls (alloc, alloc_zeroed and realloc) so far, if counted.
pub fn allocations() -> Option<u64> {
    #[cfg(feature = "bench")]
    {
        let s = GLOBAL.stats();
        Some((s.allocations + s.reallocations) as u64)
    }
    #[cfg(not(feature = "bench"))]
    {
        None
    }
}

/// The extra of a bulk sample: allocation calls per MiB moved (both directions of an echo).
pub const ALLOCS_PER_MIB: &str = "allocs_per_mib";

/// The extra of a latency sample: allocation calls per round trip, client and server together
/// (the whole process counts), from the first timed round trip to the last.
pub const ALLOCS_PER_RTT: &str = "allocs_per_rtt";

/// The extra of a churn sample: allocation calls per stream, client and server together.
pub const ALLOCS_PER_STREAM: &str = "allocs_per_stream";

/// The extra of a datagram sample: allocation calls per datagram sent, sender and receiver
/// together, until the last one arrived (the written payloads' arena included, the same for
/// every stack).
pub const ALLOCS_PER_DATAGRAM: &str = "allocs_per_datagram";

/// Counts allocations from its start.
#[derive(Copy, Clone, Debug)]
pub struct AllocSpan(Option<u64>);

impl AllocSpan {
    /// Starts counting.
    pub fn start() -> AllocSpan {
        AllocSpan(allocations())
    }

    /// Adds [`ALLOCS_PER_MIB`] (allocation calls since the start per MiB of `bytes`) to `s`.
    pub fn add_to(self, s: Sample, bytes: u64) -> Sample {
        self.add_per(s, ALLOCS_PER_MIB, bytes as f64 / (1024.0 * 1024.0))
    }

    /// Adds `name`: allocation calls since the start per unit of work (`units` of them: round
    /// trips, streams, datagrams) to `s`. Nothing when allocations are not counted or no
    /// unit was done.
    pub fn add_per(self, s: Sample, name: &'static str, units: f64) -> Sample {
        match (self.0, allocations()) {
            (Some(a), Some(b)) if units > 0.0 => s.with(name, b.saturating_sub(a) as f64 / units),
            _ => s,
        }
    }
}
