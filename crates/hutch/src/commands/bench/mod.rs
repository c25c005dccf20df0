//! Benchmarks. Each prints p50/p99 next to a reference measured in the same run, because
//! absolute times drift on shared machines.

pub mod exec;
pub mod lifecycle;
mod refs;
mod scratch;
mod stats;

/// Untimed runs before each measurement.
const WARMUP: usize = 5;
