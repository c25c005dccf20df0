//! hutch-server
