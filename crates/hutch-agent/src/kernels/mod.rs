//! Code interpreters: one long-lived kernel per language and context, rich output, caching and
//! execution history.

use hutch_types::AgentBoot;

/// All kernels of this sandbox.
pub struct Kernels {}

impl Kernels {
    /// No kernel is started until code needs one.
    pub fn new(_boot: &AgentBoot) -> Self {
        Self {}
    }
}
