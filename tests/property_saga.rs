//! The saga invariant over random graphs, random placements (a task, a
//! plain closure in a chunk or the coordinator, the blocking pool, the
//! coordinator, a map element, a composed reactor), random failures,
//! panics, retries, timeouts and cancellations:
//!
//! - every step that did something and was not kept by a successful run is
//!   undone exactly once, newest first (exactly the reverse of completion
//!   in a `run_async(false)` run; before its dependencies otherwise);
//! - no step is still running once the run has returned, and every slot
//!   of the pool is free;
//! - a run in which nothing fails returns what a sequential reference
//!   computes.
//!
//! Timeouts and cancellations run on tokio's paused clock, so they fire
//! at deterministic points. Together the properties generate more than
//! 10,000 cases per run of the tests.

use std::collections::{HashMap, HashSet};
use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use proptest::prelude::*;
use reactor::kinds::{compose, element, map};
use reactor::{
    input, result, step, value, ConcurrencyPool, Context, Inputs, Outcome, Reactor, StepSpec,
    Unfinished, Value,
};

const P: u64 = 1_000_000_007;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    /// An async closure: a task of its own.
    Task,
    /// A plain closure: a chunk, or the coordinator.
    Plain,
    /// On the blocking pool.
    CpuBound,
    /// A non-async step: in the coordinator.
    Coordinator,
    /// The work of each of a map's three elements.
    Map,
    /// The step of a composed reactor.
    Compose,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    Ok,
    Fail,
    Panic,
    RetryOnce,
    /// Does its work, then never finishes (cancelled by a timeout or
    /// when another step fails).
    Hang,
}

#[derive(Clone, Debug)]
struct Spec {
    deps: Vec<usize>,
    place: Place,
    act: Act,
}

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![
        Just(Place::Task),
        Just(Place::Plain),
        Just(Place::CpuBound),
        Just(Place::Coordinator),
        Just(Place::Map),
        Just(Place::Compose),
    ]
}

fn act(hangs: bool) -> BoxedStrategy<Act> {
    let acts = prop_oneof![
        8 => Just(Act::Ok),
        1 => Just(Act::Fail),
        1 => Just(Act::Panic),
        1 => Just(Act::RetryOnce),
    ];
    if hangs {
        prop_oneof![10 => acts, 1 => Just(Act::Hang)].boxed()
    } else {
        acts.boxed()
    }
}

fn graph(max: usize, hangs: bool) -> impl Strategy<Value = Vec<Spec>> {
    (1..max).prop_flat_map(move |n| {
        (0..n)
            .map(|i| {
                (
                    proptest::collection::vec(0..i.max(1), 0..=i.min(3)),
                    place(),
                    act(hangs),
                )
                    .prop_map(move |(mut deps, place, act)| {
                        deps.retain(|&j| j < i);
                        deps.sort_unstable();
                        deps.dedup();
                        // A plain closure cannot await: it cannot hang. And
                        // tokio's paused clock stands still while a task
                        // of the blocking pool runs, so a CPU-bound step
                        // that hangs would stop time (its cancellation is
                        // tested on a real clock in saga_paths.rs).
                        let act = if matches!(place, Place::Plain | Place::CpuBound)
                            && act == Act::Hang
                        {
                            Act::Ok
                        } else {
                            act
                        };
                        Spec { deps, place, act }
                    })
            })
            .collect::<Vec<_>>()
    })
}

/// What the steps did and undid, and how many are running.
#[derive(Default)]
struct World {
    log: Mutex<Vec<(bool, String)>>,
    running: AtomicUsize,
    idle: tokio::sync::Notify,
}

struct Running(Arc<World>);

