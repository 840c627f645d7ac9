//! The synchronisation primitives of the pool: `std`'s, or `loom`'s when
//! the crate is built with `--cfg reactor_loom` to model-check the pool.

#[cfg(not(reactor_loom))]
pub(super) use std::sync::atomic::{fence, AtomicU8, AtomicUsize, Ordering};
#[cfg(not(reactor_loom))]
pub(super) use std::sync::Arc;

#[cfg(reactor_loom)]
pub(super) use loom::sync::atomic::{fence, AtomicU8, AtomicUsize, Ordering};
#[cfg(reactor_loom)]
pub(super) use loom::sync::Arc;

/// A mutex whose poisoning is ignored: the data it guards (a wait list) is
/// consistent after every operation, and no user code runs under it.
pub(super) struct Mutex<T>(
    #[cfg(not(reactor_loom))] std::sync::Mutex<T>,
    #[cfg(reactor_loom)] loom::sync::Mutex<T>,
);

impl<T> Mutex<T> {
    pub(super) fn new(value: T) -> Mutex<T> {
        #[cfg(not(reactor_loom))]
        return Mutex(std::sync::Mutex::new(value));
        #[cfg(reactor_loom)]
        return Mutex(loom::sync::Mutex::new(value));
    }

    #[cfg(not(reactor_loom))]
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(reactor_loom)]
    pub(super) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
