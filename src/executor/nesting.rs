//! What a running attempt hands to the runs started inside it: how deeply
//! they are nested, the slot it can lend them, and the tracker that lets
//! its run wait until every task it ever started, however deeply nested,
//! has stopped.
//!
//! An attempt that awaits runs inside a tokio task-local scope holding its
//! [`Nesting`]; a run started inside it (a compose, a map, a user's own
//! nested run, with the pool from [`Context::pool`](crate::Context::pool)
//! or the pool's own handle) reads it when it starts ([`inherited`]).

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::context::RunScope;
use crate::pool::{ConcurrencyPool, Lender, Permit};

tokio::task_local! {
    static NESTING: Nesting;
}

/// How many runs may be nested inside one another. Deeper nesting is an
/// [`Error::NestingTooDeep`](crate::Error::NestingTooDeep).
pub const MAX_NESTING: u32 = 1_000;

/// A `run_async(false)` run nested this many levels below the last one
/// driven from a task of its own gets a task of its own, so that nesting
/// depth is not bounded by the caller's stack. (Unoptimised builds spend
/// tens of KiB of stack on a level: 8 levels came within a hair of a
/// 512 KiB thread stack, 4 leave room.)
pub(crate) const STACK_HOP: u32 = 4;

/// The scope of one awaiting attempt.
pub(crate) struct Nesting {
    /// The attempt's run.
    run: Arc<RunScope>,
    slot: RefCell<Lend>,
}

/// The slot an attempt can lend to nested runs.
enum Lend {
    None,
    /// The attempt's own slot.
    Held(Permit),
    /// The slot lent to the attempt's run (an attempt running in its
    /// run's coordinator holds none of its own).
    Inherited(Lender),
}

impl Nesting {
    /// The scope of an attempt of the run `run`: it lends `permit` if it
    /// holds one, else the slot lent to its run, if any.
    pub(crate) fn new(run: &Arc<RunScope>, permit: Option<Permit>) -> Nesting {
        let slot = match (permit, &run.lender) {
            (Some(p), _) => Lend::Held(p),
            (None, Some(l)) => Lend::Inherited(l.clone()),
            (None, None) => Lend::None,
        };
        Nesting {
            run: run.clone(),
            slot: RefCell::new(slot),
        }
    }
}

/// Runs `fut` inside `nesting`.
pub(crate) fn scope<F: Future>(nesting: Nesting, fut: F) -> impl Future<Output = F::Output> {
    NESTING.scope(nesting, fut)
}

/// What a run inherits from the attempt it starts in.
#[derive(Default)]
pub(crate) struct Inherited {
    /// The run's depth: 0 outside any step.
    pub(crate) depth: u32,
    /// Levels of `run_async(false)` runs stacked on the current task.
    pub(crate) stacked: u32,
    /// The run the attempt belongs to: it counts the new run's tasks, and
    /// takes over the new run's undo stack if the new run is dropped
    /// before it ends (the attempt was cancelled).
    pub(crate) parent: Option<Arc<RunScope>>,
    /// The slot the attempt lends, if it is of `pool`.
    pub(crate) lender: Option<Lender>,
}

/// What a run on `pool` started here inherits.
pub(crate) fn inherited(pool: &ConcurrencyPool) -> Inherited {
    NESTING
        .try_with(|n| {
            let lender = match &mut *n.slot.borrow_mut() {
                Lend::Held(p) if pool.is(p.pool()) => Some(p.lender()),
                Lend::Inherited(l) if pool.is(l.pool()) => Some(l.clone()),
                _ => None,
            };
            Inherited {
                depth: n.run.depth + 1,
                stacked: n.run.stacked + 1,
                parent: Some(n.run.clone()),
                lender,
            }
        })
        .unwrap_or_default()
}

/// Counts the live tasks of the runs nested in a run, however deep (a
/// run's own tasks report to it when they end, so they count only for the
/// runs it is nested in), so that a run can wait until none is left.
pub(crate) struct Tracker {
    live: AtomicUsize,
    waiting: AtomicBool,
    idle: Notify,
    parent: Option<Arc<Tracker>>,
}

impl Tracker {
    pub(crate) fn new(parent: Option<Arc<Tracker>>) -> Arc<Tracker> {
        Arc::new(Tracker {
            live: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            idle: Notify::new(),
            parent,
        })
    }

    /// Counts a task until the returned guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> Live {
        let mut t = Some(self);
        while let Some(tracker) = t {
            tracker.live.fetch_add(1, Ordering::SeqCst);
            t = tracker.parent.as_ref();
        }
        Live(self.clone())
    }

    /// Counts a task of this tracker's run for the runs it is nested in
    /// only (nothing for a run nested in none).
    pub(crate) fn enter_ancestors(&self) -> Option<Live> {
        self.parent.as_ref().map(|p| p.enter())
    }

    /// Waits until no task counted here is alive.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.waiting.store(true, Ordering::SeqCst);
            if self.live.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Tracker {
    /// Unlinks the chain of parents one by one: a run nested hundreds deep
    /// must not need a stack that deep to be dropped.
    fn drop(&mut self) {
        let mut next = self.parent.take();
        while let Some(parent) = next {
            match Arc::try_unwrap(parent) {
                Ok(mut last) => next = last.parent.take(),
                Err(_) => break,
            }
        }
    }
}

/// A counted task; see [`Tracker::enter`].
pub(crate) struct Live(Arc<Tracker>);

impl Drop for Live {
    fn drop(&mut self) {
        let mut t = Some(&self.0);
        while let Some(tracker) = t {
            if tracker.live.fetch_sub(1, Ordering::SeqCst) == 1
                && tracker.waiting.load(Ordering::SeqCst)
            {
                tracker.idle.notify_waiters();
            }
            t = tracker.parent.as_ref();
        }
    }
}
