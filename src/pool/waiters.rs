//! The wait list of a pool (or of a lent slot): futures waiting for a slot,
//! woken one per released slot.
//!
//! # Why no wake-up is lost
//!
//! A waiter registers (raising `pending` under the lock), issues a
//! `SeqCst` fence, then tries to take a slot (reading the free count). A
//! release raises the free count, issues a `SeqCst` fence, then reads
//! `pending`. The two fences are ordered one before the other, so either
//! the waiter sees the released slot or the release sees the waiter and
//! wakes one. (Fences, not `SeqCst` accesses alone: those do not order a
//! store before a later load of another location on every model, and
//! `loom` checks the fences.) A woken waiter that cannot
//! take the slot (another caller took it first) waits again: whoever took
//! it releases it later. A woken waiter dropped before it took a slot
//! passes its wake-up on to the next waiter. The models in `loom_tests`
//! check these claims.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::sync::{fence, AtomicUsize, Mutex, Ordering};
use super::Permit;

/// Futures waiting for a slot, in arrival order.
pub(super) struct WaitList {
    /// Registered waiters not yet woken (changed only under the lock).
    pending: AtomicUsize,
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    next_id: u64,
    list: Vec<Waiter>,
}

struct Waiter {
    id: u64,
    waker: Waker,
    woken: bool,
}

impl Waiters {
    fn position(&self, id: u64) -> Option<usize> {
        self.list.iter().position(|w| w.id == id)
    }
}

impl WaitList {
    pub(super) fn new() -> WaitList {
        WaitList {
            pending: AtomicUsize::new(0),
            waiters: Mutex::new(Waiters::default()),
        }
    }

    /// How many futures wait, not yet woken.
    #[cfg(not(reactor_loom))]
    pub(super) fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Wakes one waiting future, if any: a slot was released (just
    /// before this call).
    pub(super) fn wake_one(&self) {
        fence(Ordering::SeqCst);
        if self.pending.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut waiters = self.waiters.lock();
        self.wake_first(&mut waiters);
    }

    fn wake_first(&self, waiters: &mut Waiters) {
        if let Some(w) = waiters.list.iter_mut().find(|w| !w.woken) {
            w.woken = true;
            self.pending.fetch_sub(1, Ordering::SeqCst);
            w.waker.wake_by_ref();
        }
    }

    /// A future resolving with a slot taken by `take`.
    pub(super) fn acquire<F>(&self, take: F) -> Acquire<'_, F>
    where
        F: Fn() -> Option<Permit>,
    {
        Acquire {
            list: self,
            take,
            id: None,
        }
    }

    /// Registers (or re-arms) waiter `id` with `waker`; returns its id.
    fn arm(&self, id: Option<u64>, waker: &Waker) -> u64 {
        let mut waiters = self.waiters.lock();
        if let Some(at) = id.and_then(|id| waiters.position(id)) {
            let w = &mut waiters.list[at];
            if w.woken {
                w.woken = false;
                self.pending.fetch_add(1, Ordering::SeqCst);
            }
            if !w.waker.will_wake(waker) {
                w.waker = waker.clone();
            }
            return w.id;
        }
        let id = waiters.next_id;
        waiters.next_id += 1;
        waiters.list.push(Waiter {
            id,
            waker: waker.clone(),
            woken: false,
        });
        self.pending.fetch_add(1, Ordering::SeqCst);
        id
    }

    /// Removes waiter `id`; a wake-up it received and did not use goes to
    /// the next waiter.
    fn remove(&self, id: u64) {
        let mut waiters = self.waiters.lock();
        let Some(at) = waiters.position(id) else {
            return;
        };
        let w = waiters.list.remove(at);
        if w.woken {
            self.wake_first(&mut waiters);
        } else {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Waits for a slot; see [`WaitList::acquire`].
///
/// # Cancel safety
///
/// Cancel safe: a slot is taken only when the future completes, and a
/// wake-up received by a dropped future goes to the next waiter.
pub(crate) struct Acquire<'a, F> {
    list: &'a WaitList,
    take: F,
    id: Option<u64>,
}

// The closure is never pinned: moving the future moves nothing that a
// pinned reference points into.
impl<F> Unpin for Acquire<'_, F> {}

impl<F: Fn() -> Option<Permit>> Future for Acquire<'_, F> {
    type Output = Permit;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        // No field is structurally pinned.
        let this = self.get_mut();
        if this.id.is_none() {
            if let Some(permit) = (this.take)() {
                return Poll::Ready(permit);
            }
        }
        this.id = Some(this.list.arm(this.id, cx.waker()));
        fence(Ordering::SeqCst);
        match (this.take)() {
            Some(permit) => {
                if let Some(id) = this.id.take() {
                    this.list.remove(id);
                }
                Poll::Ready(permit)
            }
            None => Poll::Pending,
        }
    }
}

impl<F> Drop for Acquire<'_, F> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.list.remove(id);
        }
    }
}
