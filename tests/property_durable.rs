//! Property: a durable run interrupted at a random journal write (before
//! or after it is stored) and taken up from its journal ends as the same
//! run without the interruption would: random graphs, random placements
//! (async tasks, plain closures, a `run_async(false)` run), random kinds
//! (plain steps, composes whose nested run is journalled of its own,
//! steps emitting a registered step at run time, maps whose elements are
//! runs of their own), a random failing step (inside a compose, its
//! nested run's second step; inside a map, its second element's second
//! step); each effect of a
//! failed saga undone exactly once, each step run at most once more than
//! the crash allows.
//!
//! The "crash" here freezes the store at the chosen write and drops the
//! run on a single-threaded runtime (nothing of it runs after); real
//! processes are killed in `tests/crash_matrix.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use reactor::durable::Runtime;
use reactor::durable::StepRegistry;
use reactor::journal::{
    Created, Journal, MemoryStore, NewRun, Record, RunStatus, RunSummary, Store, StoreError,
};
use reactor::kinds::compose;
use reactor::{async_trait, input, result, step, Inputs, Outcome, Reactor, StepSpec};

/// Freezes at the k-th write: it never returns, and tells `frozen`.
struct FreezingStore {
    inner: Arc<MemoryStore>,
    at: (u64, bool),
    writes: AtomicU64,
    frozen: Arc<tokio::sync::Notify>,
}

