//! The crash matrix, with real processes: a child process (this test
//! binary, re-run with `REACTOR_CRASH_CHILD` set) runs a durable reactor
//! on a SQLite file and aborts itself at journal boundary k (before or
//! after the k-th write reaches the store); the harness starts it again
//! to recover, and compares with an uncrashed run. The reactors: a chain,
//! a fan-out, a failing saga, a halt, a compose (completing, and undone
//! by a later failure), a group and an around undone by a later failure,
//! a map (completing, undone by a later failure,
//! and failed by an element), steps emitted at run time (completing, and
//! undone by an emitted step's failure), and a switch's branch undone by
//! a later failure. The writes of a compose's nested run and of a map's
//! element runs are boundaries too.
//!
//! Checked for every k of every reactor: the outcome equals the
//! uncrashed outcome; every effect of a failed saga is undone exactly once
//! (the ledger, like a real external system, applies an undo once per
//! idempotency key, and counts the calls); a completed run undoes
//! nothing; a step runs at most once more than the crashes that cut it
//! short; the journal loads, ends once, and holds no gap.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use reactor::durable::{Runtime, StepRegistry};
use reactor::journal::{
    Created, Entry, Journal, NewRun, Record, RunStatus, RunSummary, SqliteStore, Store, StoreError,
};
use reactor::kinds::compose;
use reactor::{async_trait, input, result, step, Inputs, Outcome, Reactor, StepSpec, Value};

const RUN: &str = "run-1";

// ----- the child ---------------------------------------------------------

/// Aborts the process at the k-th write, before or after it is stored.
struct CrashingStore {
    inner: SqliteStore,
    at: Option<(u64, bool)>,
    writes: AtomicU64,
}

impl CrashingStore {
    fn boundary(&self, before: bool) -> u64 {
        let n = if before {
            self.writes.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            self.writes.load(Ordering::SeqCst)
        };
        if self.at == Some((n, before)) {
            std::process::abort();
        }
        n
    }
}

#[async_trait]
impl Store for CrashingStore {
    async fn create_run(&self, run: NewRun) -> Result<Created, StoreError> {
        self.boundary(true);
        let out = self.inner.create_run(run).await;
        self.boundary(false);
        out
    }
    async fn append(&self, run_id: &str, epoch: u32, records: &[Record]) -> Result<(), StoreError> {
        self.boundary(true);
        let out = self.inner.append(run_id, epoch, records).await;
        self.boundary(false);
        out
    }
    async fn load(&self, run_id: &str) -> Result<Journal, StoreError> {
        self.inner.load(run_id).await
    }
    async fn runs(&self, status: Option<RunStatus>) -> Result<Vec<RunSummary>, StoreError> {
        self.inner.runs(status).await
    }
    async fn purge(&self, ended_before_ms: u64) -> Result<u64, reactor::journal::StoreError> {
        self.inner.purge(ended_before_ms).await
    }
}

// The external system the steps change: a file of lines.
mod common;
use common::file_ledger::FileLedger as Ledger;

/// The effects of the steps, on the ledger.
trait Effects {
    fn apply(&self, key: &str);
    fn undo(&self, key: &str);
}

impl Effects for Ledger {
    /// Does the effect keyed `key`.
    fn apply(&self, key: &str) {
        self.write(format!("do {key}"));
    }
    /// Undoes the effect keyed `key`, once whatever the calls.
    fn undo(&self, key: &str) {
        self.write(format!("undo-call {key}"));
        if !self.lines().contains(&format!("undone {key}")) {
            self.write(format!("undone {key}"));
        }
    }
}

