//! hutch-types