impl World {
    fn enter(self: &Arc<Self>) -> Running {
        self.running.fetch_add(1, Ordering::SeqCst);
        Running(self.clone())
    }
    fn did(&self, key: &str) {
        self.log.lock().unwrap().push((true, key.to_string()));
    }
    fn undid(&self, key: &str) {
        self.log.lock().unwrap().push((false, key.to_string()));
    }
    fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
    async fn all_stopped(&self) {
        loop {
            let idle = self.idle.notified();
            if self.running() == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The reference value of step `i`.
fn reference(specs: &[Spec]) -> Vec<u64> {
    let mut values: Vec<u64> = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let v = s
            .deps
            .iter()
            .fold((i as u64 + 1) * 31, |acc, &j| (acc + values[j]) % P);
        values.push(v);
    }
    values
}

/// A step's value as its consumers read it (a map's: its first output).
fn number(v: &Value) -> u64 {
    match v.downcast_ref::<Vec<Value>>() {
        Some(list) => number(&list[0]),
        None => *v.get::<u64>().unwrap(),
    }
}

fn compute(i: usize, args: &reactor::Arguments) -> u64 {
    args.iter()
        .filter(|(n, _)| n.starts_with('a'))
        .fold((i as u64 + 1) * 31, |acc, (_, v)| (acc + number(v)) % P)
}

/// The work of one unit: what `act` says, recorded in `world` under `key`.
async fn work(world: Arc<World>, key: String, act: Act, v: u64, ctx: Context) -> Outcome {
    let _running = world.enter();
    tokio::task::yield_now().await;
    sync_work(&world, &key, act, v, &ctx, true).await
}

async fn sync_work(
    world: &Arc<World>,
    key: &str,
    act: Act,
    v: u64,
    ctx: &Context,
    can_hang: bool,
) -> Outcome {
    match act {
        Act::Fail => Outcome::error(format!("{key} fails")),
        Act::Panic => panic!("planned panic in {key}"),
        Act::RetryOnce if ctx.current_try() == 0 => Outcome::Retry(None),
        Act::Hang if can_hang => {
            world.did(key);
            std::future::pending::<()>().await;
            unreachable!()
        }
        _ => {
            world.did(key);
            Outcome::ok(v)
        }
    }
}

fn undoing(s: StepSpec, world: &Arc<World>, key: String) -> StepSpec {
    let world = world.clone();
    s.undo(move |v: Value, _, _| {
        let (world, key) = (world.clone(), key.clone());
        async move {
            let key = if v.is::<Unfinished>() {
                format!("{key}?")
            } else {
                key
            };
            world.undid(&key);
            Ok(())
        }
    })
}

/// A unit of work named `name`, keyed `key`, computing step `i`'s value
/// from its `a*` arguments.
fn unit(name: &str, key: String, i: usize, place: Place, act: Act, world: &Arc<World>) -> StepSpec {
    let w = world.clone();
    let k = key.clone();
    let s = step(name.to_string());
    let s = match place {
        Place::Plain => s.run_sync(move |args, ctx| {
            let v = compute(i, args);
            // Plain work answers at once: run it to its first (and only)
            // answer.
            futures::executor::block_on(sync_work(&w, &k, act, v, ctx, false))
        }),
        Place::CpuBound => s
            .cpu_bound()
            .run(move |args, ctx| work(w.clone(), k.clone(), act, compute(i, &args), ctx)),
        Place::Coordinator => s
            .run_async(false)
            .run(move |args, ctx| work(w.clone(), k.clone(), act, compute(i, &args), ctx)),
        _ => s.run(move |args, ctx| work(w.clone(), k.clone(), act, compute(i, &args), ctx)),
    };
    undoing(s, world, key)
}

fn build(specs: &[Spec], world: &Arc<World>) -> Reactor {
    let mut b = Reactor::builder("random");
    let mut total = step("total");
    for (i, s) in specs.iter().enumerate() {
        let name = format!("s{i}");
        let with_deps = |mut st: StepSpec, nested: bool| {
            for &j in &s.deps {
                let source = if nested {
                    input(format!("a{j}"))
                } else {
                    result(format!("s{j}"))
                };
                st = st.argument(format!("a{j}"), source);
            }
            st
        };
        let st = match s.place {
            Place::Map => {
                // Three elements; the act applies to the middle one.
                let w = world.clone();
                let act = s.act;
                let key = name.clone();
                let nested =
                    step("e")
                        .argument("el", element(name.clone()))
                        .run(move |args, ctx| {
                            let el = *args.get::<u64>("el").unwrap();
                            let act = if el == 1 { act } else { Act::Ok };
                            work(
                                w.clone(),
                                format!("{key}#{el}"),
                                act,
                                compute(i, &args),
                                ctx,
                            )
                        });
                let nested = undoing_elements(nested, world, name.clone());
                let mut nested = nested;
                for &j in &s.deps {
                    nested = nested.argument(format!("a{j}"), result(format!("s{j}")));
                }
                map(name.clone(), value(vec![0_u64, 1, 2]))
                    .steps([nested])
                    .batch_size(2)
                    .into_step()
                    .unwrap()
            }
            Place::Compose => {
                let mut inner = Reactor::builder(format!("inner{i}"));
                for &j in &s.deps {
                    inner.input(format!("a{j}"));
                }
                let work = unit(
                    "inner",
                    format!("{name}/inner"),
                    i,
                    Place::Task,
                    s.act,
                    world,
                );
                inner.add(with_deps(work, true));
                let inner = inner.returns("inner").build().unwrap();
                with_deps(compose(name.clone(), inner), false)
            }
            place => with_deps(unit(&name, name.clone(), i, place, s.act, world), false),
        };
        b.add(st);
        total = total.argument(format!("t{i}"), result(name));
    }
    b.add(
        total.run_sync(|args, _| Ok(args.iter().fold(0u64, |acc, (_, v)| (acc + number(v)) % P))),
    );
    b.returns("total").build().unwrap()
}

/// Map elements record their undo under `name#element`.
fn undoing_elements(s: StepSpec, world: &Arc<World>, name: String) -> StepSpec {
    let world = world.clone();
    s.undo(move |v: Value, args, _| {
        let (world, name) = (world.clone(), name.clone());
        async move {
            let el = *args.get::<u64>("el")?;
            let mark = if v.is::<Unfinished>() { "?" } else { "" };
            world.undid(&format!("{name}#{el}{mark}"));
            Ok(())
        }
    })
}

/// The top-level step a log key belongs to.
fn owner(key: &str) -> usize {
    key[1..]
        .split(['#', '/', '?'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// How a run ended, for [`check_log`].
#[derive(Clone, Copy, PartialEq)]
enum Ended {
    /// Completed or halted: nothing is undone.
    Kept,
    /// Failed: everything done is undone.
    Failed,
    /// Dropped: nothing more is undone (though a composite step that
    /// failed inside may have undone its own nested steps already).
    Dropped,
}

/// Checks the saga after a run.
fn check_log(
    specs: &[Spec],
    world: &World,
    ended: Ended,
    sequential: bool,
) -> Result<(), TestCaseError> {
    let log = world.log.lock().unwrap().clone();
    let done: Vec<&String> = log.iter().filter(|(d, _)| *d).map(|(_, k)| k).collect();
    let all_undone: Vec<&String> = log.iter().filter(|(d, _)| !*d).map(|(_, k)| k).collect();
    // A step cancelled part-way is undone as if it had completed (marked
    // `?`), whether or not it got to do its work.
    let mut cancelled = HashSet::new();
    for k in &all_undone {
        if let Some(k) = k.strip_suffix('?') {
            prop_assert!(
                cancelled.insert(k.to_string()),
                "{} undone twice: {:?}",
                k,
                log
            );
        }
    }
    let undone: Vec<String> = all_undone
        .iter()
        .map(|k| k.trim_end_matches('?').to_string())
        .filter(|k| !cancelled.contains(k) || done.contains(&k))
        .collect();
    match ended {
        Ended::Kept => {
            prop_assert!(all_undone.is_empty(), "undone without a failure: {log:?}");
            return Ok(());
        }
        Ended::Dropped => {
            let mut seen = HashSet::new();
            for k in &undone {
                prop_assert!(done.contains(&k), "{} undone, never done: {:?}", k, log);
                prop_assert!(seen.insert(k.clone()), "{} undone twice: {:?}", k, log);
            }
            return Ok(());
        }
        Ended::Failed => {}
    }
    // Exactly once each.
    let mut a: Vec<&str> = done.iter().map(|k| k.as_str()).collect();
    a.sort_unstable();
    let mut b: Vec<&str> = undone.iter().map(|k| k.as_str()).collect();
    b.sort_unstable();
    prop_assert_eq!(&a, &b, "log: {:?}", log);
    if sequential {
        let mut reversed: Vec<String> = done.iter().map(|k| k.to_string()).collect();
        reversed.reverse();
        prop_assert_eq!(&undone, &reversed);
    } else {
        // A step's work is undone before the work of what it depends on.
        let pos: HashMap<usize, usize> = undone
            .iter()
            .enumerate()
            .map(|(p, k)| (owner(k), p))
            .collect();
        for (&s, &p) in &pos {
            for &d in &specs[s].deps {
                if let Some(&q) = pos.get(&d) {
                    prop_assert!(
                        p < q,
                        "s{} undone after its dependency s{}: {:?}",
                        s,
                        d,
                        undone
                    );
                }
            }
        }
    }
    Ok(())
}

fn quiet_planned_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let planned = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m.starts_with("planned panic"));
            if !planned {
                default(info);
            }
        }));
    });
}

