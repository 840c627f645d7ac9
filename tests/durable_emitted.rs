//! Steps emitted at run time in durable runs: journalled as data through
//! the step registry, rebuilt after a crash (new steps and replacements),
//! undone with their own arguments, and refused, naming the step, when no
//! registered kind rebuilds them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use reactor::durable::{Runtime, StepRegistry};
use reactor::journal::{Entry, RunStatus, SqliteStore};
use reactor::{input, step, value, Inputs, Outcome, Reactor, StepSpec};
use tokio::sync::Notify;

mod common;
use common::stall::{crash_run, crash_when, Ledger};

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reactor-emitted-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("journal.db")
}

/// The kind `ship`: ships parcel `p` (failing for parcel 99), undone by
/// name and argument.
fn ship_kind(ledger: &Ledger) -> impl Fn(&str, u32) -> StepSpec + Send + Sync + 'static {
    let ledger = ledger.clone();
    move |name: &str, parcel: u32| {
        let (l, u) = (ledger.clone(), ledger.clone());
        step(name)
            .argument("parcel", value(parcel))
            .output::<u32>()
            .run(move |a, ctx| {
                let l = l.clone();
                async move {
                    let p = *a.get::<u32>("parcel")?;
                    l.hit(format!("ship {p}")).await;
                    if p == 99 {
                        return Err(
                            format!("parcel {p} is lost ({})", ctx.idempotency_key()).into()
                        );
                    }
                    Ok(Outcome::ok(p))
                }
            })
            .undo(move |_v, a, _ctx| {
                let u = u.clone();
                async move {
                    u.hit(format!("undo ship {}", a.get::<u32>("parcel")?))
                        .await;
                    Ok(())
                }
            })
    }
}

/// `plan` emits one `ship` step per parcel of its input.
fn shipping(ledger: &Ledger, steps: &StepRegistry) -> Reactor {
    let (steps, l) = (steps.clone(), ledger.clone());
    Reactor::builder("shipping")
        .input_as::<Vec<u32>>("parcels")
        .add(
            step("plan")
                .argument("parcels", input("parcels"))
                .output::<u32>()
                .run(move |a, _| {
                    let (steps, l) = (steps.clone(), l.clone());
                    async move {
                        l.hit("plan".into()).await;
                        let parcels = a.get::<Vec<u32>>("parcels")?.clone();
                        let emitted = parcels
                            .iter()
                            .map(|p| steps.make("ship", &format!("ship_{p}"), p))
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(Outcome::with_steps(parcels.len() as u32, emitted))
                    }
                }),
        )
        .returns("plan")
        .build()
        .unwrap()
}

fn runtime(path: &std::path::Path, ledger: &Ledger) -> Runtime {
    let rt = Runtime::new(SqliteStore::open(path).unwrap());
    rt.register_step("ship", ship_kind(ledger));
    let steps = rt.steps().clone();
    rt.register(shipping(ledger, &steps)).unwrap();
    rt
}

