//! A pool whose limit holds across every worker of a cluster
//! ([`ConcurrencyPool::shared`]): its slots are leased from a store's
//! [`SharedLimits`] in blocks by a broker task, so that taking and giving
//! back a slot stays the local pool's atomic, never a round trip.
//!
//! The local pool starts with no slots. A run that finds none marks the
//! pool starved and wakes the broker, which claims a block; every tick
//! (100 ms) the broker states what this worker holds (which renews it),
//! gives back the slots that stayed free while nothing waited, and learns
//! its fair share (the limit divided among the workers holding or
//! wanting slots): holding more than its share while others want, it
//! keeps the surplus as its slots are released instead of reusing them,
//! and gives it back at the next tick. Its holding lasts as long as the
//! store's lease of this worker: a worker that dies gives its slots back
//! by letting the lease expire. A worker stalled past its lease may find,
//! when it wakes, that others took its slots: until its next tick the
//! limit may be exceeded by what it held.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as StdOrdering};
use std::time::Duration;

use tokio::sync::Notify;

use super::{ConcurrencyPool, PoolInner};
use crate::error::Error;
use crate::limit::SharedLimits;

/// How often the broker states its holding.
const TICK: Duration = Duration::from_millis(100);

/// What a shared pool's local side and its broker share.
pub(crate) struct Shared {
    /// Set when a run found no slot; cleared by the broker.
    starved: AtomicBool,
    /// Wakes the broker early: a run starved, or a slot was kept back.
    wake: Notify,
    /// Released slots still to keep back (the surplus over the share).
    debt: AtomicUsize,
    /// Slots kept back, to give back at the next tick.
    owed: AtomicUsize,
}

impl Shared {
    /// A run found no free slot.
    pub(super) fn starved(&self) {
        if !self.starved.swap(true, StdOrdering::SeqCst) {
            self.wake.notify_one();
        }
    }

    /// A slot is being released: whether it is kept back (owed to the
    /// store) instead of going back to the local pool.
    pub(super) fn repay(&self) -> bool {
        let kept = self
            .debt
            .fetch_update(StdOrdering::SeqCst, StdOrdering::SeqCst, |d| {
                d.checked_sub(1)
            })
            .is_ok();
        if kept {
            self.owed.fetch_add(1, StdOrdering::SeqCst);
        }
        kept
    }
}

impl ConcurrencyPool {
    /// A pool named `name` of `limit` slots held across every worker
    /// sharing `store`'s counts (each worker makes its pool with the same
    /// name and limit), leased to this process in blocks of an eighth of
    /// the limit (at least 1). Made inside a tokio runtime (its broker is
    /// a task of it); an error outside one.
    ///
    /// ```no_run
    /// use reactor::journal::PgStore;
    /// use reactor::ConcurrencyPool;
    ///
    /// # async fn f() -> Result<(), reactor::Error> {
    /// let store = PgStore::connect("postgres://postgres@127.0.0.1:5432/test").await?;
    /// let payments = ConcurrencyPool::shared("payments", 20, store.shared_limits())?;
    /// assert_eq!(payments.limit(), 20);
    /// # Ok(()) }
    /// ```
    pub fn shared(
        name: impl Into<String>,
        limit: usize,
        store: std::sync::Arc<dyn SharedLimits>,
    ) -> Result<ConcurrencyPool, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::InvalidOption {
            option: "pool",
            message: "a shared pool is made inside a tokio runtime, which runs its broker"
                .to_string(),
        })?;
        let name = name.into();
        let shared = std::sync::Arc::new(Shared {
            starved: AtomicBool::new(false),
            wake: Notify::new(),
            debt: AtomicUsize::new(0),
            owed: AtomicUsize::new(0),
        });
        let pool = ConcurrencyPool::make(Some(name.clone()), limit, 0, Some(shared.clone()));
        let broker = Broker {
            name,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            block: u32::try_from((limit / 8).max(1)).unwrap_or(u32::MAX),
            store,
            shared,
            held: 0,
        };
        runtime.spawn(broker.run(std::sync::Arc::downgrade(&pool.inner)));
        Ok(pool)
    }
}

/// Leases slots for one process's shared pool.
struct Broker {
    name: String,
    limit: u32,
    block: u32,
    store: std::sync::Arc<dyn SharedLimits>,
    shared: std::sync::Arc<Shared>,
    /// Slots leased from the store: free here, in use, or kept back.
    held: u32,
}

impl Broker {
    async fn run(mut self, pool: std::sync::Weak<PoolInner>) {
        let mut refused = 0;
        loop {
            if refused == 0 {
                tokio::select! {
                    () = self.shared.wake.notified() => {}
                    () = tokio::time::sleep(TICK) => {}
                }
            } else {
                // Starved and refused: ask again soon, not at once.
                tokio::time::sleep(crate::limit::retry_after(refused).min(TICK)).await;
            }
            let Some(pool) = pool.upgrade() else {
                // The pool is gone, and its permits with it.
                if let Err(e) = self.store.claim(&self.name, "", self.limit, 0, 0).await {
                    tracing::warn!(pool = %self.name, error = %e, "giving a shared pool's slots back failed: they return when this worker's lease expires");
                }
                return;
            };
            let owed = self.shared.owed.swap(0, StdOrdering::SeqCst);
            self.held = self
                .held
                .saturating_sub(u32::try_from(owed).unwrap_or(u32::MAX));
            // Starved: a run found no slot since the last tick, or runs
            // still wait (a grant smaller than the queue, a slot kept back).
            let starved =
                self.shared.starved.swap(false, StdOrdering::SeqCst) || pool.has_waiters();
            if !starved {
                let idle = pool.take_free();
                self.held = self
                    .held
                    .saturating_sub(u32::try_from(idle).unwrap_or(u32::MAX));
            }
            let want = if starved { self.block } else { 0 };
            match self
                .store
                .claim(&self.name, "", self.limit, self.held, want)
                .await
            {
                Ok(claimed) => {
                    self.held += claimed.granted;
                    pool.grant(claimed.granted as usize);
                    // Slots kept back while the claim was out leave `held`
                    // at the next tick: they are not owed twice.
                    let surplus = self.held.saturating_sub(claimed.share.max(1)) as usize;
                    let kept = self.shared.owed.load(StdOrdering::SeqCst);
                    self.shared
                        .debt
                        .store(surplus.saturating_sub(kept), StdOrdering::SeqCst);
                    if starved && claimed.granted == 0 {
                        self.shared.starved.store(true, StdOrdering::SeqCst);
                        refused += 1;
                    } else {
                        refused = 0;
                    }
                }
                Err(e) => {
                    tracing::warn!(pool = %self.name, error = %e, "leasing a shared pool's slots failed: trying again");
                    if starved {
                        self.shared.starved.store(true, StdOrdering::SeqCst);
                    }
                    refused += 1;
                }
            }
        }
    }
}
