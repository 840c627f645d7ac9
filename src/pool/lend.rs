//! Lending a held slot to the runs nested inside its holder.
//!
//! A step that holds a slot and runs a nested reactor on the same pool
//! waits for that reactor: the slot it holds would sit idle while the
//! nested run waits for a free one, and with every slot held that way no
//! run could go on. So the holder lends its slot: the nested run may run
//! one step at a time on it (a [`Lender`] is a pool of one slot).
//!
//! The slot goes back to where it came from exactly once: when the holder
//! has let go of it and it is not borrowed. `state` has two bits, `BUSY`
//! (borrowed) and `GONE` (the holder dropped its permit); whichever of the
//! holder's drop and the borrower's return sees the other's bit gives the
//! slot back. A lent slot can be lent again, so nesting goes any depth.

use super::sync::{Arc, AtomicU8, Ordering};
use super::waiters::{Acquire, WaitList};
use super::{PoolInner, Source};
use crate::pool::Permit;

const BUSY: u8 = 1;
const GONE: u8 = 2;

/// The slot of a permit, lent to nested runs (a cloneable handle).
#[derive(Clone)]
pub(crate) struct Lender(Arc<Inner>);

struct Inner {
    state: AtomicU8,
    /// Where the slot goes back to once both holder and borrower let go.
    source: Source,
    waiters: WaitList,
}

impl Lender {
    pub(super) fn new(source: Source) -> Lender {
        Lender(Arc::new(Inner {
            state: AtomicU8::new(0),
            source,
            waiters: WaitList::new(),
        }))
    }

    /// The pool the slot belongs to.
    pub(crate) fn pool(&self) -> &Arc<PoolInner> {
        self.0.source.pool()
    }

    /// Borrows the slot if it is free and its holder still holds it.
    pub(crate) fn try_borrow(&self) -> Option<Permit> {
        self.0
            .state
            .compare_exchange(0, BUSY, Ordering::SeqCst, Ordering::SeqCst)
            .ok()?;
        Some(Permit::from_source(Source::Lent(self.clone())))
    }

    /// Waits until the slot can be borrowed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub(crate) fn borrow(&self) -> Acquire<'_, impl Fn() -> Option<Permit> + '_> {
        self.0.waiters.acquire(move || self.try_borrow())
    }

    /// A borrower gave the slot back.
    pub(super) fn returned(&self) {
        let before = self.0.state.fetch_and(!BUSY, Ordering::SeqCst);
        if before & GONE != 0 {
            self.0.source.give_back();
        } else {
            self.0.waiters.wake_one();
        }
    }

    /// The holder let go; `true` if the slot is free to go back now (else
    /// its borrower gives it back when done).
    pub(super) fn holder_gone(&self) -> bool {
        let before = self.0.state.fetch_or(GONE, Ordering::SeqCst);
        before & BUSY == 0
    }
}
