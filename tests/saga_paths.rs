//! The saga holds on every path: maps drain and undo every element, a
//! replaced step keeps its own undo, abandoned steps are cancelled and
//! recorded, and timeouts bound every step wherever it runs.
//!
//! Timeouts are tested on tokio's paused clock: time only moves when the
//! runtime has nothing else to do, so a timeout fires exactly when every
//! step that can move on has.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::run_error;
use reactor::kinds::{element, map, MapError};
use reactor::{
    input, result, step, ConcurrencyPool, Inputs, Outcome, Reactor, StepErrorKind, Unfinished,
    Value,
};
use tokio::sync::Semaphore;

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// Counts live futures: each holds a guard; the count is 0 once all were
/// dropped (finished or cancelled). Also the most alive at once.
#[derive(Default)]
struct Alive(AtomicUsize, AtomicUsize, tokio::sync::Notify);

struct AliveGuard(Arc<Alive>);

impl Alive {
    fn enter(self: &Arc<Self>) -> AliveGuard {
        let now = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        self.1.fetch_max(now, Ordering::SeqCst);
        AliveGuard(self.clone())
    }
    fn now(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    fn most(&self) -> usize {
        self.1.load(Ordering::SeqCst)
    }
    /// Waits until none is alive.
    async fn none(&self) {
        loop {
            let dropped = self.2.notified();
            if self.now() == 0 {
                return;
            }
            dropped.await;
        }
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
        self.0 .2.notify_waiters();
    }
}

/// `s` undoing itself by logging `what` and its value.
fn undo_logged(s: reactor::StepSpec, log: &Log, what: &'static str) -> reactor::StepSpec {
    let log = log.clone();
    s.undo(move |v: Value, _, _| {
        let log = log.clone();
        async move {
            log.lock()
                .unwrap()
                .push(format!("{what} {}", v.get::<i64>()?));
            Ok(())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_element_drains_the_elements_in_flight_and_undoes_them_all() {
    let ledger = log();
    let reserved = Arc::new(AtomicUsize::new(0));
    let all_reserved = Arc::new(tokio::sync::Notify::new());
    let go = Arc::new(Semaphore::new(0));
    let (l, r, n) = (ledger.clone(), reserved.clone(), all_reserved.clone());
    let reserve = step("reserve")
        .argument("i", element("m"))
        .run(move |a, _| {
            let (l, r, n) = (l.clone(), r.clone(), n.clone());
            async move {
                let i = *a.get::<i64>("i")?;
                if i == 0 {
                    // Fail once every other element holds a reservation.
                    loop {
                        let notified = n.notified();
                        if r.load(Ordering::SeqCst) == 3 {
                            break;
                        }
                        notified.await;
                    }
                    return Err("element 0 fails".into());
                }
                l.lock().unwrap().push(format!("reserve {i}"));
                r.fetch_add(1, Ordering::SeqCst);
                n.notify_waiters();
                Ok(i)
            }
        });
    let reserve = undo_logged(reserve, &ledger, "release");
    let (l, g) = (ledger.clone(), go.clone());
    let confirm = step("confirm")
        .argument("i", result("reserve"))
        .run(move |a, _| {
            let (l, g) = (l.clone(), g.clone());
            async move {
                // Still running when element 0 fails: the map must wait.
                let _permit = g.acquire().await.unwrap();
                let i = *a.get::<i64>("i")?;
                l.lock().unwrap().push(format!("confirm {i}"));
                Ok(i)
            }
        });
    let confirm = undo_logged(confirm, &ledger, "unconfirm");
    let g = go.clone();
    let reactor = Reactor::builder("r")
        .input("items")
        .add(
            map("m", input("items"))
                .items::<i64>()
                .steps([reserve, confirm])
                .returns("confirm")
                .batch_size(4)
                .into_step()
                .unwrap(),
        )
        .add(
            step("after")
                .argument("m", result("m"))
                .run_sync(|_, _| Ok(())),
        )
        .returns("after")
        .build()
        .unwrap();
    // Let the confirmations through once element 0 has failed.
    let releaser = tokio::spawn({
        let reserved = reserved.clone();
        let all = all_reserved.clone();
        async move {
            loop {
                let notified = all.notified();
                if reserved.load(Ordering::SeqCst) == 3 {
                    break;
                }
                notified.await;
            }
            g.add_permits(3);
        }
    });
    let err = reactor
        .run(Inputs::new().with("items", vec![0_i64, 1, 2, 3]))
        .max_concurrency(8)
        .await
        .unwrap_err();
    releaser.await.unwrap();
    let run = run_error(err);
    let map_error = run.find_reason::<MapError>().expect("the map's error");
    assert!(
        matches!(map_error, MapError::Element { index: 0, .. }),
        "{map_error}"
    );
    let got = entries(&ledger);
    for i in 1..=3 {
        for (done, undone) in [("reserve", "release"), ("confirm", "unconfirm")] {
            let did = got.iter().filter(|e| **e == format!("{done} {i}")).count();
            let undid = got
                .iter()
                .filter(|e| **e == format!("{undone} {i}"))
                .count();
            assert_eq!(
                did, undid,
                "{done} {i} undone exactly as often as done: {got:?}"
            );
        }
        assert_eq!(
            got.iter().filter(|e| **e == format!("reserve {i}")).count(),
            1
        );
        // Each element's confirmation is undone before its reservation.
        let pos = |e: String| got.iter().position(|x| *x == e);
        if let (Some(u), Some(r)) = (pos(format!("unconfirm {i}")), pos(format!("release {i}"))) {
            assert!(u < r, "{got:?}");
        }
    }
}

#[tokio::test]
async fn a_replaced_step_is_undone_by_itself_on_its_own_value() {
    let undone = log();
    let u = undone.clone();
    let replacement = step("poll")
        .argument("previous", result("poll"))
        .run_sync(|a, _| Ok(*a.get::<i64>("previous")? + 1))
        .undo(move |v: Value, _, _| {
            let u = u.clone();
            async move {
                u.lock()
                    .unwrap()
                    .push(format!("replacement undoes {}", v.get::<i64>()?));
                Ok(())
            }
        });
    let u = undone.clone();
    let reactor = Reactor::builder("r")
        .add(
            step("poll")
                .run_sync(move |_, _| Ok(Outcome::with_steps(1_i64, vec![replacement.clone()])))
                .undo(move |v: Value, _, _| {
                    let u = u.clone();
                    async move {
                        u.lock()
                            .unwrap()
                            .push(format!("original undoes {}", v.get::<i64>()?));
                        Ok(())
                    }
                }),
        )
        .add(
            step("fail")
                .argument("p", result("poll"))
                .run_sync(|_, _| Err::<(), _>("fails".into())),
        )
        .returns("fail")
        .build()
        .unwrap();
    reactor.run(Inputs::new()).await.unwrap_err();
    assert_eq!(
        entries(&undone),
        ["replacement undoes 2", "original undoes 1"]
    );
}

/// A step that never finishes by itself: it holds a guard while alive.
fn forever(alive: &Arc<Alive>, runs: &Arc<AtomicUsize>) -> reactor::StepSpec {
    let (alive, runs) = (alive.clone(), runs.clone());
    step("slow").run(move |_, _| {
        let guard = alive.enter();
        runs.fetch_add(1, Ordering::SeqCst);
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_step_is_cancelled_frees_its_slot_and_runs_once_on_resume() {
    let alive = Arc::new(Alive::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let pool = ConcurrencyPool::new(1);
    let reactor = Reactor::builder("r")
        .add(forever(&alive, &runs))
        .returns("slow")
        .build()
        .unwrap();
    let halted = reactor
        .run(Inputs::new())
        .pool(pool.clone())
        .timeout(Duration::from_secs(1))
        .halt_timeout(Duration::from_secs(1))
        .outcome()
        .await
        .unwrap()
        .halted()
        .expect("the run halts at its timeout");
    assert_eq!(alive.now(), 0, "the abandoned step was cancelled");
    assert_eq!(pool.available(), 1, "its slot is free again");
    assert_eq!(halted.state().abandoned, ["slow"]);
    assert_eq!(halted.pending_steps(), ["slow"]);
    // Another run can use the pool of one at once.
    let other = Reactor::builder("o")
        .add(step("x").run(|_, _| async { Ok(1_i64) }))
        .returns("x")
        .build()
        .unwrap();
    other.run(Inputs::new()).pool(pool.clone()).await.unwrap();
    // On resume it runs again, never beside its old copy.
    let resumed = halted
        .resume()
        .pool(pool.clone())
        .timeout(Duration::from_secs(1))
        .halt_timeout(Duration::from_secs(1))
        .outcome()
        .await
        .unwrap();
    assert!(resumed.halted().is_some());
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(alive.most(), 1);
    assert_eq!(alive.now(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failing_run_cancels_reports_and_undoes_an_abandoned_step() {
    let alive = Arc::new(Alive::default());
    let undone = log();
    let u = undone.clone();
    let a = alive.clone();
    let reactor = Reactor::builder("r")
        .add(
            step("slow")
                .run(move |_, _| {
                    let guard = a.enter();
                    async move {
                        let _guard = guard;
                        std::future::pending::<()>().await;
                        Ok(())
                    }
                })
                .undo(move |v: Value, _, _| {
                    let u = u.clone();
                    async move {
                        let what = if v.is::<Unfinished>() {
                            "unfinished"
                        } else {
                            "value"
                        };
                        u.lock().unwrap().push(what.to_string());
                        Ok(())
                    }
                }),
        )
        .add(step("fail").run(|_, _| async {
            tokio::task::yield_now().await;
            Err::<(), _>("fails".into())
        }))
        .add(
            step("end")
                .argument("a", result("slow"))
                .argument("b", result("fail"))
                .run_sync(|_, _| Ok(())),
        )
        .returns("end")
        .build()
        .unwrap();
    let err = reactor
        .run(Inputs::new())
        .halt_timeout(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(alive.now(), 0, "cancelled before the run returned");
    let run = run_error(err);
    let abandoned: Vec<_> = run
        .errors
        .iter()
        .filter(|e| matches!(e.kind, StepErrorKind::Abandoned))
        .map(|e| e.step.clone())
        .collect();
    assert_eq!(abandoned, ["slow"]);
    assert_eq!(entries(&undone), ["unfinished"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_run_stops_its_cpu_bound_steps() {
    let alive = Arc::new(Alive::default());
    let started = Arc::new(tokio::sync::Notify::new());
    let (a, s) = (alive.clone(), started.clone());
    let reactor = Reactor::builder("r")
        .add(step("cpu").cpu_bound().run(move |_, _| {
            let guard = a.enter();
            s.notify_one();
            async move {
                let _guard = guard;
                loop {
                    tokio::task::yield_now().await;
                }
                #[allow(unreachable_code)]
                Ok(())
            }
        }))
        .returns("cpu")
        .build()
        .unwrap();
    let run = tokio::spawn(std::future::IntoFuture::into_future(
        reactor.run(Inputs::new()),
    ));
    started.notified().await;
    run.abort();
    let _ = run.await;
    // The cancellation reaches the blocking pool at the step's next await
    // (a step that never awaited would keep the thread: it cannot be cut).
    alive.none().await;
    assert_eq!(alive.now(), 0);
}

/// A run whose only step awaits forever, in the coordinator.
fn stuck_inline(alive: &Arc<Alive>, step_async: bool) -> Reactor {
    let runs = Arc::new(AtomicUsize::new(0));
    Reactor::builder("r")
        .add(forever(alive, &runs).run_async(step_async))
        .returns("slow")
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_timeout_bounds_steps_in_the_coordinator_and_sync_runs() {
    for (step_async, run_async) in [(false, true), (true, false), (false, false)] {
        let alive = Arc::new(Alive::default());
        let halted = stuck_inline(&alive, step_async)
            .run(Inputs::new())
            .run_async(run_async)
            .timeout(Duration::from_secs(1))
            .halt_timeout(Duration::from_secs(1))
            .outcome()
            .await
            .unwrap()
            .halted();
        assert!(
            halted.is_some(),
            "step async {step_async}, run async {run_async}"
        );
        assert_eq!(alive.now(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn the_halt_timeout_bounds_a_step_in_the_coordinator_when_another_halts() {
    let alive = Arc::new(Alive::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let reactor = Reactor::builder("r")
        .add(forever(&alive, &runs).run_async(false))
        .add(step("halter").run(|_, _| async { Ok(Outcome::Halt(Value::new(1_i64))) }))
        .add(
            step("end")
                .argument("a", result("slow"))
                .argument("b", result("halter"))
                .run_sync(|_, _| Ok(())),
        )
        .returns("end")
        .build()
        .unwrap();
    let halted = reactor
        .run(Inputs::new())
        .halt_timeout(Duration::from_secs(3))
        .outcome()
        .await
        .unwrap()
        .halted()
        .expect("halted");
    assert_eq!(alive.now(), 0);
    assert_eq!(halted.state().abandoned, ["slow"]);
}
