//! hutch-store
