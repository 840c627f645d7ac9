//! Composed reactors in durable runs: the nested run is a durable run of
//! its own, journalled beside its parent's; after a crash inside it, it
//! goes on where it stood; a compose completed before a crash is undone
//! from its journal, each of its steps once, even when the crash cut its
//! undo short.

use std::sync::Arc;

use reactor::durable::Runtime;
use reactor::journal::{Entry, RunStatus, SqliteStore};
use reactor::kinds::compose;
use reactor::{input, step, Inputs, Reactor, StepSpec};
use tokio::sync::Notify;

mod common;
use common::stall::{crash_run, crash_when, undone, Ledger};

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reactor-nested-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("journal.db")
}

/// A step counting its runs and undos in `ledger` (with its idempotency
/// key's step part), returning `nights`.
fn booked(ledger: &Ledger, name: &str) -> StepSpec {
    let (l, u) = (ledger.clone(), ledger.clone());
    let n = name.to_string();
    let un = n.clone();
    step(name)
        .argument("nights", input("nights"))
        .output::<u32>()
        .run(move |a, _| {
            let (l, n) = (l.clone(), n.clone());
            async move {
                l.hit(n).await;
                Ok(*a.get::<u32>("nights")?)
            }
        })
        .undo(move |_v, _a, ctx| {
            let (u, un) = (u.clone(), un.clone());
            async move {
                assert!(
                    ctx.idempotency_key().contains("/book.1.0:"),
                    "{}",
                    ctx.idempotency_key()
                );
                u.hit(format!("undo {un}")).await;
                Ok(())
            }
        })
}

/// `book` composes hotel then flight; `pay` fails for 99 nights.
fn trip(ledger: &Ledger) -> Reactor {
    trip_with(ledger, false)
}

/// `trip`, its composed reactor changed by an `insurance` step with
/// `insured`.
fn trip_with(ledger: &Ledger, insured: bool) -> Reactor {
    let mut booking = Reactor::builder("booking");
    booking
        .input_as::<u32>("nights")
        .add(booked(ledger, "hotel"))
        .add(booked(ledger, "flight").wait_for("hotel"));
    if insured {
        booking.add(booked(ledger, "insurance").wait_for("flight"));
    }
    let booking = booking.returns("flight").build().unwrap();
    let l = ledger.clone();
    Reactor::builder("trip")
        .input_as::<u32>("nights")
        .add(compose("book", booking).argument("nights", input("nights")))
        .add(
            step("pay")
                .argument("nights", reactor::result("book"))
                .output::<u32>()
                .run(move |a, _| {
                    let l = l.clone();
                    async move {
                        l.hit("pay".into()).await;
                        let n = *a.get::<u32>("nights")?;
                        if n == 99 {
                            return Err("the card was declined".into());
                        }
                        Ok(n * 100)
                    }
                }),
        )
        .returns("pay")
        .build()
        .unwrap()
}

fn runtime(path: &std::path::Path, ledger: &Ledger) -> Runtime {
    let rt = Runtime::new(SqliteStore::open(path).unwrap());
    rt.register(trip(ledger)).unwrap();
    rt
}

