//! Durable runs on a real SQLite file: the journal a run writes, the
//! write-ahead rule, sagas, halts, idempotency keys, definitions that
//! changed, and runs taken up again after their driver was dropped
//! mid-run (the in-process stand-in for a crash; `tests/crash_matrix.rs`
//! kills real processes).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use reactor::durable::Runtime;
use reactor::journal::{Entry, RunEnd, RunStatus, SqliteStore, Store};
use reactor::{input, result, step, Error, Inputs, Outcome, Reactor};

mod common;
use common::failing_store::FailingStore;

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reactor-durable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("journal.db")
}

/// Counts calls per name: runs and undos.
#[derive(Clone, Default)]
struct Ledger(Arc<Mutex<BTreeMap<String, u32>>>);

impl Ledger {
    fn hit(&self, what: String) {
        *self.0.lock().unwrap().entry(what).or_default() += 1;
    }
    fn get(&self, what: &str) -> u32 {
        self.0.lock().unwrap().get(what).copied().unwrap_or(0)
    }
}

/// reserve -> charge -> ship; ship fails when `fail_ship` is set.
fn checkout(ledger: &Ledger, fail_ship: bool) -> Reactor {
    saga(ledger, fail_ship, None)
}

/// The checkout, stalling forever once after telling `gate`: in `ship`
/// (when it does not fail), or in the undo of `charge` (when it does).
fn stalling_checkout(ledger: &Ledger, gate: Arc<tokio::sync::Notify>, in_undo: bool) -> Reactor {
    saga(ledger, in_undo, Some(gate))
}

/// Waits forever, after telling `gate`, the first time `what` is counted.
async fn stall_once(ledger: &Ledger, what: &str, gate: &Option<Arc<tokio::sync::Notify>>) {
    if let (Some(gate), 1) = (gate, ledger.get(what)) {
        gate.notify_one();
        std::future::pending::<()>().await;
    }
}

fn saga(ledger: &Ledger, fail_ship: bool, gate: Option<Arc<tokio::sync::Notify>>) -> Reactor {
    let (l, lu, c, cu, s) = (
        ledger.clone(),
        ledger.clone(),
        ledger.clone(),
        ledger.clone(),
        ledger.clone(),
    );
    let (undo_gate, ship_gate) = match fail_ship {
        true => (gate, None),
        false => (None, gate),
    };
    Reactor::builder("checkout")
        .input_as::<u32>("qty")
        .add(
            step("reserve")
                .argument("qty", input("qty"))
                .output::<u32>()
                .run(move |a, _| {
                    let l = l.clone();
                    async move {
                        l.hit("reserve".into());
                        Ok(*a.get::<u32>("qty")?)
                    }
                })
                .undo(move |_, _, _| {
                    let lu = lu.clone();
                    async move {
                        lu.hit("undo reserve".into());
                        Ok(())
                    }
                }),
        )
        .add(
            step("charge")
                .argument("qty", result("reserve"))
                .output::<u64>()
                .run(move |a, _| {
                    let c = c.clone();
                    async move {
                        c.hit("charge".into());
                        Ok(u64::from(*a.get::<u32>("qty")?) * 250)
                    }
                })
                .undo(move |v, a, _| {
                    let (cu, gate) = (cu.clone(), undo_gate.clone());
                    async move {
                        // Undo sees the journalled result and rebuilt arguments.
                        assert_eq!(u64::from(*a.get::<u32>("qty")?) * 250, *v.get::<u64>()?);
                        cu.hit("undo charge".into());
                        stall_once(&cu, "undo charge", &gate).await;
                        Ok(())
                    }
                }),
        )
        .add(
            step("ship")
                .argument("paid", result("charge"))
                .output::<String>()
                .max_retries(0)
                .run(move |a, _| {
                    let (s, gate) = (s.clone(), ship_gate.clone());
                    async move {
                        s.hit("ship".into());
                        if fail_ship {
                            return Err("the carrier is down".into());
                        }
                        stall_once(&s, "ship", &gate).await;
                        Ok(format!("shipped, paid {}", a.get::<u64>("paid")?))
                    }
                }),
        )
        .returns("ship")
        .build()
        .unwrap()
}

