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
use common::stall::Ledger;

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
    let booking = Reactor::builder("booking")
        .input_as::<u32>("nights")
        .add(booked(ledger, "hotel"))
        .add(booked(ledger, "flight").wait_for("hotel"))
        .returns("flight")
        .build()
        .unwrap();
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
    let (rt2, id2) = (rt.clone(), id.to_string());
    let task = tokio::spawn(async move {
        rt2.start("trip", Inputs::new().with("nights", nights))
            .run_id(id2)
            .await
    });
    gate.notified().await;
    task.abort();
    let _ = task.await;
}

fn undone(journal: &reactor::journal::Journal) -> Vec<String> {
    journal
        .records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Undone { step, .. } => Some(step.clone()),
            _ => None,
        })
        .collect()
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
    // Nested runs are their parents' to take up.
    assert!(rt.recover().await.finished.is_empty());
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