/// A step that records its effect and undoes it, adding `add` to the sum
/// of its arguments.
fn effect(ledger: &Ledger, name: &str, args: &[&str], add: u64) -> StepSpec {
    let (l, lu) = (ledger.clone(), ledger.clone());
    let mut s = step(name).output::<u64>();
    for a in args {
        s = s.argument(*a, result(*a));
    }
    s.run(move |a, ctx| {
        let l = l.clone();
        async move {
            l.apply(&ctx.idempotency_key());
            let sum: u64 = a.iter().map(|(_, v)| *v.get::<u64>().unwrap()).sum();
            Ok(sum + add)
        }
    })
    .undo(move |_, _, ctx| {
        let lu = lu.clone();
        async move {
            lu.undo(&ctx.idempotency_key());
            Ok(())
        }
    })
}

/// A step that always fails.
fn failing(name: &str, args: &[&str]) -> StepSpec {
    let mut s = step(name).output::<u64>().max_retries(0);
    for a in args {
        s = s.argument(*a, result(*a));
    }
    s.run_sync(|_, _| Err::<u64, _>("the carrier is down".into()))
}

/// The reactor a compose runs: two effects in a row.
fn inner(ledger: &Ledger) -> Reactor {
    let mut b = Reactor::builder("inner");
    b.input_as::<u64>("x")
        .add(
            step("start")
                .argument("x", input("x"))
                .output::<u64>()
                .run_sync(|a, _| Ok(*a.get::<u64>("x")?)),
        )
        .add(effect(ledger, "ia", &["start"], 1))
        .add(effect(ledger, "ib", &["ia"], 2))
        .returns("ib");
    b.build().unwrap()
}

/// A step emitting, through the registry, effects `e1` and `e2` after it,
/// and (with `fail`) a failing step after them.
fn emitter(steps: &StepRegistry, fail: bool) -> StepSpec {
    let steps = steps.clone();
    step("plan")
        .argument("seed", result("seed"))
        .output::<u64>()
        .run(move |a, _| {
            let steps = steps.clone();
            async move {
                let mut emitted = vec![
                    steps.make("effect", "e1", (vec!["plan".to_string()], 1_u64))?,
                    steps.make("effect", "e2", (vec!["plan".to_string()], 2_u64))?,
                ];
                if fail {
                    emitted.push(steps.make("failing", "boom", vec!["e1", "e2"])?);
                }
                Ok(Outcome::with_steps(*a.get::<u64>("seed")?, emitted))
            }
        })
}

/// A map over `items`, two elements at a time: an effect on the element,
/// then one on its result; with `fail`, the third element fails.
fn each(ledger: &Ledger, fail: bool) -> StepSpec {
    let (l, lu) = (ledger.clone(), ledger.clone());
    let ea = step("ea")
        .argument("x", reactor::kinds::element("each"))
        .output::<u64>()
        .run(move |a, ctx| {
            let l = l.clone();
            async move {
                let x = *a.get::<u64>("x")?;
                if fail && x % 3 == 0 {
                    return Err("the element is bad".into());
                }
                l.apply(&ctx.idempotency_key());
                Ok(x * 10)
            }
        })
        .undo(move |_, _, ctx| {
            let lu = lu.clone();
            async move {
                lu.undo(&ctx.idempotency_key());
                Ok(())
            }
        });
    reactor::kinds::map("each", result("items"))
        .steps([ea, effect(ledger, "eb", &["ea"], 2)])
        .returns("eb")
        .batch_size(2)
        .into_step()
        .unwrap()
}

