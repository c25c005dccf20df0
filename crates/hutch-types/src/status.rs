//! The sandbox lifecycle as data: the statuses and which verb each allows.
//!
//! ```text
//! creating → running ⇄ paused
//!            running → stopped → running
//!            any     → (deleted: the record is gone)
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A sandbox's status as the HopX API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SandboxStatus {
    /// Being created; not usable yet.
    Creating,
    /// Processes run; the agent answers.
    Running,
    /// Frozen: memory kept, no CPU.
    Paused,
    /// No processes; files kept.
    Stopped,
}

/// A lifecycle verb, for guard checks and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Freeze.
    Pause,
    /// Thaw.
    Resume,
    /// End processes, keep files.
    Stop,
    /// Start a stopped sandbox.
    Start,
    /// Change the expiry.
    SetTimeout,
    /// Call the agent.
    UseAgent,
    /// Remove.
    Delete,
}

impl Verb {
    /// The verb as the API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Stop => "stop",
            Verb::Start => "start",
            Verb::SetTimeout => "set the timeout of",
            Verb::UseAgent => "use",
            Verb::Delete => "delete",
        }
    }
}

impl SandboxStatus {
    /// Every status, for exhaustive tests and filters.
    pub const ALL: [SandboxStatus; 4] = [
        SandboxStatus::Creating,
        SandboxStatus::Running,
        SandboxStatus::Paused,
        SandboxStatus::Stopped,
    ];

    /// Whether `verb` is allowed in this status.
    pub fn allows(self, verb: Verb) -> bool {
        use SandboxStatus::*;
        match verb {
            Verb::Pause => self == Running,
            Verb::Resume => self == Paused,
            Verb::Stop => matches!(self, Running | Paused),
            Verb::Start => self == Stopped,
            Verb::SetTimeout => self != Creating,
            Verb::UseAgent => self == Running,
            Verb::Delete => true,
        }
    }

    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxStatus::Creating => "creating",
            SandboxStatus::Running => "running",
            SandboxStatus::Paused => "paused",
            SandboxStatus::Stopped => "stopped",
        }
    }
}

impl fmt::Display for SandboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SandboxStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown status {s:?}; expected one of running, paused, stopped, creating")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SandboxStatus::*;

    /// Every status × verb pair, written out so a change to the lifecycle is a visible diff.
    #[test]
    fn guard_table() {
        let verbs = [
            Verb::Pause,
            Verb::Resume,
            Verb::Stop,
            Verb::Start,
            Verb::SetTimeout,
            Verb::UseAgent,
            Verb::Delete,
        ];
        let table: [(SandboxStatus, [bool; 7]); 4] = [
            (Creating, [false, false, false, false, false, false, true]),
            (Running, [true, false, true, false, true, true, true]),
            (Paused, [false, true, true, false, true, false, true]),
            (Stopped, [false, false, false, true, true, false, true]),
        ];
        for (status, row) in table {
            for (verb, want) in verbs.iter().zip(row) {
                assert_eq!(status.allows(*verb), want, "{status} {verb:?}");
            }
        }
    }

    #[test]
    fn parses_api_spelling() {
        assert_eq!("paused".parse::<SandboxStatus>().unwrap(), Paused);
        assert!("deleted".parse::<SandboxStatus>().is_err());
    }
}
