//! `group` and `around` in durable runs: their nested steps run as a
//! durable run of their own (`parent/step.attempt.n`), given the step's
//! arguments again; after a crash inside it, it goes on where it stood,
//! and completed, it is undone from its journal, each step once.

use std::sync::Arc;

use reactor::durable::Runtime;
use reactor::journal::{Entry, RunStatus, SqliteStore};
use reactor::kinds::{around, group};
use reactor::{input, result, step, Inputs, Reactor, StepSpec, ValueMap};
use tokio::sync::Notify;

mod common;
use common::stall::{crash_run, undone, Ledger};

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reactor-group-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("journal.db")
}

/// A step counting its runs and undos in `ledger`, returning its
/// `nights` argument (an input of the nested run).
fn booked(ledger: &Ledger, name: &str) -> StepSpec {
    let (l, u) = (ledger.clone(), ledger.clone());
    let (n, un) = (name.to_string(), name.to_string());
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
        .undo(move |_v, a, _| {
            let (u, un) = (u.clone(), un.clone());
            async move {
                // Its inputs are given again after a crash.
                a.get::<u32>("nights")?;
                u.hit(format!("undo {un}")).await;
                Ok(())
            }
        })
}

/// `book` nests hotel then flight (a group, or an around when `wrapped`);
/// `pay` fails for 99 nights.
fn trip(ledger: &Ledger, wrapped: bool) -> Reactor {
    let steps = [
        booked(ledger, "hotel"),
        booked(ledger, "flight").wait_for("hotel"),
    ];
    let book = if wrapped {
        let l = ledger.clone();
        around("book", steps, move |args, _ctx, steps, nested| {
            let l = l.clone();
            async move {
                l.hit("begin".into()).await;
                let results = nested.run(&args, steps).await?;
                Ok(*results["flight"].get::<u32>()? + *results["hotel"].get::<u32>()?)
            }
        })
        .unwrap()
        .output::<u32>()
    } else {
        group("book").steps(steps).into_step().unwrap()
    };
    let l = ledger.clone();
    Reactor::builder("trip")
        .input_as::<u32>("nights")
        .add(book.argument("nights", input("nights")))
        .add(
            step("pay")
                .argument("nights", input("nights"))
                .wait_for("book")
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
        .add(
            step("total")
                .argument("book", result("book"))
                .argument("pay", result("pay"))
                .output::<u32>()
                .run_sync(move |a, _| {
                    let book = match a.get::<ValueMap>("book") {
                        Ok(map) => *map["hotel"].get::<u32>()? + *map["flight"].get::<u32>()?,
                        Err(_) => *a.get::<u32>("book")?,
                    };
                    Ok(book + *a.get::<u32>("pay")?)
                }),
        )
        .returns("total")
        .build()
        .unwrap()
}

fn runtime(path: &std::path::Path, ledger: &Ledger, wrapped: bool) -> Runtime {
    let rt = Runtime::new(SqliteStore::open(path).unwrap());
    rt.register(trip(ledger, wrapped)).unwrap();
    rt
}

async fn crash_at(rt: &Runtime, id: &str, nights: u32, gate: Arc<Notify>) {
    crash_run(rt, "trip", Inputs::new().with("nights", nights), id, &gate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_a_durable_run_of_its_own_and_journals_its_results_by_name() {
    for wrapped in [false, true] {
        let ledger = Ledger::default();
        let rt = runtime(&temp_db(&format!("own-{wrapped}")), &ledger, wrapped);
        let out = rt
            .start("trip", Inputs::new().with("nights", 2_u32))
            .run_id("g1")
            .await
            .unwrap();
        assert_eq!(*out.get::<u32>().unwrap(), 204);
        let child = rt.status("g1/book.1.0").await.unwrap();
        assert_eq!(child.status, RunStatus::Completed);
        let book = if wrapped {
            serde_json::json!(4)
        } else {
            serde_json::json!({"hotel": 2, "flight": 2})
        };
        let parent = rt.journal("g1").await.unwrap();
        assert!(
            parent.records.iter().any(|r| matches!(&r.entry,
                Entry::StepDone { step, nested, value, .. }
                    if step == "book" && nested == &["g1/book.1.0"] && value == &book)),
            "{:?}",
            parent.records
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_inside_a_group_goes_on_where_its_run_stood() {
    for wrapped in [false, true] {
        let path = temp_db(&format!("inside-{wrapped}"));
        let ledger = Ledger::default();
        let gate = ledger.stall_at("flight");
        let rt = runtime(&path, &ledger, wrapped);
        crash_at(&rt, "g2", 3, gate).await;
        drop(rt);
        let rt = runtime(&path, &ledger, wrapped);
        let recovery = rt.recover().await;
        assert!(recovery.skipped.is_empty(), "{:?}", recovery.skipped);
        let out = recovery.finished[0].1.as_ref().unwrap();
        assert_eq!(*out.get::<u32>().unwrap(), 306);
        assert_eq!([ledger.get("hotel"), ledger.get("flight")], [1, 2]);
        let child = rt.journal("g2/book.1.0").await.unwrap();
        assert!(child
            .records
            .iter()
            .any(|r| r.entry == Entry::Resumed { epoch: 2 }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_completed_before_a_crash_is_undone_from_its_journal() {
    for wrapped in [false, true] {
        let path = temp_db(&format!("after-{wrapped}"));
        let ledger = Ledger::default();
        let gate = ledger.stall_at("pay");
        let rt = runtime(&path, &ledger, wrapped);
        crash_at(&rt, "g3", 99, gate).await;
        drop(rt);
        let rt = runtime(&path, &ledger, wrapped);
        let recovery = rt.recover().await;
        let err = recovery.finished[0].1.as_ref().unwrap_err().to_string();
        assert!(err.contains("declined"), "{err}");
        assert_eq!([ledger.get("hotel"), ledger.get("flight")], [1, 1]);
        assert_eq!(
            [ledger.get("undo hotel"), ledger.get("undo flight")],
            [1, 1],
            "wrapped: {wrapped}"
        );
        let child = rt.journal("g3/book.1.0").await.unwrap();
        assert_eq!(undone(&child), ["flight", "hotel"]);
        assert_eq!(rt.status("g3").await.unwrap().status, RunStatus::Failed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_before_all_chooses_its_steps_again_to_undo_them_after_a_crash() {
    let path = temp_db("before");
    let ledger = Ledger::default();
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(choosing_trip(&ledger, false)).unwrap();
    let gate = ledger.stall_at("pay");
    crash_at(&rt, "g4", 1, gate).await;
    drop(rt);
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(choosing_trip(&ledger, false)).unwrap();
    let recovery = rt.recover().await;
    assert!(recovery.finished[0].1.is_err());
    assert_eq!([ledger.get("hotel"), ledger.get("flight")], [0, 1]);
    assert_eq!(
        [ledger.get("undo hotel"), ledger.get("undo flight")],
        [0, 1]
    );
    let child = rt.journal("g4/book.1.0").await.unwrap();
    assert_eq!(undone(&child), ["flight"]);
}

/// A group whose `before_all` keeps only `flight` (or, when `refuse`,
/// fails), then `pay`, declined.
fn choosing_trip(ledger: &Ledger, refuse: bool) -> Reactor {
    let book = group("book")
        .steps([booked(ledger, "hotel"), booked(ledger, "flight")])
        .before_all(move |args, steps| {
            if refuse {
                return Err("no steps today".into());
            }
            Ok((
                args,
                steps.into_iter().filter(|s| s.name() == "flight").collect(),
            ))
        })
        .after_all(|results| Ok(*results["flight"].get::<u32>()?))
        .into_step()
        .unwrap()
        .output::<u32>()
        .argument("nights", input("nights"));
    Reactor::builder("trip")
        .input_as::<u32>("nights")
        .add(book)
        .add({
            let l = ledger.clone();
            step("pay")
                .argument("n", result("book"))
                .output::<u32>()
                .run(move |_, _| {
                    let l = l.clone();
                    async move {
                        l.hit("pay".into()).await;
                        Err::<u32, _>("the card was declined".into())
                    }
                })
        })
        .returns("pay")
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_steps_cannot_be_rebuilt_to_undo_them_fails_its_undo_loudly() {
    let path = temp_db("unrebuildable");
    let ledger = Ledger::default();
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(choosing_trip(&ledger, false)).unwrap();
    let gate = ledger.stall_at("pay");
    crash_at(&rt, "g5", 1, gate).await;
    drop(rt);
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(choosing_trip(&ledger, true)).unwrap();
    let recovery = rt.recover().await;
    let err = format!("{:?}", recovery.finished[0].1.as_ref().unwrap_err());
    assert!(
        err.contains("cannot be undone") && err.contains("no steps today"),
        "{err}"
    );
    // Nothing undone in silence: the flight stays booked, and the run says so.
    assert_eq!(ledger.get("undo flight"), 0);
    assert_eq!(rt.status("g5").await.unwrap().status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_group_or_around_the_journal_cannot_hold_names_it() {
    let rt = Runtime::new(reactor::journal::MemoryStore::new());
    let untyped = Reactor::builder("untyped")
        .add(
            group("g")
                .steps([step("s").run_sync(|_, _| Ok(1_u32))])
                .into_step()
                .unwrap(),
        )
        .returns("g")
        .build()
        .unwrap();
    let err = rt.register(untyped).unwrap_err().to_string();
    assert!(
        err.contains("step `g` (group) nests steps the journal cannot hold: step `s` has no declared result type"),
        "{err}"
    );
    let undeclared = Reactor::builder("undeclared")
        .add(
            around(
                "a",
                [step("s").output::<u32>().run_sync(|_, _| Ok(1_u32))],
                |args, _, steps, nested| async move {
                    nested.run(&args, steps).await?;
                    Ok(1_u32)
                },
            )
            .unwrap(),
        )
        .returns("a")
        .build()
        .unwrap();
    let err = rt.register(undeclared).unwrap_err().to_string();
    assert!(
        err.contains("step `a` has no declared result type"),
        "{err}"
    );
}