fn scenario(name: &str, ledger: &Ledger, steps: &StepRegistry) -> Reactor {
    let mut b = Reactor::builder(name);
    b.input_as::<u64>("seed");
    let seed = step("seed")
        .argument("x", input("seed"))
        .output::<u64>()
        .run_sync(|a, _| Ok(*a.get::<u64>("x")?));
    b.add(seed);
    match name {
        "chain" => {
            b.add(effect(ledger, "a", &["seed"], 1))
                .add(effect(ledger, "b", &["a"], 2))
                .add(effect(ledger, "c", &["b"], 3))
                .returns("c");
        }
        "fanout" => {
            b.add(effect(ledger, "root", &["seed"], 1));
            for p in ["p1", "p2", "p3", "p4"] {
                b.add(effect(ledger, p, &["root"], 10));
            }
            b.add(effect(ledger, "join", &["p1", "p2", "p3", "p4"], 0))
                .returns("join");
        }
        "saga" => {
            b.add(effect(ledger, "reserve", &["seed"], 1))
                .add(effect(ledger, "charge", &["reserve"], 2))
                .add(effect(ledger, "notify", &["reserve"], 3))
                .add(failing("ship", &["charge", "notify"]))
                .returns("ship");
        }
        "group_saga" | "around_saga" => {
            let steps = [
                step("start")
                    .argument("x", input("x"))
                    .output::<u64>()
                    .run_sync(|a, _| Ok(*a.get::<u64>("x")?)),
                effect(ledger, "ia", &["start"], 1),
                effect(ledger, "ib", &["ia"], 2),
            ];
            let nested = if name == "group_saga" {
                reactor::kinds::group("trip")
                    .steps(steps)
                    .after_all(|results| Ok(*results["ib"].get::<u64>()?))
                    .into_step()
                    .unwrap()
            } else {
                reactor::kinds::around("trip", steps, |args, _, steps, nested| async move {
                    let results = nested.run(&args, steps).await?;
                    Ok(*results["ib"].get::<u64>()?)
                })
                .unwrap()
            };
            b.add(nested.output::<u64>().argument("x", result("seed")))
                .add(effect(ledger, "after", &["trip"], 5))
                .add(failing("ship", &["after"]))
                .returns("ship");
        }
        "compose" | "compose_saga" => {
            b.add(compose("trip", inner(ledger)).argument("x", result("seed")))
                .add(effect(ledger, "after", &["trip"], 5));
            if name == "compose_saga" {
                b.add(failing("ship", &["after"])).returns("ship");
            } else {
                b.returns("after");
            }
        }
        "switch" => {
            let pick = reactor::kinds::switch("pick", result("seed"))
                .branch(
                    |v| *v.get::<u64>().unwrap() > 50,
                    [
                        effect(ledger, "big", &["seed"], 1),
                        effect(ledger, "bigger", &["big"], 2),
                    ],
                    Some("bigger"),
                )
                .default([effect(ledger, "small", &["seed"], 3)], Some("small"))
                .into_step();
            b.add(pick)
                .add(effect(ledger, "after", &["pick"], 5))
                .add(failing("ship", &["after"]))
                .returns("ship");
        }
        "emit" | "emit_saga" => {
            b.add(emitter(steps, name == "emit_saga")).returns("plan");
        }
        "map" | "map_saga" | "map_fail" => {
            b.add(
                step("items")
                    .argument("seed", result("seed"))
                    .output::<Vec<u64>>()
                    .run_sync(|a, _| {
                        let seed = *a.get::<u64>("seed")?;
                        Ok(vec![seed, seed + 1, seed + 2])
                    }),
            )
            .add(each(ledger, name == "map_fail"))
            .add(
                step("total")
                    .argument("each", result("each"))
                    .output::<u64>()
                    .run_sync(|a, _| {
                        let outputs = a.get::<Vec<Value>>("each")?;
                        Ok(outputs
                            .iter()
                            .map(|v| *v.get::<u64>().unwrap())
                            .sum::<u64>())
                    }),
            );
            if name == "map_saga" {
                b.add(failing("ship", &["total"])).returns("ship");
            } else {
                b.returns("total");
            }
        }
        "halt" => {
            b.add(effect(ledger, "a", &["seed"], 1))
                .add(
                    step("gate")
                        .argument("a", result("a"))
                        .output::<u64>()
                        .run_sync(|a, _| Ok(Outcome::Halt(Value::new(*a.get::<u64>("a")? * 2)))),
                )
                .add(effect(ledger, "after", &["gate"], 5))
                .returns("after");
        }
        other => panic!("no scenario {other}"),
    }
    b.build().unwrap()
}