thread_local! {
    static THREADED: tokio::runtime::Runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    static PAUSED: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 5_000,
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn failures_panics_and_retries_anywhere_keep_the_saga(
        specs in graph(14, false),
        conc in 1usize..5,
        run_async in proptest::bool::weighted(0.8),
        default_options in proptest::bool::weighted(0.25),
    ) {
        quiet_planned_panics();
        let world = Arc::new(World::default());
        let reactor = build(&specs, &world);
        let pool = ConcurrencyPool::new(conc);
        let out = THREADED.with(|rt| rt.block_on({
            let run = reactor.run(Inputs::new()).run_async(run_async);
            // Default options: CPU work on the cores, awaiting steps unheld.
            let run = if default_options { run } else { run.pool(pool.clone()) };
            run.into_future()
        }));
        prop_assert_eq!(world.running(), 0, "a step still runs after the run returned");
        prop_assert_eq!(pool.available(), conc);
        let fails = specs.iter().any(|s| matches!(s.act, Act::Fail | Act::Panic));
        match out {
            Ok(v) => {
                prop_assert!(!fails);
                let expected = reference(&specs).iter().fold(0, |acc, v| (acc + v) % P);
                prop_assert_eq!(*v.get::<u64>().unwrap(), expected);
                check_log(&specs, &world, Ended::Kept, !run_async)?;
            }
            Err(e) => {
                prop_assert!(fails, "{}", e);
                prop_assert!(e.as_run_error().is_some(), "{}", e);
                check_log(&specs, &world, Ended::Failed, !run_async)?;
            }
        }
    }

    #[test]
    fn timeouts_and_cancellations_anywhere_keep_the_saga(
        specs in graph(10, true),
        conc in 1usize..4,
        run_async in proptest::bool::weighted(0.8),
        timeout_ms in proptest::option::of(0u64..50),
        halt_ms in 0u64..20,
        cancel_ms in proptest::option::of(0u64..50),
        default_options in proptest::bool::weighted(0.25),
    ) {
        let conc = (!default_options).then_some(conc);
        timed_case(&specs, conc, run_async, timeout_ms, halt_ms, cancel_ms)?;
    }
}

