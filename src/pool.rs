//! Concurrency pools: a fixed number of slots shared by any number of runs.
//!
//! A run takes a slot for every step it runs in its own task and gives it
//! back when the step finishes, so runs sharing a pool never run more than
//! its limit of steps at once. Acquiring never blocks the executor: a run
//! that finds no slot waits for a release notification, without spinning.
//!
//! A step's [`Context::pool`](crate::Context::pool) hands out the run's pool
//! marked as *held*: a nested run given that handle knows it runs inside a
//! step that holds a slot, and when the pool is exhausted it runs its step
//! in its own coordinator instead of waiting for a slot its caller holds,
//! so nested runs cannot deadlock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// A cloneable handle to a pool of concurrency slots.
///
/// # Examples
///
/// ```
/// use reactor::ConcurrencyPool;
///
/// let pool = ConcurrencyPool::new(2);
/// let a = pool.try_acquire().unwrap();
/// let _b = pool.try_acquire().unwrap();
/// assert!(pool.try_acquire().is_none());
/// drop(a);
/// assert_eq!(pool.available(), 1);
/// assert_eq!(pool.limit(), 2);
/// ```
#[derive(Clone)]
pub struct ConcurrencyPool {
    inner: Arc<PoolInner>,
    /// Handed out by a step's context: the holder runs inside a step.
    held: bool,
}

struct PoolInner {
    limit: usize,
    available: AtomicUsize,
    waiters: AtomicUsize,
    released: Notify,
}

impl std::fmt::Debug for ConcurrencyPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrencyPool")
            .field("available", &self.available())
            .field("limit", &self.limit())
            .finish()
    }
}

impl ConcurrencyPool {
    /// A pool of `limit` slots.
    pub fn new(limit: usize) -> ConcurrencyPool {
        ConcurrencyPool {
            inner: Arc::new(PoolInner {
                limit,
                available: AtomicUsize::new(limit),
                waiters: AtomicUsize::new(0),
                released: Notify::new(),
            }),
            held: false,
        }
    }

    /// The number of slots.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// The number of free slots now.
    pub fn available(&self) -> usize {
        self.inner.available.load(Ordering::Acquire)
    }

    /// This pool, marked as held by the step that receives it.
    pub(crate) fn held_by_step(&self) -> ConcurrencyPool {
        ConcurrencyPool {
            inner: self.inner.clone(),
            held: true,
        }
    }

    /// Whether this handle came from a step's context, i.e. whoever uses it
    /// runs inside a step (which may hold a slot of this pool).
    pub fn is_held_by_step(&self) -> bool {
        self.held
    }

    /// Whether two handles are of the same pool.
    pub fn same_pool(&self, other: &ConcurrencyPool) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Takes a slot if one is free; never blocks.
    pub fn try_acquire(&self) -> Option<Permit> {
        let mut current = self.inner.available.load(Ordering::Acquire);
        loop {
            if current == 0 {
                return None;
            }
            match self.inner.available.compare_exchange_weak(
                current,
                current - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Permit {
                        inner: self.inner.clone(),
                    })
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Waits for a slot.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a slot is only taken when the future completes.
    pub async fn acquire(&self) -> Permit {
        loop {
            if let Some(p) = self.try_acquire() {
                return p;
            }
            self.wait_for_release().await;
        }
    }

    /// Resolves after some slot is released (or at once if one is free).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub(crate) async fn wait_for_release(&self) {
        let _waiting = WaiterGuard::new(&self.inner);
        // Created before the re-check, so a release in between still wakes us.
        let notified = self.inner.released.notified();
        if self.available() > 0 {
            return;
        }
        notified.await;
    }
}

impl PoolInner {
    fn release(&self) {
        self.available.fetch_add(1, Ordering::AcqRel);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            // One slot, one waiter; a waiter that drops its notification
            // unused passes it on to the next.
            self.released.notify_one();
        }
    }
}

struct WaiterGuard<'a>(&'a PoolInner);

impl<'a> WaiterGuard<'a> {
    fn new(inner: &'a PoolInner) -> Self {
        inner.waiters.fetch_add(1, Ordering::SeqCst);
        WaiterGuard(inner)
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A slot of a [`ConcurrencyPool`], given back when dropped.
pub struct Permit {
    inner: Arc<PoolInner>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.release();
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_acquire_wakes_on_release() {
        let pool = ConcurrencyPool::new(1);
        let held = pool.acquire().await;
        let p2 = pool.clone();
        let waiter = tokio::spawn(async move {
            let _p = p2.acquire().await;
        });
        tokio::task::yield_now().await;
        drop(held);
        waiter.await.unwrap();
        assert_eq!(pool.available(), 1);
    }
}
