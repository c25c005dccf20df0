//! Starting user processes: confined, in their own session, and killable as a group.

mod run;

pub use run::{run_to_completion, CommandSpec, Output};