async fn child(scenario_name: &str, dir: &Path, at: Option<(u64, bool)>) {
    let store = CrashingStore {
        inner: SqliteStore::open(dir.join("journal.db")).unwrap(),
        at,
        writes: AtomicU64::new(0),
    };
    let ledger = Ledger(dir.join("ledger.txt"));
    let rt = Runtime::new(store);
    let l = ledger.clone();
    rt.register_step(
        "effect",
        move |name: &str, (args, add): (Vec<String>, u64)| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            effect(&l, name, &args, add)
        },
    );
    rt.register_step("failing", |name: &str, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        failing(name, &args)
    });
    let steps = rt.steps().clone();
    rt.register(scenario(scenario_name, &ledger, &steps))
        .unwrap();
    let recovery = rt.recover().await;
    assert!(recovery.skipped.is_empty(), "{:?}", recovery.skipped);
    let mut out = match rt.status(RUN).await {
        Err(_) => {
            rt.start(scenario_name, Inputs::new().with("seed", 100_u64))
                .run_id(RUN)
                .await
        }
        Ok(_) => rt.resume(RUN).await,
    };
    while rt.status(RUN).await.unwrap().status == RunStatus::Halted {
        out = rt.resume(RUN).await;
    }
    let shown = match out {
        Ok(v) => format!("ok {}", v.get::<u64>().unwrap()),
        Err(e) => format!(
            "err {}",
            e.as_run_error().map_or("?", |r| r.errors[0].step.as_str())
        ),
    };
    println!("OUTCOME {shown}");
}

#[test]
fn child_process() {
    let Ok(spec) = std::env::var("REACTOR_CRASH_CHILD") else {
        return;
    };
    let mut parts = spec.split(',');
    let scenario_name = parts.next().unwrap().to_string();
    let dir = PathBuf::from(parts.next().unwrap());
    let at = parts.next().filter(|s| !s.is_empty()).map(|k| {
        let (when, n) = k.split_once(':').unwrap();
        (n.parse().unwrap(), when == "before")
    });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(child(&scenario_name, &dir, at));
}

// ----- the harness -------------------------------------------------------

