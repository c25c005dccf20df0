//! Starting user processes: in their own session, killable as a group.

mod jobs;
mod run;

pub use jobs::JobTable;
pub use run::{command, exit_code, kill_group, run_to_completion, CommandSpec, Output};
