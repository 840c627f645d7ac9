//! Concurrency pools: a fixed number of slots shared by any number of runs.
//!
//! A run takes a slot for every step it runs in its own task and gives it
//! back when the step finishes, so runs sharing a pool never run more than
//! its limit of steps at once. Acquiring never blocks the executor: a run
//! that finds no slot waits for a release notification, without spinning.
//! A run nested inside a step that already holds a slot of the same pool
//! runs its step in its own coordinator when the pool is exhausted, so
//! nested runs cannot deadlock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

tokio::task_local! {
    /// The pools whose slots the enclosing step chain holds.
    static HELD_POOLS: HeldPools;
}

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
}

struct PoolInner {
    id: u64,
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
                id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
                limit,
                available: AtomicUsize::new(limit),
                waiters: AtomicUsize::new(0),
                released: Notify::new(),
            }),
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

    pub(crate) fn id(&self) -> u64 {
        self.inner.id
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
                Ok(_) => return Some(Permit { pool: self.clone() }),
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

    fn release(&self) {
        self.inner.available.fetch_add(1, Ordering::AcqRel);
        if self.inner.waiters.load(Ordering::SeqCst) > 0 {
            self.inner.released.notify_waiters();
        }
    }

    /// Whether the current task runs inside a step holding a slot of this pool.
    pub(crate) fn held_by_current_task(&self) -> bool {
        HELD_POOLS
            .try_with(|held| held.0.contains(&self.id()))
            .unwrap_or(false)
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
    pool: ConcurrencyPool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.pool.release();
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

/// The pools held by a step chain: a run's steps hold the pools of the
/// enclosing steps plus the run's own.
#[derive(Clone, Default)]
pub(crate) struct HeldPools(Arc<[u64]>);

impl HeldPools {
    /// The pools held by the current task, plus `pool`.
    pub(crate) fn current_plus(pool: &ConcurrencyPool) -> HeldPools {
        let mut ids: Vec<u64> = HELD_POOLS
            .try_with(|held| held.0.to_vec())
            .unwrap_or_default();
        if !ids.contains(&pool.id()) {
            ids.push(pool.id());
        }
        HeldPools(ids.into())
    }

    /// Runs `fut` with these pools marked as held.
    pub(crate) fn scope<F: std::future::Future>(
        self,
        fut: F,
    ) -> impl std::future::Future<Output = F::Output> {
        HELD_POOLS.scope(self, fut)
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

    #[tokio::test]
    async fn held_pools_are_seen_inside_the_scope_only() {
        let pool = ConcurrencyPool::new(1);
        assert!(!pool.held_by_current_task());
        let held = HeldPools::current_plus(&pool);
        let inner = pool.clone();
        held.scope(async move { assert!(inner.held_by_current_task()) })
            .await;
    }
}
