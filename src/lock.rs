//! Locking a mutex that a panic elsewhere may have poisoned: for state
//! that stays usable whatever a panicking holder left (caches, a forward
//! pass's session, a queue), so one panic does not take every later caller
//! down with it.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// The guarded value, also after a panic while another holder had it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
