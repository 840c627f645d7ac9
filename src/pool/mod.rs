//! Concurrency pools: a fixed number of slots shared by any number of runs.
//!
//! A run takes a slot for every step it runs off its coordinator (in a
//! task of its own or in a chunk of plain steps) and gives it back when
//! the step finishes, so runs sharing a pool never run more than its limit
//! of steps at once. Taking a slot never blocks a thread: a run that finds
//! none waits for one to be released, without spinning.
//!
//! A step that holds a slot and runs a nested reactor on the same pool
//! (through [`Context::pool`](crate::Context::pool) or the pool's own
//! handle) *lends* its slot to the nested run, which may run one step at a
//! time on it ([`lend`]): it waits for its nested run anyway, so nested
//! runs never deadlock on a pool their callers exhausted.
//!
//! # Implementation
//!
//! The free count is an atomic; a release wakes one waiting future
//! ([`waiters`] explains why no wake-up is lost). Under
//! `--cfg reactor_loom` the primitives are `loom`'s, and the models in
//! `loom_tests` check the pool, its wake-ups and its lending.

pub(crate) mod adaptive;
pub(crate) mod lend;
#[cfg(not(reactor_loom))]
mod shared;
mod sync;
mod waiters;

#[cfg(not(reactor_loom))]
use shared::Shared;

/// Shared pools are not modelled under loom.
#[cfg(reactor_loom)]
struct Shared;

#[cfg(reactor_loom)]
impl Shared {
    fn starved(&self) {}
    fn repay(&self) -> bool {
        false
    }
}

#[cfg(all(test, reactor_loom))]
mod loom_tests;

use std::future::Future;

pub(crate) use lend::Lender;
use sync::{Arc, AtomicUsize, Ordering};
use waiters::WaitList;

/// A cloneable handle to a pool of concurrency slots.
///
/// A pool of 0 slots can be made, but a run refuses it (it could never
/// run a step), and [`ConcurrencyPool::acquire`] on it waits forever.
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

pub(crate) struct PoolInner {
    name: Option<String>,
    limit: usize,
    available: AtomicUsize,
    waiters: WaitList,
    /// A shared pool's link to its broker ([`ConcurrencyPool::shared`]).
    shared: Option<std::sync::Arc<Shared>>,
}

impl std::fmt::Debug for ConcurrencyPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrencyPool")
            .field("name", &self.name())
            .field("available", &self.available())
            .field("limit", &self.limit())
            .finish()
    }
}

impl ConcurrencyPool {
    /// A pool of `limit` slots.
    pub fn new(limit: usize) -> ConcurrencyPool {
        ConcurrencyPool::with_name(None, limit)
    }

    /// A pool of `limit` slots named `name` (telemetry reports the slots in
    /// use of named pools).
    ///
    /// ```
    /// use reactor::ConcurrencyPool;
    ///
    /// let fast = ConcurrencyPool::named("fast", 100);
    /// assert_eq!(fast.name(), Some("fast"));
    /// ```
    pub fn named(name: impl Into<String>, limit: usize) -> ConcurrencyPool {
        ConcurrencyPool::with_name(Some(name.into()), limit)
    }

    fn with_name(name: Option<String>, limit: usize) -> ConcurrencyPool {
        ConcurrencyPool::make(name, limit, limit, None)
    }

    fn make(
        name: Option<String>,
        limit: usize,
        available: usize,
        shared: Option<std::sync::Arc<Shared>>,
    ) -> ConcurrencyPool {
        ConcurrencyPool {
            inner: Arc::new(PoolInner {
                name,
                limit,
                available: AtomicUsize::new(available),
                waiters: WaitList::new(),
                shared,
            }),
        }
    }

    /// The pool's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// The number of slots (of a [shared](ConcurrencyPool::shared) pool,
    /// across the cluster).
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// The number of free slots now (of a shared pool, free here).
    pub fn available(&self) -> usize {
        self.inner.available.load(Ordering::SeqCst)
    }

    /// Whether two handles are of the same pool.
    pub fn same_pool(&self, other: &ConcurrencyPool) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub(crate) fn is(&self, inner: &Arc<PoolInner>) -> bool {
        Arc::ptr_eq(&self.inner, inner)
    }

    /// Takes a slot if one is free; never blocks.
    pub fn try_acquire(&self) -> Option<Permit> {
        self.inner.try_take(&self.inner)
    }