/// Starts run `id` in a task and aborts it once `gate` is told.
async fn crash_at(rt: &Runtime, id: &str, parcels: Vec<u32>, gate: Arc<Notify>) {
    crash_run(
        rt,
        "shipping",
        Inputs::new().with("parcels", parcels),
        id,
        &gate,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emitted_steps_are_journalled_and_rebuilt_after_a_crash() {
    let path = temp_db("rebuilt");
    let ledger = Ledger::default();
    let gate = ledger.stall_at("ship 2");
    let rt = runtime(&path, &ledger);
    crash_at(&rt, "s1", vec![1, 2, 3], gate).await;
    drop(rt);
    let journal_before = {
        let rt = runtime(&path, &ledger);
        rt.journal("s1").await.unwrap()
    };
    // The emitter's record carries its emitted steps as data.
    let emitted: Vec<_> = journal_before
        .records
        .iter()
        .find_map(|r| match &r.entry {
            Entry::StepDone { step, emitted, .. } if step == "plan" => Some(emitted.clone()),
            _ => None,
        })
        .unwrap();
    let names: Vec<_> = emitted
        .iter()
        .map(|e| (e.name.as_str(), e.kind.as_str()))
        .collect();
    assert_eq!(
        names,
        [("ship_1", "ship"), ("ship_2", "ship"), ("ship_3", "ship")]
    );

    let rt = runtime(&path, &ledger);
    let recovery = rt.recover().await;
    assert!(recovery.skipped.is_empty(), "{:?}", recovery.skipped);
    assert_eq!(
        *recovery.finished[0]
            .1
            .as_ref()
            .unwrap()
            .get::<u32>()
            .unwrap(),
        3
    );
    // The emitter never runs again; the step in flight does.
    assert_eq!(ledger.get("plan"), 1);
    assert_eq!(ledger.get("ship 2"), 2);
    assert!(ledger.get("ship 1") <= 2 && ledger.get("ship 3") <= 2);
    assert_eq!(rt.status("s1").await.unwrap().status, RunStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_failing_after_a_crash_undoes_emitted_steps_with_their_arguments() {
    let path = temp_db("undo");
    let ledger = Ledger::default();
    let gate = ledger.stall_at("ship 99");
    let rt = runtime(&path, &ledger);
    crash_at(&rt, "s2", vec![4, 5, 99], gate).await;
    drop(rt);
    // The crash left the shipped parcels' records durable or not: either
    // way each parcel is undone once.
    let rt = runtime(&path, &ledger);
    let recovery = rt.recover().await;
    let err = recovery.finished[0].1.as_ref().unwrap_err().to_string();
    assert!(err.contains("parcel 99 is lost (s2:ship_99)"), "{err}");
    for p in [4, 5] {
        assert_eq!(ledger.get(&format!("undo ship {p}")), 1, "parcel {p}");
    }
    assert_eq!(ledger.get("plan"), 1);
    assert_eq!(rt.status("s2").await.unwrap().status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwinding_cut_short_goes_on_with_emitted_steps() {
    let path = temp_db("unwinding");
    let ledger = Ledger::default();
    // Parcel 6 completes before 99 fails: its undo stalls once.
    let gate = ledger.stall_at("undo ship 6");
    let rt = runtime(&path, &ledger);
    crash_at(&rt, "s3", vec![6, 99], gate).await;
    drop(rt);
    let rt = runtime(&path, &ledger);
    assert_eq!(rt.status("s3").await.unwrap().status, RunStatus::Unwinding);
    let recovery = rt.recover().await;
    assert!(recovery.finished[0].1.is_err());
    // The undo the crash cut short runs again, with its arguments.
    assert_eq!(ledger.get("undo ship 6"), 2);
    assert_eq!(ledger.get("ship 6"), 1);
    assert_eq!(rt.status("s3").await.unwrap().status, RunStatus::Failed);
}

/// `count` replaces itself with a `count` of `n - 1` until 0.
fn countdown(ledger: &Ledger, steps: &StepRegistry) -> Reactor {
    Reactor::builder("countdown")
        .input_as::<u32>("from")
        .add(count_step(ledger, steps, "count").argument("n", input("from")))
        .returns("count")
        .build()
        .unwrap()
}

fn count_step(ledger: &Ledger, steps: &StepRegistry, name: &str) -> StepSpec {
    let (l, steps) = (ledger.clone(), steps.clone());
    step(name).output::<u32>().run(move |a, _| {
        let (l, steps) = (l.clone(), steps.clone());
        async move {
            let n = *a.get::<u32>("n")?;
            l.hit(format!("count {n}")).await;
            if n == 0 {
                return Ok(Outcome::ok(0_u32));
            }
            Ok(Outcome::with_steps(
                n,
                vec![steps.make("count", "count", n - 1)?],
            ))
        }
    })
}

fn countdown_runtime(path: &std::path::Path, ledger: &Ledger) -> Runtime {
    let rt = Runtime::new(SqliteStore::open(path).unwrap());
    let steps = rt.steps().clone();
    let (l, s) = (ledger.clone(), steps.clone());
    rt.register_step("count", move |name: &str, n: u32| {
        count_step(&l, &s, name).argument("n", value(n))
    });
    rt.register(countdown(ledger, &steps)).unwrap();
    rt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_replacing_itself_resumes_at_its_latest_definition() {
    let path = temp_db("countdown");
    let ledger = Ledger::default();
    let gate = ledger.stall_at("count 1");
    let rt = countdown_runtime(&path, &ledger);
    let rt2 = rt.clone();
    let run = async move {
        rt2.start("countdown", Inputs::new().with("from", 3_u32))
            .run_id("c1")
            .await
    };
    crash_when(&gate, run).await;
    drop(rt);
    let rt = countdown_runtime(&path, &ledger);
    let recovery = rt.recover().await;
    assert!(recovery.skipped.is_empty(), "{:?}", recovery.skipped);
    assert_eq!(
        *recovery.finished[0]
            .1
            .as_ref()
            .unwrap()
            .get::<u32>()
            .unwrap(),
        0
    );
    assert_eq!(
        ["count 3", "count 2", "count 1", "count 0"].map(|c| ledger.get(c)),
        [1, 1, 2, 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emitted_step_no_registered_kind_rebuilds_fails_its_emitter_naming_it() {
    let rt = Runtime::new(reactor::journal::MemoryStore::new());
    let made = Arc::new(AtomicU32::new(0));
    let m = made.clone();
    // A kind that makes a different step each time.
    rt.register_step("drifting", move |name: &str, _: u32| {
        let n = m.fetch_add(1, Ordering::Relaxed);
        step(name)
            .argument("n", value(n))
            .output::<u32>()
            .run_sync(|_, _| Ok(1_u32))
    });
    let steps = rt.steps().clone();
    let emitter = |name: &str, make: Arc<dyn Fn() -> StepSpec + Send + Sync>| {
        Reactor::builder(name)
            .input_as::<u32>("x")
            .add(
                step("emit")
                    .argument("x", input("x"))
                    .output::<u32>()
                    .run(move |_, _| {
                        let make = make.clone();
                        async move { Ok(Outcome::with_steps(1_u32, vec![make()])) }
                    }),
            )
            .returns("emit")
            .build()
            .unwrap()
    };
    let closure: Arc<dyn Fn() -> StepSpec + Send + Sync> =
        Arc::new(|| step("loose").output::<u32>().run_sync(|_, _| Ok(2_u32)));
    let unregistered: Arc<dyn Fn() -> StepSpec + Send + Sync> = Arc::new(|| {
        step("stray")
            .output::<u32>()
            .described("nowhere", 1_u32)
            .run_sync(|_, _| Ok(2_u32))
    });
    let s = steps.clone();
    let drifting: Arc<dyn Fn() -> StepSpec + Send + Sync> =
        Arc::new(move || s.make("drifting", "drift", 1_u32).unwrap());
    for (name, make, expect) in [
        (
            "a",
            closure,
            ["`loose`", "not made by a registered step kind"],
        ),
        (
            "b",
            unregistered,
            ["`stray`", "`nowhere` is not registered"],
        ),
        ("c", drifting, ["`drift`", "must make the same step"]),
    ] {
        rt.register(emitter(name, make)).unwrap();
        let err = rt
            .start(name, Inputs::new().with("x", 1_u32))
            .await
            .unwrap_err()
            .to_string();
        for e in expect {
            assert!(err.contains(e), "{name}: {err}");
        }
    }
    // Making a step of an unknown kind is an error too.
    let err = steps.make("missing", "m", 1_u32).unwrap_err().to_string();
    assert!(err.contains("`missing` is not registered"), "{err}");
}

/// `base`, then a switch on `n`: over 5 `big`, else `small` (each reading
/// `base` from outside the switch, undoable); then `after`, failing for 99.
fn route(ledger: &Ledger, predicate_calls: Arc<AtomicU32>) -> Reactor {
    let branch = |name: &'static str| {
        let (l, u) = (ledger.clone(), ledger.clone());
        step(name)
            .argument("base", reactor::result("base"))
            .output::<u32>()
            .run(move |a, _| {
                let l = l.clone();
                async move {
                    l.hit(name.to_string()).await;
                    Ok(*a.get::<u32>("base")? + 1)
                }
            })
            .undo(move |_, a, _| {
                let u = u.clone();
                async move {
                    u.hit(format!("undo {name} {}", a.get::<u32>("base")?))
                        .await;
                    Ok(())
                }
            })
    };
    Reactor::builder("route")
        .input_as::<u32>("n")
        .add(
            step("base")
                .argument("n", input("n"))
                .output::<u32>()
                .run_sync(|a, _| Ok(*a.get::<u32>("n")? * 10)),
        )
        .add(
            reactor::kinds::switch("pick", input("n"))
                .branch(
                    move |v| {
                        predicate_calls.fetch_add(1, Ordering::SeqCst);
                        *v.get::<u32>().unwrap() > 5
                    },
                    [branch("big")],
                    Some("big"),
                )
                .default([branch("small")], Some("small"))
                .into_step(),
        )
        .add(
            step("after")
                .argument("picked", reactor::result("pick"))
                .argument("n", input("n"))
                .output::<u32>()
                .run_sync(|a, _| match *a.get::<u32>("n")? {
                    99 => Err("no route".into()),
                    _ => Ok(*a.get::<u32>("picked")? * 2),
                }),
        )
        .returns("after")
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_in_a_durable_run_is_rebuilt_from_its_branch_after_a_crash() {
    let path = temp_db("switch");
    let ledger = Ledger::default();
    let calls = Arc::new(AtomicU32::new(0));
    let gate = ledger.stall_at("big");
    let open = |ledger: &Ledger, calls: &Arc<AtomicU32>| {
        let rt = Runtime::new(SqliteStore::open(&path).unwrap());
        rt.register(route(ledger, calls.clone())).unwrap();
        rt
    };
    let rt = open(&ledger, &calls);
    let rt2 = rt.clone();
    let run = async move {
        rt2.start("route", Inputs::new().with("n", 7_u32))
            .run_id("w1")
            .await
    };
    crash_when(&gate, run).await;
    drop(rt);
    let rt = open(&ledger, &calls);
    let recovery = rt.recover().await;
    assert!(recovery.skipped.is_empty(), "{:?}", recovery.skipped);
    // base 70, big 71, after 142.
    assert_eq!(
        *recovery.finished[0]
            .1
            .as_ref()
            .unwrap()
            .get::<u32>()
            .unwrap(),
        142
    );
    // The switch chose once; its branch step ran again; `small` never.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!([ledger.get("big"), ledger.get("small")], [2, 0]);
    let journal = rt.journal("w1").await.unwrap();
    let kinds: Vec<String> = journal
        .records
        .iter()
        .flat_map(|r| match &r.entry {
            Entry::StepDone { emitted, .. } => emitted.iter().map(|e| e.kind.clone()).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(kinds, ["reactor:switch", "reactor:switch"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_undone_across_a_crash_is_undone_with_its_arguments() {
    let path = temp_db("switch-undo");
    let ledger = Ledger::default();
    let calls = Arc::new(AtomicU32::new(0));
    // 99 takes `big` (base 990), then `after` fails: `big` is undone, and
    // the crash cuts its undo short.
    let gate = ledger.stall_at("undo big 990");
    let open = |ledger: &Ledger, calls: &Arc<AtomicU32>| {
        let rt = Runtime::new(SqliteStore::open(&path).unwrap());
        rt.register(route(ledger, calls.clone())).unwrap();
        rt
    };
    let rt = open(&ledger, &calls);
    let rt2 = rt.clone();
    let run = async move {
        rt2.start("route", Inputs::new().with("n", 99_u32))
            .run_id("w2")
            .await
    };
    crash_when(&gate, run).await;
    drop(rt);
    let rt = open(&ledger, &calls);
    let recovery = rt.recover().await;
    let err = recovery.finished[0].1.as_ref().unwrap_err().to_string();
    assert!(err.contains("no route"), "{err}");
    // Undone again with the argument its branch read from outside.
    assert_eq!(ledger.get("undo big 990"), 2);
    assert_eq!([ledger.get("big"), calls.load(Ordering::SeqCst)], [1, 1]);
    assert_eq!(rt.status("w2").await.unwrap().status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_returned_by_a_durable_reactor_is_refused_when_registering() {
    let r = Reactor::builder("returns_switch")
        .input_as::<u32>("n")
        .add(
            reactor::kinds::switch("pick", input("n"))
                .default(
                    [step("one").output::<u32>().run_sync(|_, _| Ok(1_u32))],
                    Some("one"),
                )
                .into_step(),
        )
        .returns("pick")
        .build()
        .unwrap();
    let rt = Runtime::new(reactor::journal::MemoryStore::new());
    let err = rt.register(r).unwrap_err().to_string();
    assert!(err.contains("return step `pick` is a switch"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_branch_returning_no_step_of_its_own_is_refused_naming_it() {
    let pick = reactor::kinds::switch("pick", input("n"))
        .branch(
            |v| *v.get::<u32>().unwrap() > 1,
            [step("big").output::<u32>().run_sync(|_, _| Ok(1_u32))],
            Some("small"),
        )
        .default(
            [step("small").output::<u32>().run_sync(|_, _| Ok(0_u32))],
            Some("small"),
        )
        .into_step();
    let r = Reactor::builder("bad_switch")
        .input_as::<u32>("n")
        .add(pick)
        .add(
            step("after")
                .wait_for("pick")
                .output::<u32>()
                .run_sync(|_, _| Ok(0_u32)),
        )
        .returns("after")
        .build()
        .unwrap();
    let rt = Runtime::new(reactor::journal::MemoryStore::new());
    let err = rt.register(r).unwrap_err().to_string();
    assert!(
        err.contains("step `pick` is a switch whose branch") && err.contains("returns `small`"),
        "{err}"
    );
    // The library's own step kinds cannot be replaced.
    rt.register_step("reactor:switch", |name: &str, _: u32| {
        step(name).output::<u32>().run_sync(|_, _| Ok(0_u32))
    });
    assert!(rt.steps().make("reactor:switch", "x", 1_u32).is_err());
}
