//! The search: which trials a study runs and what it remembers of them.
//!
//! - [`strategy`]: the pure policy (next trial, early stopping)
//! - [`journal`]: the append-only, fsynced study journal
//! - [`history`]: a study's state replayed from its journal records

pub mod history;
pub mod journal;
pub mod strategy;