fn kinds(entries: &[reactor::journal::Record]) -> Vec<&'static str> {
    entries.iter().map(|r| r.entry.kind()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_run_journals_one_record_per_step() {
    let path = temp_db("happy");
    let ledger = Ledger::default();
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(checkout(&ledger, false)).unwrap();
    let out = rt
        .start("checkout", Inputs::new().with("qty", 2_u32))
        .run_id("order-1")
        .await
        .unwrap();
    assert_eq!(out.get::<String>().unwrap(), "shipped, paid 500");
    let journal = rt.journal("order-1").await.unwrap();
    assert_eq!(
        kinds(&journal.records),
        [
            "run_started",
            "step_done",
            "step_done",
            "step_done",
            "run_ended"
        ]
    );
    assert_eq!(journal.run.status, RunStatus::Completed);
    assert_eq!(
        rt.result("order-1")
            .await
            .unwrap()
            .unwrap()
            .get::<String>()
            .unwrap(),
        "shipped, paid 500"
    );
    // Taking up an ended run returns how it ended, running nothing.
    let again = rt.resume("order-1").await.unwrap();
    assert_eq!(again.get::<String>().unwrap(), "shipped, paid 500");
    assert_eq!(ledger.get("reserve"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_saga_journals_its_unwinding_and_each_undo() {
    let path = temp_db("saga");
    let ledger = Ledger::default();
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(checkout(&ledger, true)).unwrap();
    let err = rt
        .start("checkout", Inputs::new().with("qty", 1_u32))
        .run_id("order-2")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("carrier is down"), "{err}");
    let journal = rt.journal("order-2").await.unwrap();
    assert_eq!(
        kinds(&journal.records),
        [
            "run_started",
            "step_done",
            "step_done",
            "unwinding",
            "undone",
            "undone",
            "run_ended"
        ]
    );
    match &journal.records[3].entry {
        Entry::Unwinding { errors, undo } => {
            assert_eq!(errors[0].step, "ship");
            let steps: Vec<_> = undo.iter().map(|u| u.step.as_str()).collect();
            assert_eq!(steps, ["charge", "reserve"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(journal.run.status, RunStatus::Failed);
    assert_eq!(
        (ledger.get("undo charge"), ledger.get("undo reserve")),
        (1, 1)
    );
    // Taken up again, it reports its failure and undoes nothing more.
    assert!(rt.resume("order-2").await.is_err());
    assert_eq!(ledger.get("undo reserve"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_starts_only_once_its_dependencies_are_durable() {
    let path = temp_db("wal");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let seen = store.clone();
    let r = Reactor::builder("w")
        .add(step("a").output::<u32>().run(|_, _| async { Ok(1_u32) }))
        .add(step("b").output::<u32>().run(|_, _| async { Ok(2_u32) }))
        .add(
            step("c")
                .argument("a", result("a"))
                .argument("b", result("b"))
                .output::<Vec<String>>()
                .run(move |_, ctx| {
                    let seen = seen.clone();
                    async move {
                        let j = seen.load(ctx.run_id()).await.unwrap();
                        Ok(j.records
                            .iter()
                            .filter_map(|r| match &r.entry {
                                Entry::StepDone { step, .. } => Some(step.clone()),
                                _ => None,
                            })
                            .collect::<Vec<_>>())
                    }
                }),
        )
        .returns("c")
        .build()
        .unwrap();
    let rt = Runtime::with_store(store);
    rt.register(r).unwrap();
    let out = rt.start("w", Inputs::new()).await.unwrap();
    let mut durable = out.get::<Vec<String>>().unwrap().clone();
    durable.sort();
    assert_eq!(durable, ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_names_what_the_journal_cannot_encode() {
    let rt = Runtime::new(reactor::journal::MemoryStore::new());
    let untyped_step = Reactor::builder("r1")
        .add(step("loose").run_sync(|_, _| Ok(1_u32)))
        .returns("loose")
        .build()
        .unwrap();
    let err = rt.register(untyped_step).unwrap_err().to_string();
    assert!(
        err.contains("step `loose`") && err.contains(".output::<T>()"),
        "{err}"
    );
    let untyped_input = Reactor::builder("r2")
        .input("x")
        .add(
            step("s")
                .argument("x", input("x"))
                .output::<u32>()
                .run_sync(|_, _| Ok(1_u32)),
        )
        .returns("s")
        .build()
        .unwrap();
    let err = rt.register(untyped_input).unwrap_err().to_string();
    assert!(
        err.contains("input `x`") && err.contains("input_as"),
        "{err}"
    );
    let nested = Reactor::builder("r3")
        .input_as::<Vec<u32>>("xs")
        .add(
            reactor::kinds::map("each", input("xs"))
                .steps([step("inc")
                    .argument("x", reactor::kinds::element("each"))
                    .run_sync(|_, _| Ok(1_u32))])
                .returns("inc")
                .into_step()
                .unwrap(),
        )
        .returns("each")
        .build()
        .unwrap();
    let err = rt.register(nested).unwrap_err().to_string();
    assert!(
        err.contains("step `each` is a map whose step `inc` has no declared result type"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_of_another_type_fails_its_step_naming_both() {
    let rt = Runtime::new(reactor::journal::MemoryStore::new());
    let r = Reactor::builder("liar")
        .add(
            step("s")
                .output::<u32>()
                .run_sync(|_, _| Ok("not a number")),
        )
        .returns("s")
        .build()
        .unwrap();
    rt.register(r).unwrap();
    let err = rt
        .start("liar", Inputs::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("u32") && err.contains("&str"), "{err}");
    let err = rt
        .start("liar", Inputs::new().with("extra", 1))
        .run_id("x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Run(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_starts_one_run() {
    let ledger = Ledger::default();
    let rt = Runtime::new(SqliteStore::open(temp_db("idem")).unwrap());
    rt.register(checkout(&ledger, false)).unwrap();
    let first = rt
        .start("checkout", Inputs::new().with("qty", 1_u32))
        .idempotency_key("cart-9")
        .await
        .unwrap();
    let second = rt
        .start("checkout", Inputs::new().with("qty", 1_u32))
        .idempotency_key("cart-9")
        .await
        .unwrap();
    assert_eq!(
        first.get::<String>().unwrap(),
        second.get::<String>().unwrap()
    );
    assert_eq!(ledger.get("reserve"), 1);
    assert_eq!(rt.runs(None).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_run_resumes_by_id_in_another_runtime() {
    let path = temp_db("halt");
    let halts = Arc::new(AtomicU32::new(0));
    let build = |halts: Arc<AtomicU32>| {
        Reactor::builder("h")
            .input_as::<String>("who")
            .add(
                step("first")
                    .argument("who", input("who"))
                    .output::<String>()
                    .run_sync(|a, _| Ok(format!("hello {}", a.get::<String>("who")?))),
            )
            .add(
                step("gate")
                    .argument("greeting", result("first"))
                    .output::<String>()
                    .run_sync(move |a, _| {
                        let g = a.get::<String>("greeting")?.clone();
                        if halts.fetch_add(1, Ordering::SeqCst) == 0 {
                            return Ok(Outcome::Halt(reactor::Value::new(g)));
                        }
                        Ok(Outcome::ok(format!("{g}!")))
                    }),
            )
            .add(
                step("last")
                    .argument("g", result("gate"))
                    .output::<String>()
                    .run_sync(|a, _| Ok(format!("{} (done)", a.get::<String>("g")?))),
            )
            .returns("last")
            .build()
            .unwrap()
    };
    {
        let rt = Runtime::new(SqliteStore::open(&path).unwrap());
        rt.register(build(halts.clone())).unwrap();
        let err = rt
            .start("h", Inputs::new().with("who", "ann".to_string()))
            .run_id("h1")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("halted"), "{err}");
        assert_eq!(rt.status("h1").await.unwrap().status, RunStatus::Halted);
    }
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(build(halts.clone())).unwrap();
    // Recovery leaves halted runs alone.
    let recovery = rt.recover().await;
    assert_eq!(recovery.halted, ["h1"]);
    assert!(recovery.finished.is_empty());
    let out = rt.resume("h1").await.unwrap();
    // The halting step completed with its value; it does not run again.
    assert_eq!(out.get::<String>().unwrap(), "hello ann (done)");
    assert_eq!(halts.load(Ordering::SeqCst), 1);
    let journal = rt.journal("h1").await.unwrap();
    assert!(journal
        .records
        .iter()
        .any(|r| r.entry == Entry::Resumed { epoch: 2 }));
}

/// Starts a run in a task and drops it (aborts the task) once `gate` is
/// reached: what a crash leaves in the journal.
async fn crash_at_gate(rt: &Runtime, reactor: &str, id: &str, gate: Arc<tokio::sync::Notify>) {
    let rt2 = rt.clone();
    let (reactor, id2) = (reactor.to_string(), id.to_string());
    let task = tokio::spawn(async move {
        rt2.start(&reactor, Inputs::new().with("qty", 3_u32))
            .run_id(id2)
            .await
    });
    gate.notified().await;
    task.abort();
    let _ = task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_is_taken_up_without_running_completed_steps_again() {
    let path = temp_db("crash-run");
    let ledger = Ledger::default();
    let gate = Arc::new(tokio::sync::Notify::new());
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(stalling_checkout(&ledger, gate.clone(), false))
        .unwrap();
    crash_at_gate(&rt, "checkout", "c1", gate.clone()).await;
    assert_eq!(rt.status("c1").await.unwrap().status, RunStatus::Running);

    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(stalling_checkout(&ledger, gate, false))
        .unwrap();
    let recovery = rt.recover().await;
    assert!(recovery.skipped.is_empty(), "{:?}", recovery.skipped);
    let (id, out) = &recovery.finished[0];
    assert_eq!(id, "c1");
    assert_eq!(
        out.as_ref().unwrap().get::<String>().unwrap(),
        "shipped, paid 750"
    );
    assert_eq!((ledger.get("reserve"), ledger.get("charge")), (1, 1));
    assert_eq!(ledger.get("ship"), 2, "the step in flight runs again");
    let journal = rt.journal("c1").await.unwrap();
    assert!(journal
        .records
        .iter()
        .any(|r| r.entry == Entry::Resumed { epoch: 2 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_unwinding_goes_on_undoing_each_step_once() {
    let path = temp_db("crash-undo");
    let ledger = Ledger::default();
    let gate = Arc::new(tokio::sync::Notify::new());
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(stalling_checkout(&ledger, gate.clone(), true))
        .unwrap();
    crash_at_gate(&rt, "checkout", "c2", gate.clone()).await;
    assert_eq!(rt.status("c2").await.unwrap().status, RunStatus::Unwinding);

    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(stalling_checkout(&ledger, gate, true)).unwrap();
    let recovery = rt.recover().await;
    let (_, out) = &recovery.finished[0];
    let err = out.as_ref().unwrap_err().to_string();
    assert!(err.contains("carrier is down"), "{err}");
    // The undo the crash cut short runs again (undo is at least once);
    // reserve, never started, is undone once; nothing runs forward.
    assert_eq!(
        (ledger.get("undo charge"), ledger.get("undo reserve")),
        (2, 1)
    );
    assert_eq!(ledger.get("ship"), 1);
    let journal = rt.journal("c2").await.unwrap();
    assert_eq!(journal.run.status, RunStatus::Failed);
    let undone: Vec<_> = journal
        .records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Undone { step, .. } => Some(step.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(undone, ["charge", "reserve"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_definition_is_refused_naming_the_change_and_others_go_on() {
    let path = temp_db("drift");
    let ledger = Ledger::default();
    let gate = Arc::new(tokio::sync::Notify::new());
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(stalling_checkout(&ledger, gate.clone(), false))
        .unwrap();
    crash_at_gate(&rt, "checkout", "old", gate.clone()).await;
    let other = Reactor::builder("other")
        .add(step("one").output::<u8>().run_sync(|_, _| Ok(1_u8)))
        .returns("one")
        .build()
        .unwrap();
    rt.register(other.clone()).unwrap();
    // A run of another reactor, interrupted before it did anything.
    rt.store()
        .create_run(reactor::journal::NewRun {
            id: "fine".into(),
            reactor: "other".into(),
            idempotency_key: None,
            first: rt.journal("old").await.map(|_| ()).map_or_else(
                |_| unreachable!(),
                |_| {
                    reactor::journal::Record::new(
                        0,
                        Entry::RunStarted {
                            reactor: "other".into(),
                            def_hash: String::new(),
                            definition: vec![],
                            inputs: Default::default(),
                            idempotency_key: None,
                        },
                    )
                },
            ),
            queued: false,
        })
        .await
        .unwrap();

    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    let changed = Reactor::builder("checkout")
        .input_as::<u32>("qty")
        .add(
            step("reserve")
                .argument("qty", input("qty"))
                .output::<u64>()
                .run_sync(|_, _| Ok(1_u64)),
        )
        .returns("reserve")
        .build()
        .unwrap();
    rt.register(changed).unwrap();
    rt.register(other).unwrap();
    let recovery = rt.recover().await;
    let skipped: Vec<_> = recovery
        .skipped
        .iter()
        .map(|(id, e)| (id.as_str(), e.to_string()))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    let old = &skipped.iter().find(|(id, _)| *id == "old").unwrap().1;
    assert!(
        old.contains("another definition") && old.contains("reserve"),
        "{old}"
    );
    assert!(matches!(
        rt.resume("old").await,
        Err(Error::DefinitionChanged { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_journal_is_reported_and_the_other_runs_recover() {
    let path = temp_db("corrupt");
    let ledger = Ledger::default();
    let gate = Arc::new(tokio::sync::Notify::new());
    for id in ["bad", "good"] {
        // A ledger each: each run stalls on its first `ship`.
        let rt = Runtime::new(SqliteStore::open(&path).unwrap());
        rt.register(stalling_checkout(&Ledger::default(), gate.clone(), false))
            .unwrap();
        crash_at_gate(&rt, "checkout", id, gate.clone()).await;
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE reactor_journal SET body = 'garbage' WHERE run_id = 'bad' AND seq = 1",
        [],
    )
    .unwrap();
    drop(raw);
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    // This ledger's `ship` has stalled once already: it does not again.
    ledger.hit("ship".into());
    rt.register(stalling_checkout(&ledger, gate, false))
        .unwrap();
    let recovery = rt.recover().await;
    assert_eq!(recovery.skipped.len(), 1);
    assert_eq!(recovery.skipped[0].0, "bad");
    assert!(recovery.skipped[0].1.to_string().contains("corrupt"));
    assert_eq!(recovery.finished.len(), 1);
    assert!(recovery.finished[0].1.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_undoes_what_it_did() {
    let path = temp_db("cancel");
    let ledger = Ledger::default();
    let gate = Arc::new(tokio::sync::Notify::new());
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(stalling_checkout(&ledger, gate.clone(), false))
        .unwrap();
    crash_at_gate(&rt, "checkout", "c3", gate).await;
    rt.cancel("c3").await.unwrap();
    assert_eq!(
        (ledger.get("undo charge"), ledger.get("undo reserve")),
        (1, 1)
    );
    let journal = rt.journal("c3").await.unwrap();
    assert_eq!(journal.run.status, RunStatus::Cancelled);
    assert!(matches!(
        journal.records.last().map(|r| &r.entry),
        Some(Entry::RunEnded {
            end: RunEnd::Cancelled
        })
    ));
    assert!(rt
        .resume("c3")
        .await
        .unwrap_err()
        .to_string()
        .contains("cancelled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_migration_lets_runs_of_an_old_definition_go_on() {
    let path = temp_db("migrate");
    let ledger = Ledger::default();
    let gate = Arc::new(tokio::sync::Notify::new());
    let v1 = |ledger: &Ledger, gate: Arc<tokio::sync::Notify>| {
        let (l, g) = (ledger.clone(), gate);
        let mut b = Reactor::builder("m");
        b.input_as::<u32>("qty")
            .add(
                step("a")
                    .argument("q", input("qty"))
                    .output::<u32>()
                    .run_sync(move |a, _| {
                        l.hit("a".into());
                        Ok(*a.get::<u32>("q")?)
                    }),
            )
            .add(
                step("b")
                    .argument("a", result("a"))
                    .output::<u32>()
                    .run(move |a, _| {
                        let g = g.clone();
                        let first = a.get::<u32>("a").copied();
                        async move {
                            g.notify_one();
                            std::future::pending::<()>().await;
                            first.map_err(Into::into)
                        }
                    }),
            )
            .returns("b");
        b
    };
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(v1(&ledger, gate.clone()).build().unwrap())
        .unwrap();
    crash_at_gate(&rt, "m", "m1", gate).await;
    let old_hash = match &rt.journal("m1").await.unwrap().records[0].entry {
        Entry::RunStarted { def_hash, .. } => def_hash.clone(),
        other => panic!("{other:?}"),
    };

    // v2: `b` no longer stalls, and a step `c` is added.
    let v2 = Reactor::builder("m")
        .input_as::<u32>("qty")
        .add(
            step("a")
                .argument("q", input("qty"))
                .output::<u32>()
                .run_sync(|_, _| Ok(0_u32)),
        )
        .add(
            step("b")
                .argument("a", result("a"))
                .output::<u32>()
                .run_sync(|a, _| Ok(*a.get::<u32>("a")? * 10)),
        )
        .add(
            step("c")
                .argument("b", result("b"))
                .output::<u32>()
                .run_sync(|a, _| Ok(*a.get::<u32>("b")? + 1)),
        )
        .returns("c")
        .build()
        .unwrap();
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(v2).unwrap();
    let refused = rt.resume("m1").await.unwrap_err().to_string();
    assert!(
        refused.contains("`returns b` is now `returns c`") && refused.contains(&old_hash),
        "{refused}"
    );
    rt.migrate("m", old_hash);
    let out = rt.resume("m1").await.unwrap();
    // `a` completed under v1 (3), and does not run again.
    assert_eq!(*out.get::<u32>().unwrap(), 31);
    assert_eq!(ledger.get("a"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_id_in_use_is_refused_at_once() {
    let ledger = Ledger::default();
    let rt = Runtime::new(SqliteStore::open(temp_db("reuse")).unwrap());
    rt.register(checkout(&ledger, false)).unwrap();
    rt.start("checkout", Inputs::new().with("qty", 1_u32))
        .run_id("same")
        .await
        .unwrap();
    let err = rt
        .start("checkout", Inputs::new().with("qty", 1_u32))
        .run_id("same")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already in the journal store"), "{err}");
    assert_eq!(ledger.get("reserve"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_a_guard_skipped_is_not_undone_after_a_resume() {
    let path = temp_db("skip");
    let ledger = Ledger::default();
    let build = |ledger: &Ledger, fail: bool| {
        let lu = ledger.clone();
        Reactor::builder("g")
            .add(
                step("cached")
                    .output::<u32>()
                    .guard(|_, _| reactor::Guard::Skip(Outcome::ok(7_u32)))
                    .run_sync(|_, _| Ok(1_u32))
                    .undo(move |_, _, _| {
                        let lu = lu.clone();
                        async move {
                            lu.hit("undo cached".into());
                            Ok(())
                        }
                    }),
            )
            .add(
                step("pause")
                    .argument("c", result("cached"))
                    .output::<u32>()
                    .run_sync(|a, _| Ok(Outcome::Halt(reactor::Value::new(*a.get::<u32>("c")?)))),
            )
            .add(
                step("last")
                    .argument("p", result("pause"))
                    .output::<u32>()
                    .max_retries(0)
                    .run_sync(move |_, _| if fail { Err("no".into()) } else { Ok(0_u32) }),
            )
            .returns("last")
            .build()
            .unwrap()
    };
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(build(&ledger, true)).unwrap();
    assert!(rt.start("g", Inputs::new()).run_id("g1").await.is_err());
    assert!(rt.resume("g1").await.is_err());
    assert_eq!(ledger.get("undo cached"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_journal_fails_stops_without_undoing_and_is_taken_up_later() {
    let ledger = Ledger::default();
    let inner = Arc::new(reactor::journal::MemoryStore::new());
    // reserve and charge are journalled; ship's failure cannot be.
    let failing = FailingStore::new(inner.clone(), 2);
    let rt = Runtime::new(failing);
    rt.register(checkout(&ledger, true)).unwrap();
    let err = rt
        .start("checkout", Inputs::new().with("qty", 1_u32))
        .run_id("j1")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("the journal failed"), "{err}");
    assert_eq!(
        (ledger.get("undo charge"), ledger.get("undo reserve")),
        (0, 0)
    );
    assert_eq!(
        inner.load("j1").await.unwrap().run.status,
        RunStatus::Running
    );

    let rt = Runtime::with_store(inner.clone());
    rt.register(checkout(&ledger, true)).unwrap();
    let recovery = rt.recover().await;
    assert!(recovery.finished[0].1.is_err());
    assert_eq!(
        (ledger.get("undo charge"), ledger.get("undo reserve")),
        (1, 1)
    );
    assert_eq!(
        inner.load("j1").await.unwrap().run.status,
        RunStatus::Failed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_state_saved_as_json_resumes_and_undoes_with_rebuilt_arguments() {
    let ledger = Ledger::default();
    let build = |ledger: &Ledger| {
        let lu = ledger.clone();
        Reactor::builder("saved")
            .input_as::<u32>("qty")
            .add(
                step("reserve")
                    .argument("qty", input("qty"))
                    .output::<u32>()
                    .run_sync(|a, _| Ok(*a.get::<u32>("qty")? * 2))
                    .undo(move |v, a, _| {
                        let lu = lu.clone();
                        async move {
                            lu.hit(format!(
                                "undo {} of {}",
                                v.get::<u32>()?,
                                a.get::<u32>("qty")?
                            ));
                            Ok(())
                        }
                    }),
            )
            .add(
                step("pause")
                    .argument("r", result("reserve"))
                    .output::<u32>()
                    .run_sync(|a, _| Ok(Outcome::Halt(reactor::Value::new(*a.get::<u32>("r")?)))),
            )
            .add(
                step("last")
                    .argument("p", result("pause"))
                    .output::<u32>()
                    .max_retries(0)
                    .run_sync(|_, _| Err::<u32, _>("declined".into())),
            )
            .returns("last")
            .build()
            .unwrap()
    };
    let first = build(&ledger);
    let halted = first
        .run(Inputs::new().with("qty", 5_u32))
        .outcome()
        .await
        .unwrap()
        .halted()
        .unwrap();
    let saved = halted.into_state().to_json(&first).unwrap().to_string();

    let second = build(&ledger);
    let state =
        reactor::RunState::from_json(&second, serde_json::from_str(&saved).unwrap()).unwrap();
    assert!(second.resume(state).await.is_err());
    assert_eq!(ledger.get("undo 10 of 5"), 1);

    // Another definition refuses the saved state, naming the change.
    let other = Reactor::builder("saved")
        .input_as::<u64>("qty")
        .add(step("last").output::<u32>().run_sync(|_, _| Ok(1_u32)))
        .returns("last")
        .build()
        .unwrap();
    let err = reactor::RunState::from_json(&other, serde_json::from_str(&saved).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input qty: u32") && err.contains("u64"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_cancelled_by_id_unwinds_and_ends_cancelled() {
    let ledger = Ledger::default();
    let gate = Arc::new(tokio::sync::Notify::new());
    let rt = Runtime::new(SqliteStore::open(temp_db("cancel-live")).unwrap());
    rt.register(stalling_checkout(&ledger, gate.clone(), false))
        .unwrap();
    // The stalled step is abandoned at once when the run stops.
    rt.configure(|r| r.halt_timeout(std::time::Duration::ZERO));
    let rt2 = rt.clone();
    let run = tokio::spawn(async move {
        rt2.start("checkout", Inputs::new().with("qty", 2_u32))
            .run_id("live")
            .await
    });
    gate.notified().await;
    rt.cancel("live").await.unwrap();
    let err = run.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("cancelled"), "{err}");
    assert_eq!(
        (ledger.get("undo charge"), ledger.get("undo reserve")),
        (1, 1)
    );
    assert_eq!(
        rt.status("live").await.unwrap().status,
        RunStatus::Cancelled
    );
    // Cancelling it again: it has ended.
    assert!(rt.cancel("live").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_unwinding_without_errors_still_unwinds_when_taken_up() {
    use reactor::journal::{NewRun, Record, UndoItem};
    let ledger = Ledger::default();
    let store = Arc::new(reactor::journal::MemoryStore::new());
    let rt = Runtime::with_store(store.clone());
    rt.register(checkout(&ledger, false)).unwrap();
    // The start record as the runtime writes it, from a real run.
    rt.start("checkout", Inputs::new().with("qty", 1_u32))
        .run_id("probe")
        .await
        .unwrap();
    let first = rt.journal("probe").await.unwrap().records[0].entry.clone();
    let done = |seq, step: &str, value| {
        Record::new(
            seq,
            Entry::StepDone {
                step: step.into(),
                attempt: 1,
                value,
                skipped: false,
                emitted: Vec::new(),
                nested: Vec::new(),
            },
        )
    };
    store
        .create_run(NewRun {
            id: "u1".into(),
            reactor: "checkout".into(),
            idempotency_key: None,
            first: Record::new(0, first),
            queued: false,
        })
        .await
        .unwrap();
    let undo = ["charge", "reserve"].map(|s| UndoItem {
        step: s.into(),
        abandoned: false,
    });
    store
        .append(
            "u1",
            1,
            &[
                done(1, "reserve", serde_json::json!(1)),
                done(2, "charge", serde_json::json!(250)),
                Record::new(
                    3,
                    Entry::Unwinding {
                        errors: vec![],
                        undo: undo.to_vec(),
                    },
                ),
            ],
        )
        .await
        .unwrap();
    let recovery = rt.recover().await;
    assert!(recovery.finished[0].1.is_err());
    assert_eq!(
        (ledger.get("undo charge"), ledger.get("undo reserve")),
        (1, 1)
    );
    assert_eq!(rt.status("u1").await.unwrap().status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_step_name_holding_an_id_separator_is_refused() {
    let rt = Runtime::new(reactor::journal::MemoryStore::new());
    for name in ["a~1", "a/b"] {
        let r = Reactor::builder("separators")
            .add(step(name).output::<u32>().run_sync(|_, _| Ok(1_u32)))
            .returns(name)
            .build()
            .unwrap();
        let err = rt.register(r).unwrap_err().to_string();
        assert!(err.contains(&format!("step `{name}` has")), "{err}");
        let err = rt.steps().make("any", name, ()).unwrap_err().to_string();
        assert!(err.contains("separator"), "{err}");
    }
}

/// Steps that end at once in the coordinator are journalled in batches,
/// as the reports of tasks are: one commit for many steps, not one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_ending_in_the_coordinator_share_their_commits() {
    let store = FailingStore::new(Arc::new(reactor::journal::MemoryStore::new()), u32::MAX);
    let appends = store.appends.clone();
    let rt = Runtime::new(store);
    let mut b = Reactor::builder("fan");
    let mut all = step("all").output::<u32>();
    for i in 0..64_u32 {
        b.add(
            step(format!("s{i}"))
                .output::<u32>()
                .run(move |_, _| async move { Ok(i) }),
        );
        all = all.argument(format!("s{i}"), result(format!("s{i}")));
    }
    b.add(all.run_sync(|args, _| Ok(args.len() as u32)));
    b.returns("all");
    rt.register(b.build().unwrap()).unwrap();
    let value = rt.start("fan", Inputs::new()).await.unwrap();
    assert_eq!(*value.get::<u32>().unwrap(), 64);
    let appends = appends.load(Ordering::SeqCst);
    assert!(appends <= 12, "{appends} commits for 65 steps");
}
