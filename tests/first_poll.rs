//! Where an awaiting step's attempt starts: in the run's coordinator, up
//! to its first await, while that costs less than handing it to a task
//! (then one that answers at once needs no task at all); what awaits goes
//! on in a task of its own, woken as it would be anywhere.
//!
//! How many start in the coordinator depends on what their first polls
//! cost (the rule is unit-tested in `executor::coordinator::first_poll`);
//! these tests hold whatever the machine and build: the first attempt of
//! a run always starts there, and costly ones soon stop doing so.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fan_out;
use reactor::{result, step, Inputs, Reactor};
use tokio::sync::oneshot;
use tokio::task::Id;

/// Runs `reactor` from a task of its own: that task's id, and the run's
/// result.
async fn run_in_task(reactor: Reactor) -> (Id, usize) {
    tokio::spawn(async move {
        let value = reactor.run(Inputs::new()).await.unwrap();
        (tokio::task::id(), *value.get::<usize>().unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_step_that_answers_at_once_needs_no_task() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reactor = fan_out("first_poll", 20, |i| {
        let seen = seen.clone();
        step(format!("s{i}")).run(move |_, _| {
            seen.lock().unwrap().push((i, tokio::task::try_id()));
            async move { Ok(i) }
        })
    });
    let (caller, n) = run_in_task(reactor).await;
    assert_eq!(n, 20);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 20);
    assert_eq!(
        seen[0],
        (0, Some(caller)),
        "the first step ran in the task awaiting the run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_awaits_goes_on_in_a_task_of_its_own() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reactor = fan_out("first_poll", 8, |i| {
        let seen = seen.clone();
        step(format!("s{i}")).run(move |_, _| {
            let seen = seen.clone();
            async move {
                let before = tokio::task::try_id();
                tokio::task::yield_now().await;
                seen.lock()
                    .unwrap()
                    .push((i, before, tokio::task::try_id()));
                Ok(i)
            }
        })
    });
    let (caller, n) = run_in_task(reactor).await;
    assert_eq!(n, 8);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 8);
    for (i, before, after) in seen.iter() {
        if *i == 0 {
            assert_eq!(*before, Some(caller), "it started in the coordinator");
        }
        assert_ne!(*after, Some(caller), "it went on in its own task");
    }
}

/// A step that first waited in the coordinator is woken in its task: the
/// wake-up its first poll registered is replaced by its task's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_up_after_the_first_poll_reaches_the_task() {
    for _ in 0..50 {
        let (tx, rx) = oneshot::channel::<usize>();
        let rx = Arc::new(Mutex::new(Some(rx)));
        let tx = Arc::new(Mutex::new(Some(tx)));
        let reactor = Reactor::builder("wake")
            .add(step("wait").run(move |_, _| {
                let rx = rx.lock().unwrap().take().expect("one attempt");
                async move { Ok(rx.await.expect("sent")) }
            }))
            .add(step("send").run(move |_, _| {
                let tx = tx.lock().unwrap().take().expect("one attempt");
                async move {
                    tx.send(7).expect("the waiting step listens");
                    Ok(())
                }
            }))
            .add(
                step("both")
                    .argument("wait", result("wait"))
                    .argument("send", result("send"))
                    .run_sync(|args, _| Ok(*args.get::<usize>("wait")?)),
            )
            .returns("both")
            .build()
            .unwrap();
        let value = tokio::time::timeout(Duration::from_secs(30), reactor.run(Inputs::new()))
            .await
            .expect("no lost wake-up")
            .unwrap();
        assert_eq!(*value.get::<usize>().unwrap(), 7);
    }
}

/// Steps whose first poll is costly leave the coordinator: after a few
/// timed ones, the rest start in tasks of their own, where the cores
/// share them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_first_polls_move_to_tasks() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reactor = fan_out("first_poll", 20, |i| {
        let seen = seen.clone();
        step(format!("s{i}")).run(move |_, _| {
            seen.lock().unwrap().push(tokio::task::try_id());
            // At least 1 ms of work before answering, never less.
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(1) {
                std::hint::spin_loop();
            }
            async move { Ok(i) }
        })
    });
    let (caller, n) = run_in_task(reactor).await;
    assert_eq!(n, 20);
    let seen = seen.lock().unwrap();
    let here = seen.iter().filter(|id| **id == Some(caller)).count();
    assert!(here >= 1, "the first ones were tried in the coordinator");
    assert!(
        here <= 5,
        "{here} of 20 costly steps ran in the coordinator"
    );
}
