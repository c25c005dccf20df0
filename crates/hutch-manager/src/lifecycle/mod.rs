//! One file per lifecycle verb. Each runs: lock → load → guard → act → persist.

mod create;
mod delete;
mod pause;
mod resume;
mod start;
mod stop;
mod timeout;

pub(crate) use create::validate_env;
pub use create::CreateRequest;
