//! hutch-manager