async fn crash_at(rt: &Runtime, id: &str, nights: u32, gate: Arc<Notify>) {
    crash_run(rt, "trip", Inputs::new().with("nights", nights), id, &gate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composed_run_is_a_durable_run_of_its_own() {
    let ledger = Ledger::default();
    let rt = runtime(&temp_db("own"), &ledger);
    let out = rt
        .start("trip", Inputs::new().with("nights", 2_u32))
        .run_id("t1")
        .await
        .unwrap();
    assert_eq!(*out.get::<u32>().unwrap(), 200);
    let child = rt.status("t1/book.1.0").await.unwrap();
    assert_eq!(child.status, RunStatus::Completed);
    // The parent's record of the compose names the run it keeps.
    let parent = rt.journal("t1").await.unwrap();
    assert!(parent.records.iter().any(|r| matches!(&r.entry,
        Entry::StepDone { step, nested, .. } if step == "book" && nested == &["t1/book.1.0"])));
    // Nested runs are their parents' to take up, resume or cancel.
    assert!(rt.recover().await.finished.is_empty());
    for err in [
        rt.resume("t1/book.1.0").await.unwrap_err(),
        rt.cancel("t1/book.1.0").await.unwrap_err(),
    ] {
        assert!(err.to_string().contains("nested run"), "{err}");
    }
    // A run id may not look like a nested run's.
    let err = rt
        .start("trip", Inputs::new().with("nights", 2_u32))
        .run_id("a/b")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("contains `/`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_a_compose_undoes_its_steps_once_journalled_in_its_run() {
    let ledger = Ledger::default();
    let rt = runtime(&temp_db("undo"), &ledger);
    let err = rt
        .start("trip", Inputs::new().with("nights", 99_u32))
        .run_id("t2")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("declined"), "{err}");
    assert_eq!(
        [ledger.get("undo hotel"), ledger.get("undo flight")],
        [1, 1]
    );
    let child = rt.journal("t2/book.1.0").await.unwrap();
    assert_eq!(undone(&child), ["flight", "hotel"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_inside_a_compose_goes_on_where_its_run_stood() {
    let path = temp_db("inside");
    let ledger = Ledger::default();
    let gate = ledger.stall_at("flight");
    let rt = runtime(&path, &ledger);
    crash_at(&rt, "t3", 3, gate).await;
    drop(rt);
    let rt = runtime(&path, &ledger);
    assert_eq!(
        rt.status("t3/book.1.0").await.unwrap().status,
        RunStatus::Running
    );
    let recovery = rt.recover().await;
    assert!(recovery.skipped.is_empty(), "{:?}", recovery.skipped);
    assert_eq!(recovery.finished.len(), 1, "only the parent is taken up");
    assert_eq!(
        *recovery.finished[0]
            .1
            .as_ref()
            .unwrap()
            .get::<u32>()
            .unwrap(),
        300
    );
    assert_eq!([ledger.get("hotel"), ledger.get("flight")], [1, 2]);
    let child = rt.journal("t3/book.1.0").await.unwrap();
    assert_eq!(child.run.status, RunStatus::Completed);
    assert!(child
        .records
        .iter()
        .any(|r| r.entry == Entry::Resumed { epoch: 2 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_completed_before_a_crash_is_undone_from_its_journal() {
    let path = temp_db("after");
    let ledger = Ledger::default();
    let gate = ledger.stall_at("pay");
    let rt = runtime(&path, &ledger);
    crash_at(&rt, "t4", 99, gate).await;
    drop(rt);
    let rt = runtime(&path, &ledger);
    let recovery = rt.recover().await;
    let err = recovery.finished[0].1.as_ref().unwrap_err().to_string();
    assert!(err.contains("declined"), "{err}");
    assert_eq!([ledger.get("hotel"), ledger.get("flight")], [1, 1]);
    assert_eq!(
        [ledger.get("undo hotel"), ledger.get("undo flight")],
        [1, 1]
    );
    let child = rt.journal("t4/book.1.0").await.unwrap();
    assert_eq!(undone(&child), ["flight", "hotel"]);
    assert_eq!(rt.status("t4").await.unwrap().status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_undo_cut_short_goes_on_undoing_each_step_once() {
    let path = temp_db("cut");
    let ledger = Ledger::default();
    let gate = ledger.stall_at("undo hotel");
    let rt = runtime(&path, &ledger);
    crash_at(&rt, "t5", 99, gate).await;
    drop(rt);
    let rt = runtime(&path, &ledger);
    assert_eq!(rt.status("t5").await.unwrap().status, RunStatus::Unwinding);
    let recovery = rt.recover().await;
    assert!(recovery.finished[0].1.is_err());
    // Flight was undone before the crash (its `Undone` is journalled);
    // hotel's undo, cut short, runs again.
    assert_eq!(
        [ledger.get("undo flight"), ledger.get("undo hotel")],
        [1, 2]
    );
    let child = rt.journal("t5/book.1.0").await.unwrap();
    assert_eq!(undone(&child), ["flight", "hotel"]);
    assert_eq!(rt.status("t5").await.unwrap().status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_compose_of_a_reactor_the_journal_cannot_hold_names_it() {
    let loose = Reactor::builder("loose")
        .input("x")
        .add(
            step("s")
                .argument("x", input("x"))
                .run_sync(|_, _| Ok(1_u32)),
        )
        .returns("s")
        .build()
        .unwrap();
    let outer = Reactor::builder("outer")
        .input_as::<u32>("x")
        .add(compose("c", loose).argument("x", input("x")))
        .returns("c")
        .build()
        .unwrap();
    let rt = Runtime::new(reactor::journal::MemoryStore::new());
    let err = rt.register(outer).unwrap_err().to_string();
    assert!(err.contains("step `c` runs the reactor `loose`"), "{err}");
    assert!(err.contains("input `x` has no declared type"), "{err}");
}

/// `book` composes hotel then flight (flight stalls); `fail` fails once
/// flight is under way, so the run gives up on the compose.
fn abandoning(ledger: &Ledger, flight_reached: Arc<Notify>) -> Reactor {
    let booking = Reactor::builder("booking")
        .input_as::<u32>("nights")
        .add(booked(ledger, "hotel"))
        .add(booked(ledger, "flight").wait_for("hotel"))
        .returns("flight")
        .build()
        .unwrap();
    Reactor::builder("abandon")
        .input_as::<u32>("nights")
        .add(compose("book", booking).argument("nights", input("nights")))
        .add(step("fail").output::<u32>().run(move |_, _| {
            let reached = flight_reached.clone();
            async move {
                reached.notified().await;
                Err::<u32, _>("the agency closed".into())
            }
        }))
        .returns("book")
        .build()
        .unwrap()
}

fn abandoning_runtime(path: &std::path::Path, ledger: &Ledger, reached: &Arc<Notify>) -> Runtime {
    let rt = Runtime::new(SqliteStore::open(path).unwrap());
    rt.register(abandoning(ledger, reached.clone())).unwrap();
    rt.configure(|r| r.halt_timeout(std::time::Duration::from_millis(20)));
    rt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_abandoned_by_a_failing_run_is_undone_once_from_its_journal() {
    let ledger = Ledger::default();
    let reached = ledger.stall_at("flight");
    let rt = abandoning_runtime(&temp_db("abandoned"), &ledger, &reached);
    let err = rt
        .start("abandon", Inputs::new().with("nights", 2_u32))
        .run_id("a1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("agency closed"), "{err}");
    // Hotel completed; flight may have: each undone once, from the
    // nested run's journal (not also from memory).
    assert_eq!(
        [ledger.get("undo hotel"), ledger.get("undo flight")],
        [1, 1]
    );
    let parent = rt.journal("a1").await.unwrap();
    let listed: Vec<Vec<String>> = parent
        .records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Unwinding { undo, .. } => Some(undo.iter().map(|u| u.step.clone()).collect()),
            _ => None,
        })
        .collect();
    assert_eq!(listed, [["book"]], "the parent lists only its own steps");
    let child = rt.journal("a1/book.1.0").await.unwrap();
    assert_eq!(child.run.status, RunStatus::Cancelled);
    assert_eq!(undone(&child), ["flight", "hotel"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwinding_of_an_abandoned_compose_cut_short_goes_on() {
    let path = temp_db("abandoned-crash");
    let ledger = Ledger::default();
    let reached = ledger.stall_at("flight");
    let gate = ledger.stall_at("undo hotel");
    let rt = abandoning_runtime(&path, &ledger, &reached);
    let rt2 = rt.clone();
    let run = async move {
        rt2.start("abandon", Inputs::new().with("nights", 2_u32))
            .run_id("a2")
            .await
    };
    crash_when(&gate, run).await;
    drop(rt);
    let rt = abandoning_runtime(&path, &ledger, &reached);
    let recovery = rt.recover().await;
    assert!(recovery.skipped.is_empty(), "{:?}", recovery.skipped);
    assert!(recovery.finished[0].1.is_err());
    // Flight was undone before the crash; hotel's undo, cut short, again.
    assert_eq!(
        [ledger.get("undo flight"), ledger.get("undo hotel")],
        [1, 2]
    );
    assert_eq!(rt.status("a2").await.unwrap().status, RunStatus::Failed);
}

/// Tells `failed` when the step `step` fails.
struct OnFailed {
    step: &'static str,
    failed: Arc<Notify>,
}

impl reactor::Middleware for OnFailed {
    fn on_event(&self, event: &reactor::Event<'_>) {
        if event.step == Some(self.step) && event.kind.name() == "step.failed" {
            self.failed.notify_one();
        }
    }
}

/// `book` composes hotel, a halt, then flight (a compose fails when its
/// reactor halts, undoing hotel); `slow` keeps the run from ending.
fn halting(ledger: &Ledger) -> Reactor {
    let booking = Reactor::builder("booking")
        .input_as::<u32>("nights")
        .add(booked(ledger, "hotel"))
        .add(
            step("pause")
                .argument("n", reactor::result("hotel"))
                .output::<u32>()
                .run_sync(|a, _| {
                    Ok(reactor::Outcome::Halt(reactor::Value::new(
                        *a.get::<u32>("n")?,
                    )))
                }),
        )
        .add(booked(ledger, "flight").wait_for("pause"))
        .returns("flight")
        .build()
        .unwrap();
    let l = ledger.clone();
    Reactor::builder("halting")
        .input_as::<u32>("nights")
        .add(compose("book", booking).argument("nights", input("nights")))
        .add(step("slow").output::<u32>().run(move |_, _| {
            let l = l.clone();
            async move {
                l.hit("slow".into()).await;
                Ok(1_u32)
            }
        }))
        .returns("book")
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_run_its_step_undid_before_a_crash_does_not_run_again() {
    let path = temp_db("halted");
    let ledger = Ledger::default();
    ledger.stall_at("slow");
    let failed = Arc::new(Notify::new());
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(halting(&ledger)).unwrap();
    let f = failed.clone();
    rt.configure(move |r| {
        r.middleware(Arc::new(OnFailed {
            step: "book",
            failed: f.clone(),
        }))
    });
    let rt2 = rt.clone();
    let task = tokio::spawn(async move {
        rt2.start("halting", Inputs::new().with("nights", 2_u32))
            .run_id("h1")
            .await
    });
    // The compose failed (hotel undone); the run waits for `slow`.
    failed.notified().await;
    task.abort();
    let _ = task.await;
    drop(rt);
    assert_eq!(ledger.get("undo hotel"), 1);
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(halting(&ledger)).unwrap();
    let recovery = rt.recover().await;
    assert!(recovery.halted.is_empty(), "{:?}", recovery.halted);
    let err = recovery.finished[0].1.as_ref().unwrap_err().to_string();
    assert!(err.contains("does not run again"), "{err}");
    // The halted run's `pause` completed, but hotel was undone: it must
    // not go on to flight as if hotel held.
    assert_eq!([ledger.get("hotel"), ledger.get("flight")], [1, 0]);
    assert_eq!(ledger.get("undo hotel"), 1);
    assert_eq!(rt.status("h1").await.unwrap().status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_within_an_undo_is_not_journalled() {
    // An undo that runs a reactor of its own (untyped: it could not be
    // journalled) within its context.
    let helper = Reactor::builder("helper")
        .add(step("h").run_sync(|_, _| Ok(1_u32)))
        .returns("h")
        .build()
        .unwrap();
    let r = Reactor::builder("undoer")
        .input_as::<u32>("x")
        .add(
            step("a")
                .argument("x", input("x"))
                .output::<u32>()
                .run_sync(|a, _| Ok(*a.get::<u32>("x")?))
                .undo(move |_, _, ctx| {
                    let helper = helper.clone();
                    async move {
                        helper.run(Inputs::new()).within(&ctx).await?;
                        Ok(())
                    }
                }),
        )
        .add(
            step("b")
                .argument("a", reactor::result("a"))
                .output::<u32>()
                .run_sync(|_, _| Err::<u32, _>("no".into())),
        )
        .returns("b")
        .build()
        .unwrap();
    let rt = Runtime::new(reactor::journal::MemoryStore::new());
    rt.register(r).unwrap();
    let err = rt
        .start("undoer", Inputs::new().with("x", 1_u32))
        .run_id("u")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("undo"), "the undo failed: {err}");
    assert!(rt.status("u/a.1.0").await.is_err(), "no nested journal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_run_under_a_changed_reactor_goes_on_only_if_migrated() {
    let path = temp_db("migrate");
    let ledger = Ledger::default();
    let gate = ledger.stall_at("flight");
    let rt = runtime(&path, &ledger);
    crash_at(&rt, "t9", 3, gate).await;
    drop(rt);
    let hash = |journal: &reactor::journal::Journal| match &journal.records[0].entry {
        Entry::RunStarted { def_hash, .. } => def_hash.clone(),
        other => panic!("{other:?}"),
    };
    let open = || {
        let rt = Runtime::new(SqliteStore::open(&path).unwrap());
        rt.register(trip_with(&ledger, true)).unwrap();
        rt
    };
    // The parent migrated, its compose's run not: the compose fails,
    // naming the change.
    let rt = open();
    let parent = hash(&rt.journal("t9").await.unwrap());
    let child = hash(&rt.journal("t9/book.1.0").await.unwrap());
    rt.migrate("trip", parent.clone());
    let probe = rt.recover().await;
    let err = probe.finished[0].1.as_ref().unwrap_err().to_string();
    assert!(err.contains("insurance"), "{err}");
    drop(rt);
    // Again from the crash, with both migrated: it goes on.
    let path2 = temp_db("migrate2");
    let ledger2 = Ledger::default();
    let gate = ledger2.stall_at("flight");
    let rt = runtime(&path2, &ledger2);
    crash_at(&rt, "t9", 3, gate).await;
    drop(rt);
    let rt = Runtime::new(SqliteStore::open(&path2).unwrap());
    rt.register(trip_with(&ledger2, true)).unwrap();
    rt.migrate("trip", parent).migrate("booking", child);
    let recovery = rt.recover().await;
    assert!(recovery.skipped.is_empty(), "{:?}", recovery.skipped);
    assert_eq!(
        *recovery.finished[0]
            .1
            .as_ref()
            .unwrap()
            .get::<u32>()
            .unwrap(),
        300
    );
    assert_eq!(
        [
            ledger2.get("hotel"),
            ledger2.get("flight"),
            ledger2.get("insurance")
        ],
        [1, 2, 1]
    );
}

/// A step running `inner` within it for round `round`, then (round 1)
/// replacing itself with round 2, made by the kind `round`.
fn round_step(
    ledger: &Ledger,
    steps: &reactor::durable::StepRegistry,
    name: &str,
    round: u32,
) -> StepSpec {
    let (l, steps) = (ledger.clone(), steps.clone());
    step(name).output::<u32>().run(move |_, ctx| {
        let (l, steps) = (l.clone(), steps.clone());
        async move {
            let inner =
                Reactor::builder("counted")
                    .input_as::<u32>("n")
                    .add(step("count").argument("n", input("n")).output::<u32>().run(
                        move |a, _| {
                            let l = l.clone();
                            async move {
                                let n = *a.get::<u32>("n")?;
                                l.hit(format!("count {n}")).await;
                                Ok(n)
                            }
                        },
                    ))
                    .returns("count")
                    .build()?;
            let got = *inner
                .run(Inputs::new().with("n", round))
                .within(&ctx)
                .await?
                .get::<u32>()?;
            if round == 1 {
                let again = steps.make("round", ctx.step_name(), 2_u32)?;
                return Ok(reactor::Outcome::with_steps(got, vec![again]));
            }
            Ok(reactor::Outcome::ok(got))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_replaced_by_its_name_does_not_take_up_the_runs_of_the_step_it_replaced() {
    let path = temp_db("replaced");
    let ledger = Ledger::default();
    let open = || {
        let rt = Runtime::new(SqliteStore::open(&path).unwrap());
        let l = ledger.clone();
        let steps = rt.steps().clone();
        rt.register_step("round", move |name: &str, round: u32| {
            round_step(&l, &steps, name, round)
        });
        let s = round_step(&ledger, rt.steps(), "poll", 1);
        rt.register(
            Reactor::builder("polling")
                .add(s)
                .returns("poll")
                .build()
                .unwrap(),
        )
        .unwrap();
        rt
    };
    let gate = ledger.stall_at("count 2");
    let rt = open();
    let rt2 = rt.clone();
    crash_when(&gate, async move {
        rt2.start("polling", Inputs::new()).run_id("p1").await
    })
    .await;
    drop(rt);
    let rt = open();
    let recovery = rt.recover().await;
    assert!(recovery.skipped.is_empty(), "{:?}", recovery.skipped);
    // The replacement's run is its own, taken up where it stood: not
    // the replaced step's, which returned 1.
    assert_eq!(
        *recovery.finished[0]
            .1
            .as_ref()
            .unwrap()
            .get::<u32>()
            .unwrap(),
        2
    );
    assert_eq!([ledger.get("count 1"), ledger.get("count 2")], [1, 2]);
    for id in ["p1/poll.1.0", "p1/poll~1.1.0"] {
        assert_eq!(
            rt.status(id).await.unwrap().status,
            RunStatus::Completed,
            "{id}"
        );
    }
}
