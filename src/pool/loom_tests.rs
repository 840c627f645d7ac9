//! Models of the pool under `loom`, which runs each model in every
//! interleaving (and every weak-memory outcome) that matters:
//!
//! ```text
//! RUSTFLAGS="--cfg reactor_loom" cargo test --release --lib pool::loom_tests
//! ```

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};

use loom::future::block_on;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use super::ConcurrencyPool;

/// A release made while another thread waits always reaches the waiter.
#[test]
fn a_release_wakes_a_waiting_acquire() {
    loom::model(|| {
        let pool = ConcurrencyPool::new(1);
        let held = pool.try_acquire().unwrap();
        let releaser = thread::spawn(move || drop(held));
        let permit = block_on(pool.acquire());
        releaser.join().unwrap();
        drop(permit);
        assert_eq!(pool.available(), 1);
    });
}

/// A waiter woken and then dropped before taking the slot passes its
/// wake-up on: the other waiter still gets the slot.
#[test]
fn a_dropped_waiter_passes_its_wake_up_on() {
    loom::model(|| {
        let pool = ConcurrencyPool::new(1);
        let held = pool.try_acquire().unwrap();
        let other = pool.clone();
        let quitter = thread::spawn(move || {
            block_on(async {
                let mut waiting = pin!(other.acquire());
                // Poll once (registering), then give up.
                std::future::poll_fn(|cx: &mut Context<'_>| {
                    let _ = waiting.as_mut().poll(cx);
                    Poll::Ready(())
                })
                .await;
            })
        });
        let releaser = thread::spawn(move || drop(held));
        let permit = block_on(pool.acquire());
        quitter.join().unwrap();
        releaser.join().unwrap();
        drop(permit);
        assert_eq!(pool.available(), 1);
    });
}

/// Concurrent takers never hold more slots than the pool has.
#[test]
fn takers_never_exceed_the_limit() {
    loom::model(|| {
        let pool = ConcurrencyPool::new(1);
        let holding = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (pool, holding) = (pool.clone(), holding.clone());
                thread::spawn(move || {
                    if let Some(p) = pool.try_acquire() {
                        assert_eq!(holding.fetch_add(1, Ordering::SeqCst), 0);
                        holding.fetch_sub(1, Ordering::SeqCst);
                        drop(p);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(pool.available(), 1);
    });
}

/// The holder and the borrower of a lent slot let go at once: the slot
/// goes back exactly once.
#[test]
fn a_lent_slot_goes_back_exactly_once() {
    loom::model(|| {
        let pool = ConcurrencyPool::new(1);
        let mut held = pool.try_acquire().unwrap();
        let lender = held.lender();
        let borrowed = lender.try_borrow().unwrap();
        let holder = thread::spawn(move || drop(held));
        drop(borrowed);
        holder.join().unwrap();
        assert_eq!(pool.available(), 1);
        assert!(lender.try_borrow().is_none());
    });
}

/// A nested run waiting to borrow the lent slot is woken when the other
/// borrower returns it.
#[test]
fn a_returned_borrow_wakes_a_waiting_borrower() {
    loom::model(|| {
        let pool = ConcurrencyPool::new(1);
        let mut held = pool.try_acquire().unwrap();
        let lender = held.lender();
        let borrowed = lender.try_borrow().unwrap();
        let returner = thread::spawn(move || drop(borrowed));
        let again = block_on(lender.borrow());
        returner.join().unwrap();
        drop(again);
        drop(held);
        assert_eq!(pool.available(), 1);
    });
}
