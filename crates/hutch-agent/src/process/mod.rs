//! Starting user processes: in their own session, killable as a group.

mod jobs;
pub mod lang;
pub mod procfs;
pub mod pty;
mod run;

pub use jobs::{Job, JobKind, JobRequest, JobStatus, JobTable, KillOutcome};
pub use run::{
    command, exit_code, kill_group, raise_oom_score, run_to_completion, CommandSpec, Output,
};