/// Runs the child; `Some(outcome)` if it ran to the end, `None` if it
/// crashed.
fn run_child(scenario: &str, dir: &Path, at: Option<(u64, bool)>) -> Option<String> {
    let at = at.map_or(String::new(), |(n, before)| {
        format!("{}:{n}", if before { "before" } else { "after" })
    });
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(
            "REACTOR_CRASH_CHILD",
            format!("{scenario},{},{at}", dir.display()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        assert!(
            !at.is_empty(),
            "the child failed without a crash point: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("OUTCOME "))
        .unwrap_or_else(|| panic!("no outcome: {stdout}"));
    Some(line.to_string())
}

fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reactor-crash-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Checks the ledger and journal after `crashes` crashes.
async fn check(dir: &Path, outcome: &str, crashes: usize, at: &str) {
    let lines = Ledger(dir.join("ledger.txt")).lines();
    let count = |prefix: &str, key: &str| {
        lines
            .iter()
            .filter(|l| **l == format!("{prefix} {key}"))
            .count()
    };
    let keys: std::collections::BTreeSet<&str> =
        lines.iter().filter_map(|l| l.strip_prefix("do ")).collect();
    for key in &keys {
        let runs = count("do", key);
        assert!(
            runs <= 1 + crashes,
            "{at}: `{key}` ran {runs} times after {crashes} crashes"
        );
        let undone = count("undone", key);
        if outcome.starts_with("err") {
            assert_eq!(undone, 1, "{at}: `{key}` undone {undone} times");
            assert!(
                count("undo-call", key) <= 1 + crashes,
                "{at}: `{key}` undo called too often"
            );
        } else {
            assert_eq!(undone, 0, "{at}: `{key}` of a completed run was undone");
        }
    }
    // Undos run one at a time: a crash cuts at most one short, so at most
    // one undo call per crash is made again.
    let again: usize = keys
        .iter()
        .map(|k| count("undo-call", k).saturating_sub(1))
        .sum();
    assert!(
        again <= crashes,
        "{at}: {again} undos called again after {crashes} crashes"
    );
    let store = SqliteStore::open(dir.join("journal.db")).unwrap();
    let journal = store.load(RUN).await.unwrap();
    let ends = journal
        .records
        .iter()
        .filter(|r| matches!(r.entry, Entry::RunEnded { .. }))
        .count();
    assert_eq!(ends, 1, "{at}: the run ended {ends} times");
    assert!(
        journal.run.status.is_finished(),
        "{at}: {:?}",
        journal.run.status
    );
}

async fn matrix(scenario: &str) {
    let reference_dir = fresh_dir(&format!("{scenario}-ref"));
    let reference = run_child(scenario, &reference_dir, None).unwrap();
    check(&reference_dir, &reference, 0, "reference").await;
    let mut points = 0;
    for before in [true, false] {
        for k in 1.. {
            let at = format!(
                "{scenario} {} write {k}",
                if before { "before" } else { "after" }
            );
            let dir = fresh_dir(&format!("{scenario}-{before}-{k}"));
            if let Some(outcome) = run_child(scenario, &dir, Some((k, before))) {
                // Past the last write: nothing to crash at.
                assert_eq!(outcome, reference, "{at}");
                let _ = std::fs::remove_dir_all(&dir);
                break;
            }
            points += 1;
            let outcome = run_child(scenario, &dir, None).expect("recovery completes");
            assert_eq!(outcome, reference, "{at}");
            check(&dir, &outcome, 1, &at).await;
            // Crash the recovery too, at its first writes, then recover.
            for j in 1..=2 {
                let dir2 = fresh_dir(&format!("{scenario}-{before}-{k}-{j}"));
                if run_child(scenario, &dir2, Some((k, before))).is_some() {
                    break;
                }
                if run_child(scenario, &dir2, Some((j, true))).is_none() {
                    let outcome = run_child(scenario, &dir2, None).expect("recovery completes");
                    assert_eq!(outcome, reference, "{at}, then recovery write {j}");
                    check(
                        &dir2,
                        &outcome,
                        2,
                        &format!("{at}, then recovery write {j}"),
                    )
                    .await;
                }
                let _ = std::fs::remove_dir_all(&dir2);
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    eprintln!("{scenario}: {points} crash points, each recovered");
    assert!(points >= 4, "{scenario}: only {points} crash points");
    let _ = std::fs::remove_dir_all(&reference_dir);
}

#[tokio::test]
async fn crash_matrix_chain() {
    matrix("chain").await;
}

#[tokio::test]
async fn crash_matrix_fan_out() {
    matrix("fanout").await;
}

#[tokio::test]
async fn crash_matrix_failing_saga_mid_unwind() {
    matrix("saga").await;
}

#[tokio::test]
async fn crash_matrix_halt_and_resume() {
    matrix("halt").await;
}

#[tokio::test]
async fn crash_matrix_inside_a_compose() {
    matrix("compose").await;
}

#[tokio::test]
async fn crash_matrix_failing_saga_after_a_compose() {
    matrix("compose_saga").await;
}

#[tokio::test]
async fn crash_matrix_failing_saga_after_a_switch() {
    matrix("switch").await;
}

#[tokio::test]
async fn crash_matrix_failing_saga_after_a_group() {
    matrix("group_saga").await;
}

#[tokio::test]
async fn crash_matrix_failing_saga_after_an_around() {
    matrix("around_saga").await;
}

#[tokio::test]
async fn crash_matrix_mid_map() {
    matrix("map").await;
}

#[tokio::test]
async fn crash_matrix_failing_saga_after_a_map() {
    matrix("map_saga").await;
}

#[tokio::test]
async fn crash_matrix_failing_map_element() {
    matrix("map_fail").await;
}

#[tokio::test]
async fn crash_matrix_emitted_steps() {
    matrix("emit").await;
}

#[tokio::test]
async fn crash_matrix_failing_saga_of_emitted_steps() {
    matrix("emit_saga").await;
}
