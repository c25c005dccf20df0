//! Benchmarks. Each prints p50/p99 next to a reference measured in the same run, because
//! absolute times drift on shared machines.

pub mod lifecycle;
mod stats;
