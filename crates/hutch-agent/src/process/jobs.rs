//! Background processes started through `/execute/background` and `/commands/background`.

use hutch_types::AgentBoot;

/// Every background job this agent started.
pub struct JobTable {}

impl JobTable {
    /// An empty table.
    pub fn new(_boot: &AgentBoot) -> Self {
        Self {}
    }
}
