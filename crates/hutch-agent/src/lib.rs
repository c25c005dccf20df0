//! hutch-agent