impl FreezingStore {
    async fn boundary(&self, before: bool) {
        let n = if before {
            self.writes.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            self.writes.load(Ordering::SeqCst)
        };
        if self.at == (n, before) {
            self.frozen.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl Store for FreezingStore {
    async fn create_run(&self, run: NewRun) -> Result<Created, StoreError> {
        self.boundary(true).await;
        let out = self.inner.create_run(run).await;
        self.boundary(false).await;
        out
    }
    async fn append(&self, run_id: &str, epoch: u32, records: &[Record]) -> Result<(), StoreError> {
        self.boundary(true).await;
        let out = self.inner.append(run_id, epoch, records).await;
        self.boundary(false).await;
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

#[derive(Clone, Default)]
struct Ledger(Arc<Mutex<Vec<String>>>);

impl Ledger {
    fn write(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
    fn count(&self, line: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|l| *l == line).count()
    }
    fn undo(&self, key: &str) {
        self.write(format!("undo-call {key}"));
        if self.count(&format!("undone {key}")) == 0 {
            self.write(format!("undone {key}"));
        }
    }
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("do ").map(str::to_string))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

#[derive(Clone, Debug)]
struct Shape {
    /// For each step, the earlier steps it reads.
    deps: Vec<Vec<usize>>,
    /// Plain (`run_sync`) or awaiting, per step.
    sync: Vec<bool>,
    /// Per step: 0 a step, 1 a compose (of two effects), 2 a step that
    /// emits an effect, 3 a map (of two effects, over two elements) and a
    /// step summing its results.
    kind: Vec<u8>,
    failing: Option<usize>,
    run_async: bool,
    crash: (u64, bool),
}

fn shapes() -> impl Strategy<Value = Shape> {
    (2_usize..8)
        .prop_flat_map(|n| {
            (
                proptest::collection::vec(proptest::collection::vec(any::<bool>(), n), n),
                proptest::collection::vec(any::<bool>(), n),
                proptest::collection::vec(0_u8..4, n),
                proptest::option::of(0..n),
                any::<bool>(),
                (1_u64..16, any::<bool>()),
            )
        })
        .prop_map(|(bits, sync, kind, failing, run_async, crash)| Shape {
            deps: bits
                .iter()
                .enumerate()
                .map(|(i, row)| (0..i).filter(|&j| row[j]).collect())
                .collect(),
            sync,
            kind,
            failing,
            run_async,
            crash,
        })
}

/// An effect: records `do` under its idempotency key, undoes it once.
fn effect(ledger: &Ledger, name: &str, source: reactor::Source, add: u64, fails: bool) -> StepSpec {
    let (l, lu) = (ledger.clone(), ledger.clone());
    step(name)
        .argument("x", source)
        .output::<u64>()
        .max_retries(0)
        .run_sync(move |a, ctx| {
            l.write(format!("do {}", ctx.idempotency_key()));
            if fails {
                return Err::<u64, reactor::BoxError>("this step fails".into());
            }
            Ok(*a.get::<u64>("x")? + add)
        })
        .undo(move |_, _, ctx| {
            let lu = lu.clone();
            async move {
                lu.undo(&ctx.idempotency_key());
                Ok(())
            }
        })
}

/// The reactor a compose runs: `a`, then `b` (failing with `fails`).
fn inner(ledger: &Ledger, fails: bool) -> Reactor {
    let mut b = Reactor::builder("inner");
    b.input_as::<u64>("x")
        .add(effect(ledger, "a", input("x"), 1, false))
        .add(effect(ledger, "b", result("a"), 2, fails))
        .returns("b");
    b.build().unwrap()
}

fn build(shape: &Shape, ledger: &Ledger, steps: &StepRegistry) -> Reactor {
    let mut b = Reactor::builder("random");
    b.input_as::<u64>("seed");
    let n = shape.deps.len();
    for i in 0..n {
        let name = format!("s{i}");
        if shape.kind[i] == 1 {
            let mut c = compose(name.as_str(), inner(ledger, shape.failing == Some(i)))
                .argument("x", input("seed"));
            for &j in &shape.deps[i] {
                c = c.wait_for(format!("s{j}"));
            }
            b.add(c);
            continue;
        }
        if shape.kind[i] == 3 {
            let fails = shape.failing == Some(i);
            let each = format!("s{i}m");
            let (l, lf) = (ledger.clone(), ledger.clone());
            let b_step = move |fails: bool| {
                let mut s = effect(&lf, "b", result("a"), 2, false);
                if fails {
                    // The second element's `b` fails.
                    let lf = lf.clone();
                    s = s.run_sync(move |a, ctx| {
                        lf.write(format!("do {}", ctx.idempotency_key()));
                        let x = *a.get::<u64>("x")?;
                        if x == 3 {
                            return Err::<u64, reactor::BoxError>("this step fails".into());
                        }
                        Ok(x + 2)
                    });
                }
                s
            };
            let mut m = reactor::kinds::map(each.as_str(), reactor::value(vec![1_u64, 2]))
                .steps([
                    effect(&l, "a", reactor::kinds::element(each.as_str()), 1, false),
                    b_step(fails),
                ])
                .returns("b")
                .batch_size(2)
                .into_step()
                .unwrap();
            for &j in &shape.deps[i] {
                m = m.wait_for(format!("s{j}"));
            }
            b.add(m);
            b.add(
                step(name.as_str())
                    .argument("m", result(each.as_str()))
                    .output::<u64>()
                    .run_sync(|a, _| {
                        let outputs = a.get::<Vec<reactor::Value>>("m")?;
                        Ok(outputs
                            .iter()
                            .map(|v| *v.get::<u64>().unwrap())
                            .sum::<u64>())
                    }),
            );
            continue;
        }
        let mut s = step(name.as_str()).output::<u64>().max_retries(0);
        s = s.argument("seed", input("seed"));
        for &j in &shape.deps[i] {
            s = s.argument(format!("s{j}"), result(format!("s{j}")));
        }
        let fails = shape.failing == Some(i);
        let emits = shape.kind[i] == 2;
        let (l, lu, reg) = (ledger.clone(), ledger.clone(), steps.clone());
        let body = move |a: &reactor::Arguments, ctx: &reactor::Context| {
            l.write(format!("do {}", ctx.idempotency_key()));
            if fails {
                return Err::<Outcome, reactor::BoxError>("this step fails".into());
            }
            let sum = a.iter().map(|(_, v)| *v.get::<u64>().unwrap()).sum::<u64>() + i as u64;
            if emits {
                let e = reg.make("effect", &format!("s{i}e"), i as u64)?;
                return Ok(Outcome::with_steps(sum, vec![e]));
            }
            Ok(Outcome::ok(sum))
        };
        s = if shape.sync[i] {
            s.run_sync(move |a, ctx| body(a, ctx))
        } else {
            s.run(move |a, ctx| {
                let out = body(&a, &ctx);
                async move {
                    tokio::task::yield_now().await;
                    out
                }
            })
        };
        s = s.undo(move |_, _, ctx| {
            let lu = lu.clone();
            async move {
                lu.undo(&ctx.idempotency_key());
                Ok(())
            }
        });
        b.add(s);
    }
    b.returns(format!("s{}", n - 1));
    b.build().unwrap()
}

fn outcome(out: &Result<reactor::Value, reactor::Error>) -> String {
    match out {
        Ok(v) => format!("ok {}", v.get::<u64>().unwrap()),
        Err(e) => format!(
            "err {}",
            e.as_run_error()
                .map_or("?".to_string(), |r| r.errors[0].step.clone())
        ),
    }
}

fn runtime(store: Arc<dyn Store>, shape: &Shape, ledger: &Ledger) -> Runtime {
    let rt = Runtime::with_store(store);
    let l = ledger.clone();
    rt.register_step("effect", move |name: &str, add: u64| {
        effect(&l, name, input("seed"), add, false)
    });
    let steps = rt.steps().clone();
    rt.register(build(shape, ledger, &steps)).unwrap();
    let run_async = shape.run_async;
    rt.configure(move |r| r.run_async(run_async));
    rt
}

async fn check(shape: Shape) -> Result<(), TestCaseError> {
    let reference = {
        let ledger = Ledger::default();
        let rt = runtime(Arc::new(MemoryStore::new()), &shape, &ledger);
        outcome(
            &rt.start("random", Inputs::new().with("seed", 7_u64))
                .run_id("r")
                .await,
        )
    };
    let ledger = Ledger::default();
    let inner = Arc::new(MemoryStore::new());
    let frozen = Arc::new(tokio::sync::Notify::new());
    let crashing = Arc::new(FreezingStore {
        inner: inner.clone(),
        at: shape.crash,
        writes: AtomicU64::new(0),
        frozen: frozen.clone(),
    });
    let rt = runtime(crashing, &shape, &ledger);
    let task = tokio::spawn(async move {
        outcome(
            &rt.start("random", Inputs::new().with("seed", 7_u64))
                .run_id("r")
                .await,
        )
    });
    let abort = task.abort_handle();
    let mut crashes = 0;
    let got = tokio::select! {
        done = task => done.unwrap(),
        _ = frozen.notified() => {
            abort.abort();
            crashes = 1;
            // Let the aborted run be dropped before recovery starts.
            tokio::task::yield_now().await;
            let rt = runtime(inner.clone(), &shape, &ledger);
            let recovery = rt.recover().await;
            prop_assert!(recovery.skipped.is_empty(), "{:?}", recovery.skipped);
            match rt.status("r").await {
                // Frozen while creating the run: it never existed.
                Err(_) => outcome(&rt.start("random", Inputs::new().with("seed", 7_u64)).run_id("r").await),
                Ok(_) => outcome(&rt.resume("r").await),
            }
        }
    };
    prop_assert_eq!(&got, &reference, "{:?}", shape);
    let mut again = 0;
    for key in ledger.keys() {
        prop_assert!(
            ledger.count(&format!("do {key}")) <= 1 + crashes,
            "{key} ran too often"
        );
        let undone = ledger.count(&format!("undone {key}"));
        // A step that failed did nothing to undo, unless a crash cut an
        // attempt of it short (it may have been the one that did): then it
        // is undone as possibly completed.
        let failed = shape.failing.map(|f| match shape.kind[f] {
            1 => format!("r/s{f}.1.0:b"),
            3 => format!("r/s{f}m.1.e1:b"),
            _ => format!("r:s{f}"),
        }) == Some(key.clone());
        if failed {
            prop_assert!(
                undone <= crashes,
                "the failed step {} was undone {} times",
                key,
                undone
            );
        } else if got.starts_with("err") {
            prop_assert_eq!(undone, 1, "{} undone {} times", key, undone);
        } else {
            prop_assert_eq!(undone, 0, "{} of a completed run undone", key);
        }
        again += ledger.count(&format!("undo-call {key}")).saturating_sub(1);
    }
    prop_assert!(again <= crashes, "{} undos called again", again);
    let journal = inner.load("r").await.unwrap();
    prop_assert!(journal.run.status.is_finished());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_run_taken_up_after_a_crash_ends_as_without_it(shape in shapes()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(shape))?;
    }
}