    /// Waits for a slot.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a slot is taken only when the future completes.
    pub fn acquire(&self) -> impl Future<Output = Permit> + Send + '_ {
        self.inner
            .waiters
            .acquire(move || self.inner.try_take(&self.inner))
    }
}

impl PoolInner {
    fn try_take(&self, me: &Arc<PoolInner>) -> Option<Permit> {
        let mut current = self.available.load(Ordering::SeqCst);
        loop {
            if current == 0 {
                if let Some(shared) = &self.shared {
                    shared.starved();
                }
                return None;
            }
            match self.available.compare_exchange_weak(
                current,
                current - 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Some(Permit::from_source(Source::Pool(me.clone()))),
                Err(actual) => current = actual,
            }
        }
    }

    fn release(&self) {
        if self.shared.as_ref().is_some_and(|s| s.repay()) {
            return;
        }
        self.available.fetch_add(1, Ordering::SeqCst);
        self.waiters.wake_one();
    }

    /// Adds `n` slots leased from the store (a shared pool's broker).
    #[cfg(not(reactor_loom))]
    fn grant(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.available.fetch_add(n, Ordering::SeqCst);
        for _ in 0..n {
            self.waiters.wake_one();
        }
    }

    /// Whether futures wait for a slot.
    #[cfg(not(reactor_loom))]
    fn has_waiters(&self) -> bool {
        self.waiters.pending() > 0
    }

    /// Takes every free slot out of the pool, to give back to the store;
    /// how many.
    #[cfg(not(reactor_loom))]
    fn take_free(&self) -> usize {
        self.available.swap(0, Ordering::SeqCst)
    }
}

/// Where a permit's slot came from, and goes back to.
#[derive(Clone)]
pub(crate) enum Source {
    /// Straight from the pool.
    Pool(Arc<PoolInner>),
    /// Borrowed from a holder that lent its slot.
    Lent(Lender),
}

impl Source {
    fn give_back(&self) {
        match self {
            Source::Pool(pool) => pool.release(),
            Source::Lent(lender) => lender.returned(),
        }
    }

    fn pool(&self) -> &Arc<PoolInner> {
        match self {
            Source::Pool(pool) => pool,
            Source::Lent(lender) => lender.pool(),
        }
    }
}

/// A slot of a [`ConcurrencyPool`], given back when dropped.
pub struct Permit {
    source: Source,
    /// Set once the slot is lent to nested runs.
    lender: Option<Lender>,
}

impl Permit {
    fn from_source(source: Source) -> Permit {
        Permit {
            source,
            lender: None,
        }
    }

    /// The pool the slot belongs to.
    pub(crate) fn pool(&self) -> &Arc<PoolInner> {
        self.source.pool()
    }

    /// Lends this slot to nested runs (the same lender every time).
    pub(crate) fn lender(&mut self) -> Lender {
        let source = &self.source;
        self.lender
            .get_or_insert_with(|| Lender::new(source.clone()))
            .clone()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        match &self.lender {
            Some(lender) if !lender.holder_gone() => {
                // Borrowed: the borrower gives the slot back when done.
            }
            _ => self.source.give_back(),
        }
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("lent", &self.lender.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(reactor_loom)))]
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

    #[test]
    fn a_lent_slot_goes_back_once_whoever_lets_go_last() {
        for holder_first in [true, false] {
            let pool = ConcurrencyPool::new(1);
            let mut held = pool.try_acquire().unwrap();
            let lender = held.lender();
            let borrowed = lender.try_borrow().unwrap();
            assert!(lender.try_borrow().is_none(), "one borrower at a time");
            if holder_first {
                drop(held);
                assert_eq!(pool.available(), 0);
                drop(borrowed);
            } else {
                drop(borrowed);
                assert!(lender.try_borrow().is_some());
                drop(held);
            }
            assert_eq!(pool.available(), 1);
            assert!(lender.try_borrow().is_none(), "the holder is gone");
        }
    }

    #[test]
    fn a_borrowed_slot_can_be_lent_again() {
        let pool = ConcurrencyPool::new(1);
        let mut held = pool.try_acquire().unwrap();
        let mut borrowed = held.lender().try_borrow().unwrap();
        let again = borrowed.lender().try_borrow().unwrap();
        drop(held);
        drop(borrowed);
        assert_eq!(pool.available(), 0);
        drop(again);
        assert_eq!(pool.available(), 1);
    }
}