/// Waits (at most 10 s) until every slot of `pool` is free: a dropped run's
/// aborted tasks give theirs back when they are dropped, CPU-bound ones on
/// a thread of the blocking pool once they see they are cancelled.
fn all_slots_back(pool: &ConcurrencyPool) -> bool {
    let pool = pool.clone();
    let (back, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        futures::executor::block_on(async {
            let mut all = Vec::new();
            for _ in 0..pool.limit() {
                all.push(pool.acquire().await);
            }
        });
        let _ = back.send(());
    });
    wait.recv_timeout(Duration::from_secs(10)).is_ok()
}

/// `conc`: the size of the run's pool, or `None` for default options.
fn timed_case(
    specs: &[Spec],
    conc: Option<usize>,
    run_async: bool,
    timeout_ms: Option<u64>,
    halt_ms: u64,
    cancel_ms: Option<u64>,
) -> Result<(), TestCaseError> {
    // A step that hangs needs something to end the run.
    let timeout_ms = match timeout_ms {
        None if cancel_ms.is_none() && specs.iter().any(|s| s.act == Act::Hang) => Some(50),
        t => t,
    };
    quiet_planned_panics();
    let world = Arc::new(World::default());
    let reactor = build(specs, &world);
    let pool = ConcurrencyPool::new(conc.unwrap_or(1));
    let out = PAUSED.with(|rt| {
        rt.block_on(async {
            let mut run = reactor
                .run(Inputs::new())
                .run_async(run_async)
                .halt_timeout(Duration::from_millis(halt_ms));
            if conc.is_some() {
                run = run.pool(pool.clone());
            }
            if let Some(t) = timeout_ms {
                run = run.timeout(Duration::from_millis(t));
            }
            let run = run.outcome();
            let out = match cancel_ms {
                Some(c) => tokio::time::timeout(Duration::from_millis(c), run)
                    .await
                    .ok(),
                None => Some(run.await),
            };
            if out.is_none() {
                // Dropped: its steps stop soon after, and this runtime
                // drops its aborted tasks (giving their slots back) once
                // it runs them again.
                world.all_stopped().await;
                for _ in 0..100 {
                    tokio::task::yield_now().await;
                }
            }
            out
        })
    });
    prop_assert_eq!(
        world.running(),
        0,
        "a step still runs after the run returned"
    );
    if out.is_none() {
        prop_assert!(
            all_slots_back(&pool),
            "a slot of the dropped run never came back"
        );
    }
    prop_assert_eq!(pool.available(), pool.limit());
    let sequential = !run_async;
    match out {
        // Cancelled: nothing is undone.
        None => check_log(specs, &world, Ended::Dropped, sequential)?,
        Some(Ok(outcome)) => {
            if let Some(done) = outcome.completed() {
                let expected = reference(specs).iter().fold(0, |acc, v| (acc + v) % P);
                prop_assert_eq!(*done.value().get::<u64>().unwrap(), expected);
            }
            check_log(specs, &world, Ended::Kept, sequential)?;
        }
        Some(Err(e)) => {
            prop_assert!(e.as_run_error().is_some(), "{}", e);
            // A failure that abandoned a step in the coordinator of a
            // sync run undoes in completion order too.
            check_log(specs, &world, Ended::Failed, sequential)?;
        }
    }
    Ok(())
}

#[test]
fn a_failure_in_the_coordinator_beside_a_map() {
    let specs = [
        Spec {
            deps: vec![],
            place: Place::Coordinator,
            act: Act::Fail,
        },
        Spec {
            deps: vec![],
            place: Place::Map,
            act: Act::Ok,
        },
    ];
    timed_case(&specs, Some(1), true, None, 0, None).unwrap();
}
