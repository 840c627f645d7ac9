//! The standard benchmark workloads of `WORKLOADS.md` (W1–W10; W9 in
//! `small_runs/`), each measured beside the two reference executors of
//! `baseline/` in the same run, with the project's targets checked at the
//! end.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench workloads [-- --quick] [-- FILTER...]
//! ```
//!
//! `--quick` takes fewer samples (still 7 after warm-up). Any other argument
//! that does not start with `--` selects workloads by id (`w1`, `w5`,
//! `build`, ...); arguments that cargo passes (`--bench`) are ignored.
//!
//! Every async measurement is a task spawned on a multi-threaded tokio
//! runtime with one worker per core, which times itself: the reactor's
//! `run(..).await` (which spawns its own coordinator task) against the
//! baseline's `tokio::spawn(coordinator).await`. Variants of a workload are
//! interleaved sample by sample so that drift affects them alike. Every
//! sample's result is checked; a wrong answer panics (exit code 101).

mod adaptive;
mod awaiting;
mod baseline;
mod small_runs;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baseline::{get, val, Dag, Node, Src, Val, Work};
use futures::StreamExt;
use reactor::{
    input, result, step, Arguments, BoxError, Builder, Compensation, ConcurrencyPool, Inputs,
    Reactor, StepSpec, Value,
};

/// The modulus of W5.
const P: i64 = 1_000_000_007;
/// W5's shape.
const LAYERS: usize = 50;
const WIDTH: usize = 50;
/// The size of the build-and-plan measurement.
const BUILD_STEPS: i64 = 1_000_000;

// ----- measurement ------------------------------------------------------

type Timed = Pin<Box<dyn Future<Output = Duration> + Send>>;

/// One thing to measure: each call makes a future that runs it once, times
/// itself and checks its result.
struct Variant {
    name: &'static str,
    make: Box<dyn Fn() -> Timed>,
}

fn variant(name: &'static str, make: impl Fn() -> Timed + 'static) -> Variant {
    Variant {
        name,
        make: Box::new(make),
    }
}

/// Times `fut` from its first poll to its end, then checks its output.
fn timed<T, Fut, C>(fut: Fut, check: C) -> Timed
where
    Fut: Future<Output = T> + Send + 'static,
    C: FnOnce(T) + Send + 'static,
{
    Box::pin(async move {
        let started = Instant::now();
        let out = fut.await;
        let elapsed = started.elapsed();
        check(out);
        elapsed
    })
}

#[derive(Clone, Copy)]
struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    assert!(!samples.is_empty());
    samples.sort_unstable();
    let n = samples.len();
    let median = if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2
    };
    Stats {
        median,
        min: samples[0],
        max: samples[n - 1],
    }
}

struct Config {
    quick: bool,
    warmup: usize,
    runs: usize,
    build_runs: usize,
    filters: Vec<String>,
}

impl Config {
    fn from_args() -> Config {
        let mut quick = false;
        let mut filters = Vec::new();
        for arg in std::env::args().skip(1) {
            if arg == "--quick" {
                quick = true;
            } else if !arg.starts_with('-') {
                filters.push(arg.to_lowercase());
            }
        }
        Config {
            quick,
            warmup: if quick { 1 } else { 3 },
            runs: if quick { 7 } else { 21 },
            build_runs: if quick { 1 } else { 3 },
            filters,
        }
    }

    fn selected(&self, id: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| f == &id.to_lowercase())
    }
}

struct TargetResult {
    name: String,
    detail: String,
    pass: bool,
}

/// One row of the final summary table.
struct Row {
    workload: String,
    steps: usize,
    ours: Option<Stats>,
    baseline: Option<Stats>,
    ours_sync: Option<Stats>,
    inline: Option<Stats>,
    /// Plain closures run async (chunked), where measured.
    plain: Option<Stats>,
    elixir: &'static str,
}

struct Bench {
    rt: tokio::runtime::Runtime,
    cfg: Config,
    cores: usize,
    targets: Vec<TargetResult>,
    rows: Vec<Row>,
}

impl Bench {
    fn once(&self, v: &Variant) -> Duration {
        let fut = (v.make)();
        self.rt.block_on(async move {
            tokio::spawn(fut)
                .await
                .unwrap_or_else(|e| panic!("a benchmark task failed: {e}"))
        })
    }

    /// Warms up, then takes `runs` samples of every variant, interleaved.
    fn measure(&self, variants: &[Variant]) -> Vec<Stats> {
        for _ in 0..self.cfg.warmup {
            for v in variants {
                self.once(v);
            }
        }
        let mut samples = vec![Vec::with_capacity(self.cfg.runs); variants.len()];
        for _ in 0..self.cfg.runs {
            for (k, v) in variants.iter().enumerate() {
                samples[k].push(self.once(v));
            }
        }
        samples.into_iter().map(stats).collect()
    }

    fn print_table(&self, title: &str, steps: usize, variants: &[Variant], results: &[Stats]) {
        println!();
        println!(
            "{title}  [{} samples after {} warm-up; per step = median / {steps}]",
            self.cfg.runs, self.cfg.warmup
        );
        println!(
            "  {:<26} {:>11} {:>11} {:>11} {:>11}",
            "variant", "median", "min", "max", "per step"
        );
        for (v, s) in variants.iter().zip(results) {
            println!(
                "  {:<26} {:>11} {:>11} {:>11} {:>11}",
                v.name,
                fmt_d(s.median),
                fmt_d(s.min),
                fmt_d(s.max),
                fmt_d(s.median / steps as u32)
            );
        }
    }

    fn target(&mut self, name: String, actual: f64, limit: f64, unit: &str, detail: String) {
        self.check(name, actual, limit, actual <= limit, unit, detail);
    }

    /// A target that `actual` must reach (at least `minimum`).
    fn target_at_least(
        &mut self,
        name: String,
        actual: f64,
        minimum: f64,
        unit: &str,
        detail: String,
    ) {
        self.check(name, actual, minimum, actual >= minimum, unit, detail);
    }

    fn check(
        &mut self,
        name: String,
        actual: f64,
        limit: f64,
        pass: bool,
        unit: &str,
        detail: String,
    ) {
        let line = format!(
            "{name}: {actual:.2}{unit} (limit {limit}{unit}) {detail}",
            detail = detail
        );
        println!("  TARGET {:<4} {line}", if pass { "PASS" } else { "FAIL" });
        self.targets.push(TargetResult {
            name,
            detail: format!("{actual:.2}{unit} vs limit {limit}{unit}; {detail}"),
            pass,
        });
    }
}

fn fmt_d(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.3} ms", ns / 1e6)
    } else {
        format!("{:.3} s", ns / 1e9)
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

// ----- checks -------------------------------------------------------------

fn ours<T: Clone + 'static>(out: Result<Value, reactor::Error>, what: &str) -> T {
    match out {
        Ok(v) => v
            .get::<T>()
            .unwrap_or_else(|e| panic!("{what}: wrong result type: {e}"))
            .clone(),
        Err(e) => panic!("{what}: the run failed: {e}"),
    }
}

fn check_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: &T) {
    assert!(
        got == *want,
        "{what}: WRONG RESULT {got:?}, expected {want:?}"
    );
}

fn x_input() -> Inputs {
    Inputs::new().with("x", 1_i64)
}

fn x_val() -> Arc<[Val]> {
    Arc::from(vec![val(1_i64)])
}

fn sum_args(args: &Arguments) -> Result<i64, BoxError> {
    let mut sum = 0_i64;
    for (_, v) in args.iter() {
        sum += *v.get::<i64>()?;
    }
    Ok(sum)
}

// ----- W1: fanout ---------------------------------------------------------

/// A step's body as a plain closure (`run_sync`, which the engine may run
/// in chunks or in its coordinator) or as an async closure (`run`: a task
/// per step, as the tokio baseline spawns).
fn body<F>(s: StepSpec, awaiting: bool, f: F) -> StepSpec
where
    F: Fn(&Arguments) -> Result<i64, BoxError> + Copy + Send + Sync + 'static,
{
    if awaiting {
        s.run(move |args, _ctx| async move { f(&args) })
    } else {
        s.run_sync(move |args, _ctx| f(args))
    }
}

fn w1_declare(n: i64, awaiting: bool) -> Builder {
    let mut b = Reactor::builder("w1_fanout");
    b.input("x");
    let mut sum = step("sum");
    for i in 1..=n {
        let name: Arc<str> = format!("s{i}").into();
        b.add(body(
            step(name.clone()).argument("x", input("x")),
            awaiting,
            move |args| Ok(args.get::<i64>("x")? + i),
        ));
        sum = sum.argument(name.clone(), result(name));
    }
    b.add(body(sum, awaiting, sum_args));
    b.returns("sum");
    b
}

fn w1_reactor(n: i64, awaiting: bool) -> Reactor {
    w1_declare(n, awaiting).build().expect("W1 plans")
}

/// W1's DAG for the baselines; with `awaiting`, its step bodies are
/// async (as ours with async closures), else plain (the tokio baseline
/// spawns a task per step either way).
fn w1_dag(n: i64, awaiting: bool) -> Dag {
    let mut nodes = Vec::with_capacity(n as usize + 1);
    for i in 1..=n {
        let work = if awaiting {
            Work::Async(Arc::new(move |a: Vec<Val>| {
                Box::pin(async move { val(*get::<i64>(&a[0]) + i) })
            }))
        } else {
            Work::Sync(Arc::new(move |a: &[Val]| val(*get::<i64>(&a[0]) + i)))
        };
        nodes.push(Node {
            args: vec![Src::Input(0)],
            work,
        });
    }
    nodes.push(Node {
        args: (0..n as usize).map(Src::Step).collect(),
        work: Work::Sync(Arc::new(|a: &[Val]| {
            val(a.iter().map(|v| *get::<i64>(v)).sum::<i64>())
        })),
    });
    Dag::new(nodes, n as usize)
}

fn w1_expected(n: i64) -> i64 {
    n + n * (n + 1) / 2
}

// ----- W2: chain ----------------------------------------------------------

fn w2_reactor(n: i64, awaiting: bool) -> Reactor {
    let mut b = Reactor::builder("w2_chain");
    b.input("x");
    for i in 1..=n {
        let source = if i == 1 {
            input("x")
        } else {
            result(format!("s{}", i - 1))
        };
        b.add(body(
            step(format!("s{i}")).argument("x", source),
            awaiting,
            |args| Ok(args.get::<i64>("x")? + 1),
        ));
    }
    b.returns(format!("s{n}"));
    b.build().expect("W2 plans")
}

fn w2_dag(n: i64) -> Dag {
    let n = n as usize;
    let nodes = (0..n)
        .map(|k| Node {
            args: vec![if k == 0 {
                Src::Input(0)
            } else {
                Src::Step(k - 1)
            }],
            work: Work::Sync(Arc::new(|a: &[Val]| val(*get::<i64>(&a[0]) + 1))),
        })
        .collect();
    Dag::new(nodes, n - 1)
}

// ----- W3: io fanout ------------------------------------------------------

const W3_N: i64 = 1_000;
const W3_CONCURRENCY: usize = 100;

fn w3_reactor() -> Reactor {
    let mut b = Reactor::builder("w3_io_fanout");
    let mut collect = step("collect");
    for i in 1..=W3_N {
        let name: Arc<str> = format!("t{i}").into();
        b.add(step(name.clone()).run(move |_args, _ctx| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(i)
        }));
        collect = collect.argument(name.clone(), result(name));
    }
    b.add(collect.run_sync(|args, _ctx| {
        let mut all = Vec::with_capacity(args.len());
        for (_, v) in args.iter() {
            all.push(*v.get::<i64>()?);
        }
        Ok(all)
    }));
    b.returns("collect");
    b.build().expect("W3 plans")
}

fn w3_dag() -> Dag {
    let mut nodes = Vec::new();
    for i in 1..=W3_N {
        nodes.push(Node {
            args: Vec::new(),
            work: Work::Async(Arc::new(move |_args: Vec<Val>| {
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    val(i)
                })
            })),
        });
    }
    nodes.push(Node {
        args: (0..W3_N as usize).map(Src::Step).collect(),
        work: Work::Sync(Arc::new(|a: &[Val]| {
            val(a.iter().map(|v| *get::<i64>(v)).collect::<Vec<i64>>())
        })),
    });
    Dag::new(nodes, W3_N as usize)
}

// ----- W5: layered DAG ----------------------------------------------------

fn w5_reactor(awaiting: bool) -> Reactor {
    let mut b = Reactor::builder("w5_layered");
    b.input("x");
    for l in 0..LAYERS {
        for j in 0..WIDTH {
            let s = step(format!("l{l}_{j}"));
            let s = if l == 0 {
                let j = j as i64;
                body(s.argument("x", input("x")), awaiting, move |args| {
                    Ok((args.get::<i64>("x")? + j) % P)
                })
            } else {
                let s = s
                    .argument("a", result(format!("l{}_{j}", l - 1)))
                    .argument("b", result(format!("l{}_{}", l - 1, (j + 1) % WIDTH)));
                body(s, awaiting, |args| {
                    Ok((args.get::<i64>("a")? + args.get::<i64>("b")?) % P)
                })
            };
            b.add(s);
        }
    }
    let mut sum = step("sum");
    for j in 0..WIDTH {
        sum = sum.argument(format!("j{j}"), result(format!("l{}_{j}", LAYERS - 1)));
    }
    b.add(body(sum, awaiting, sum_args));
    b.returns("sum");
    b.build().expect("W5 plans")
}

fn w5_dag() -> Dag {
    let id = |l: usize, j: usize| l * WIDTH + j;
    let mut nodes = Vec::with_capacity(LAYERS * WIDTH + 1);
    for l in 0..LAYERS {
        for j in 0..WIDTH {
            nodes.push(if l == 0 {
                let j = j as i64;
                Node {
                    args: vec![Src::Input(0)],
                    work: Work::Sync(Arc::new(move |a: &[Val]| val((*get::<i64>(&a[0]) + j) % P))),
                }
            } else {
                Node {
                    args: vec![
                        Src::Step(id(l - 1, j)),
                        Src::Step(id(l - 1, (j + 1) % WIDTH)),
                    ],
                    work: Work::Sync(Arc::new(|a: &[Val]| {
                        val((*get::<i64>(&a[0]) + *get::<i64>(&a[1])) % P)
                    })),
                }
            });
        }
    }
    nodes.push(Node {
        args: (0..WIDTH).map(|j| Src::Step(id(LAYERS - 1, j))).collect(),
        work: Work::Sync(Arc::new(|a: &[Val]| {
            val(a.iter().map(|v| *get::<i64>(v)).sum::<i64>())
        })),
    });
    Dag::new(nodes, LAYERS * WIDTH)
}

/// The sequential reference of W5 with x = 1.
fn w5_expected() -> i64 {
    let mut layer: Vec<i64> = (0..WIDTH as i64).map(|j| (1 + j) % P).collect();
    for _ in 1..LAYERS {
        layer = (0..WIDTH)
            .map(|j| (layer[j] + layer[(j + 1) % WIDTH]) % P)
            .collect();
    }
    layer.iter().sum()
}

// ----- W6: saga rollback --------------------------------------------------

const W6_N: i64 = 1_000;

fn w6_reactor(log: Arc<Mutex<Vec<i64>>>) -> Reactor {
    let mut b = Reactor::builder("w6_saga");
    b.input("x");
    for i in 1..=W6_N {
        let source = if i == 1 {
            input("x")
        } else {
            result(format!("s{}", i - 1))
        };
        let log = log.clone();
        b.add(
            step(format!("s{i}"))
                .argument("x", source)
                .run_sync(|args, _ctx| Ok(args.get::<i64>("x")? + 1))
                .undo(move |_value, _args, _ctx| {
                    log.lock().expect("undo log").push(i);
                    std::future::ready(Ok::<(), BoxError>(()))
                }),
        );
    }
    let last = format!("s{}", W6_N + 1);
    b.add(
        step(last.clone())
            .argument("x", result(format!("s{W6_N}")))
            .run_sync(|_args, _ctx| Err::<i64, BoxError>("boom".into())),
    );
    b.returns(last);
    b.build().expect("W6 plans")
}

// ----- W7: retry ----------------------------------------------------------

const W7_N: i64 = 1_000;

fn w7_reactor(retries: Arc<AtomicUsize>) -> Reactor {
    let mut b = Reactor::builder("w7_retry");
    let mut collect = step("collect");
    for i in 1..=W7_N {
        let name: Arc<str> = format!("r{i}").into();
        let retries = retries.clone();
        b.add(
            step(name.clone())
                .run_sync(move |_args, ctx| {
                    if i % 3 == 0 && ctx.current_try() == 0 {
                        Err::<i64, BoxError>("fails on its first try".into())
                    } else {
                        Ok(i)
                    }
                })
                .compensate(move |_reason, _args, _ctx| {
                    retries.fetch_add(1, Ordering::Relaxed);
                    std::future::ready(Compensation::Retry(None))
                }),
        );
        collect = collect.argument(name.clone(), result(name));
    }
    b.add(collect.run_sync(|args, _ctx| sum_args(args)));
    b.returns("collect");
    b.build().expect("W7 plans")
}

// ----- W8: shared pool ----------------------------------------------------

const W8_POOL: usize = 16;
const W8_RUNS: usize = 100;
const W8_N: i64 = 10;

#[derive(Default)]
struct Gauge {
    running: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    async fn step<T>(&self, value: T) -> T {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        tokio::task::yield_now().await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        value
    }
}

fn w8_reactor(gauge: Arc<Gauge>) -> Reactor {
    let mut b = Reactor::builder("w8_pool");
    b.input("x");
    let mut sum = step("sum");
    for i in 1..=W8_N {
        let name: Arc<str> = format!("s{i}").into();
        let gauge = gauge.clone();
        b.add(
            step(name.clone())
                .argument("x", input("x"))
                .run(move |args, _ctx| {
                    let gauge = gauge.clone();
                    let x = args.get::<i64>("x").copied();
                    async move { Ok(gauge.step(x?).await + i) }
                }),
        );
        sum = sum.argument(name.clone(), result(name));
    }
    b.add(sum.run(move |args, _ctx| {
        let gauge = gauge.clone();
        async move { gauge.step(sum_args(&args)).await }
    }));
    b.returns("sum");
    b.build().expect("W8 plans")
}

// ----- the workloads ------------------------------------------------------

/// A DAG workload (W1, W2, W5), run by ours and both baselines.
struct DagWorkload {
    title: String,
    /// The number of steps the per-step cost divides by.
    n: usize,
    /// Its steps as async closures (a task per step, like the tokio
    /// baseline): the headline.
    reactor: Reactor,
    /// Its steps as plain closures (`run_sync`): run async, in chunks or in
    /// the coordinator (a faster shape, reported beside); run with
    /// `run_async(false)` against the inline baseline.
    plain: Reactor,
    dag: Dag,
    expected: i64,
    elixir: &'static str,
    /// Whether the async-vs-baseline target applies.
    async_target: bool,
}

/// Ours beside both baselines, like for like: async closures against the
/// task-per-step baseline, `run_async(false)` against the inline baseline;
/// plain closures run async beside them. Returns ours (async, sync).
fn dag_workload(bench: &mut Bench, w: DagWorkload) -> (Stats, Stats) {
    let DagWorkload {
        title,
        n,
        reactor,
        plain,
        dag,
        expected,
        elixir,
        async_target,
    } = w;
    let dag = Arc::new(dag);
    let cores = bench.cores;
    let ours_variant = |name: &'static str, r: &Reactor, run_async: bool| {
        let r = r.clone();
        variant(name, move || {
            let r = r.clone();
            timed(
                // The baseline's limit (the cores, which was our default
                // before awaiting steps went unheld by default).
                async move {
                    r.run(x_input())
                        .max_concurrency(cores)
                        .run_async(run_async)
                        .await
                },
                move |out| check_eq(name, ours::<i64>(out, name), &expected),
            )
        })
    };
    let variants = vec![
        ours_variant("ours, async closures", &reactor, true),
        {
            let dag = dag.clone();
            variant("tokio baseline", move || {
                let dag = dag.clone();
                timed(
                    async move { baseline::run_tokio(dag, x_val(), cores).await },
                    move |v| check_eq("tokio baseline", *get::<i64>(&v), &expected),
                )
            })
        },
        ours_variant("ours sync (async=false)", &plain, false),
        {
            let dag = dag.clone();
            variant("inline baseline", move || {
                let dag = dag.clone();
                timed(
                    async move { baseline::run_inline(&dag, &x_val()) },
                    move |v| check_eq("inline baseline", *get::<i64>(&v), &expected),
                )
            })
        },
        ours_variant("ours, plain closures", &plain, true),
    ];
    let s = bench.measure(&variants);
    bench.print_table(&title, n, &variants, &s);
    println!("  {:<26} {elixir}", "Elixir Reactor 1.0.6");
    println!(
        "  async closures / tokio baseline = {:.2}x;  sync / inline baseline = {:.2}x;  plain closures (chunked) / tokio baseline = {:.2}x",
        ratio(s[0].median, s[1].median),
        ratio(s[2].median, s[3].median),
        ratio(s[4].median, s[1].median)
    );
    bench.rows.push(Row {
        workload: title.clone(),
        steps: n,
        ours: Some(s[0]),
        baseline: Some(s[1]),
        ours_sync: Some(s[2]),
        inline: Some(s[3]),
        plain: Some(s[4]),
        elixir,
    });
    let per_step = |k: usize| fmt_d(s[k].median / n as u32);
    if async_target {
        bench.target(
            format!("{title}: async closures vs tokio baseline"),
            ratio(s[0].median, s[1].median),
            1.25,
            "x",
            format!("(ours {} / baseline {} per step)", per_step(0), per_step(1)),
        );
        bench.target(
            format!("{title}: sync vs inline baseline"),
            ratio(s[2].median, s[3].median),
            1.5,
            "x",
            format!(
                "(ours {} / inline {})",
                fmt_d(s[2].median),
                fmt_d(s[3].median)
            ),
        );
    }
    // No regression of the chunked plain-closure path (0.30-0.45x before).
    bench.target(
        format!("{title}: plain closures (chunked) vs tokio baseline"),
        ratio(s[4].median, s[1].median),
        0.6,
        "x",
        format!("(ours {} / baseline {} per step)", per_step(4), per_step(1)),
    );
    (s[0], s[2])
}

fn scaling_target(bench: &mut Bench, id: &str, mode: &str, small: Stats, large: Stats) {
    bench.target(
        format!("{id} {mode}: 10,000-step run vs 1,000-step run"),
        ratio(large.median, small.median),
        12.0,
        "x",
        format!("({} vs {})", fmt_d(large.median), fmt_d(small.median)),
    );
}

fn w1(bench: &mut Bench) {
    let mut by_size = Vec::new();
    for (n, elixir) in [
        (1_000_i64, "1,540 ms (1.54 ms/step)"),
        (10_000, "226 s (22.6 ms/step)"),
    ] {
        let s = dag_workload(
            bench,
            DagWorkload {
                title: format!("W1 fanout n={n}"),
                n: n as usize,
                reactor: w1_reactor(n, true),
                plain: w1_reactor(n, false),
                dag: w1_dag(n, false),
                expected: w1_expected(n),
                elixir,
                async_target: n >= 10_000,
            },
        );
        by_size.push(s);
    }
    scaling_target(bench, "W1", "async", by_size[0].0, by_size[1].0);
    scaling_target(bench, "W1", "sync", by_size[0].1, by_size[1].1);
}

fn w2(bench: &mut Bench) {
    let mut by_size = Vec::new();
    for (n, elixir) in [
        (1_000_i64, "1,768 ms (1.77 ms/step)"),
        (10_000, "341 s (34.1 ms/step)"),
    ] {
        let s = dag_workload(
            bench,
            DagWorkload {
                title: format!("W2 chain n={n}"),
                n: n as usize,
                reactor: w2_reactor(n, true),
                plain: w2_reactor(n, false),
                dag: w2_dag(n),
                expected: 1 + n,
                elixir,
                async_target: n >= 10_000,
            },
        );
        by_size.push(s);
    }
    scaling_target(bench, "W2", "async", by_size[0].0, by_size[1].0);
    scaling_target(bench, "W2", "sync", by_size[0].1, by_size[1].1);
}

fn w5(bench: &mut Bench) {
    dag_workload(
        bench,
        DagWorkload {
            title: format!("W5 layered {LAYERS}x{WIDTH}"),
            n: LAYERS * WIDTH,
            reactor: w5_reactor(true),
            plain: w5_reactor(false),
            dag: w5_dag(),
            expected: w5_expected(),
            elixir: "17.1 s (6.8 ms/step)",
            async_target: true,
        },
    );
}

fn w3(bench: &mut Bench) {
    let reactor = w3_reactor();
    let dag = Arc::new(w3_dag());
    let expected: Vec<i64> = (1..=W3_N).collect();
    let expected = Arc::new(expected);
    let mut variants = vec![
        {
            let expected = expected.clone();
            variant("ours async (c=100)", move || {
                let r = reactor.clone();
                let expected = expected.clone();
                timed(
                    async move { r.run(Inputs::new()).max_concurrency(W3_CONCURRENCY).await },
                    move |out| check_eq("W3 ours", ours::<Vec<i64>>(out, "W3 ours"), &*expected),
                )
            })
        },
        {
            let expected = expected.clone();
            variant("tokio baseline (c=100)", move || {
                let dag = dag.clone();
                let expected = expected.clone();
                timed(
                    async move { baseline::run_tokio(dag, Arc::from(vec![]), W3_CONCURRENCY).await },
                    move |v| check_eq("W3 baseline", get::<Vec<i64>>(&v).clone(), &*expected),
                )
            })
        },
    ];
    {
        let (r, expected) = (w3_reactor(), expected.clone());
        variants.push(variant("ours, default options", move || {
            let r = r.clone();
            let expected = expected.clone();
            timed(async move { r.run(Inputs::new()).await }, move |out| {
                check_eq(
                    "W3 ours default",
                    ours::<Vec<i64>>(out, "W3 ours default"),
                    &*expected,
                )
            })
        }));
    }
    {
        let (dag, expected) = (Arc::new(w3_dag()), expected.clone());
        variants.push(variant("tokio baseline, unlimited", move || {
            let dag = dag.clone();
            let expected = expected.clone();
            timed(
                async move { baseline::run_tokio(dag, Arc::from(vec![]), W3_N as usize).await },
                move |v| {
                    check_eq(
                        "W3 baseline unlimited",
                        get::<Vec<i64>>(&v).clone(),
                        &*expected,
                    )
                },
            )
        }));
    }
    let s = bench.measure(&variants);
    let title = "W3 io fanout 1,000 x 1 ms timer, max concurrency 100";
    bench.print_table(title, W3_N as usize, &variants, &s);
    println!("  {:<26} 1,466 ms", "Elixir Reactor 1.0.6");
    let rounds = (W3_N as usize / W3_CONCURRENCY) as u32;
    println!(
        "  {rounds} rounds of {W3_CONCURRENCY} timers: ours {} per round, baseline {} per round",
        fmt_d(s[0].median / rounds),
        fmt_d(s[1].median / rounds)
    );
    bench.rows.push(Row {
        workload: "W3 io fanout 1,000 x 1 ms, c=100".into(),
        steps: W3_N as usize,
        ours: Some(s[0]),
        baseline: Some(s[1]),
        ours_sync: None,
        inline: None,
        plain: None,
        elixir: "1,466 ms",
    });
    bench.target(
        "W3 io fanout, default options: wall time vs its ideal (the baseline, unlimited)".into(),
        ratio(s[2].median, s[3].median),
        1.2,
        "x",
        format!(
            "(ours {} / baseline {})",
            fmt_d(s[2].median),
            fmt_d(s[3].median)
        ),
    );
    bench.target(
        "W3 io fanout: wall time vs tokio baseline".into(),
        ratio(s[0].median, s[1].median),
        1.1,
        "x",
        format!(
            "(ours {} / baseline {})",
            fmt_d(s[0].median),
            fmt_d(s[1].median)
        ),
    );
}

// ----- W4: map -------------------------------------------------------------

const W4_N: i64 = 100_000;
const W4_MEMORY_N: i64 = 1_000_000;

fn w4_reactor(batch: usize, strict: bool) -> Reactor {
    w4_reactor_with(batch, strict, false)
}

/// With `awaiting`, the nested step is an async closure (a task per
/// element, under the run's concurrency limit), else a plain closure.
fn w4_reactor_with(batch: usize, strict: bool, awaiting: bool) -> Reactor {
    let x2 = step("x2").argument("n", reactor::kinds::element("double"));
    let x2 = if awaiting {
        x2.run(|a, _| async move { Ok(a.get::<i64>("n")? * 2) })
    } else {
        x2.run_sync(|a, _| Ok(a.get::<i64>("n")? * 2))
    };
    Reactor::builder("w4_map")
        .input("numbers")
        .add(
            reactor::kinds::map("double", input("numbers"))
                .steps([x2])
                .batch_size(batch)
                .strict_ordering(strict)
                .allow_async(true)
                .into_step()
                .expect("W4 map"),
        )
        .returns("double")
        .build()
        .expect("W4 plans")
}

/// The W4 baseline: a task per element, at most `limit` in flight, outputs
/// in order.
async fn w4_baseline(input: Arc<Vec<i64>>, limit: usize) -> Vec<i64> {
    tokio::spawn(async move {
        let mut out: Vec<Option<Val>> = vec![None; input.len()];
        let mut tasks = tokio::task::JoinSet::new();
        let mut next = 0;
        let mut done = 0;
        while done < input.len() {
            while tasks.len() < limit && next < input.len() {
                let (i, n) = (next, input[next]);
                tasks.spawn(async move { (i, val(n * 2)) });
                next += 1;
            }
            let (i, v) = tasks.join_next().await.expect("running").expect("no panic");
            out[i] = Some(v);
            done += 1;
        }
        out.into_iter()
            .map(|v| *get::<i64>(&v.expect("done")))
            .collect()
    })
    .await
    .expect("W4 baseline")
}

fn w4_values(v: &Value) -> Vec<i64> {
    v.get::<Vec<Value>>()
        .expect("W4 output list")
        .iter()
        .map(|x| *x.get::<i64>().expect("W4 output"))
        .collect()
}

/// Peak RSS since the last reset, in MiB (Linux; 0 elsewhere).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn w4(bench: &mut Bench) {
    let input: Arc<Vec<i64>> = Arc::new((0..W4_N).collect());
    let expected: Arc<Vec<i64>> = Arc::new(input.iter().map(|n| n * 2).collect());
    let mut variants = Vec::new();
    for batch in [10_usize, 100, 1_000] {
        for strict in [true, false] {
            let reactor = w4_reactor(batch, strict);
            let (input, expected) = (input.clone(), expected.clone());
            let name: &'static str = Box::leak(
                format!(
                    "ours batch {batch}, {}",
                    if strict { "strict" } else { "unordered" }
                )
                .into_boxed_str(),
            );
            variants.push(variant(name, move || {
                let r = reactor.clone();
                let input = input.clone();
                let expected = expected.clone();
                timed(
                    async move { r.run(Inputs::new().with("numbers", (*input).clone())).await },
                    move |out| {
                        let mut got = w4_values(&out.expect("W4 run"));
                        if !strict {
                            got.sort_unstable();
                        }
                        check_eq("W4 ours", got, &*expected)
                    },
                )
            }));
        }
    }
    {
        let reactor = w4_reactor_with(1_000, true, true);
        let (input, expected) = (input.clone(), expected.clone());
        variants.push(variant("ours batch 1000, async step", move || {
            let r = reactor.clone();
            let input = input.clone();
            let expected = expected.clone();
            timed(
                async move { r.run(Inputs::new().with("numbers", (*input).clone())).await },
                move |out| {
                    check_eq(
                        "W4 ours async",
                        w4_values(&out.expect("W4 run")),
                        &*expected,
                    )
                },
            )
        }));
    }
    {
        let (input, expected) = (input.clone(), expected.clone());
        variants.push(variant("baseline (1,000 in flight)", move || {
            let input = input.clone();
            let expected = expected.clone();
            timed(w4_baseline(input, 1_000), move |got| {
                check_eq("W4 baseline", got, &*expected)
            })
        }));
    }
    {
        let (input, expected) = (input.clone(), expected.clone());
        variants.push(variant("futures buffered(1000)", move || {
            let input = input.clone();
            let expected = expected.clone();
            timed(
                async move {
                    futures::stream::iter(input.iter().copied())
                        .map(|n| async move { val(n * 2) })
                        .buffered(1_000)
                        .map(|v| *get::<i64>(&v))
                        .collect::<Vec<i64>>()
                        .await
                },
                move |got| check_eq("W4 buffered", got, &*expected),
            )
        }));
    }
    let s = bench.measure(&variants);
    bench.print_table(
        "W4 map: N = 100,000 integers doubled",
        W4_N as usize,
        &variants,
        &s,
    );
    println!(
        "  {:<26} 11.6 s for N = 10,000 at batch 100 (cannot finish 100,000 in 2 min)",
        "Elixir Reactor 1.0.6"
    );
    let (baseline, buffered) = (s[s.len() - 2], s[s.len() - 1]);
    let async_step = s[s.len() - 3];
    bench.target(
        "W4 awaiting element vs a futures `buffered` stream".into(),
        ratio(async_step.median, buffered.median),
        2.0,
        "x",
        format!(
            "(ours {} / buffered {})",
            fmt_d(async_step.median),
            fmt_d(buffered.median)
        ),
    );
    for (v, st) in variants.iter().zip(&s).take(s.len() - 2) {
        bench.target(
            format!("W4 {}: per-element cost vs baseline", v.name),
            ratio(st.median, baseline.median),
            2.0,
            "x",
            format!(
                "(ours {} / baseline {})",
                fmt_d(st.median),
                fmt_d(baseline.median)
            ),
        );
    }
    bench.rows.push(Row {
        workload: "W4 map N=100,000 (batch 1,000, strict)".into(),
        steps: W4_N as usize,
        ours: Some(s[4]),
        baseline: Some(baseline),
        ours_sync: None,
        inline: None,
        plain: None,
        elixir: "> 120 s",
    });

    // Ordering: with uneven element latencies, completion order does not
    // wait for a slow element at the head of the window.
    let uneven = |strict: bool| {
        Reactor::builder("w4_uneven")
            .input("numbers")
            .add(
                reactor::kinds::map("double", reactor::input("numbers"))
                    .steps([step("x2")
                        .argument("n", reactor::kinds::element("double"))
                        .run(|a, _| async move {
                            let n = *a.get::<i64>("n")?;
                            let ms = if n % 10 == 0 { 10 } else { 1 };
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            Ok(n * 2)
                        })])
                    .batch_size(10)
                    .strict_ordering(strict)
                    .allow_async(true)
                    .into_step()
                    .expect("W4 uneven map"),
            )
            .returns("double")
            .build()
            .expect("W4 uneven plans")
    };
    let uneven_input: Arc<Vec<i64>> = Arc::new((0..500).collect());
    let mut order_variants = Vec::new();
    for strict in [true, false] {
        let reactor = uneven(strict);
        let input = uneven_input.clone();
        let name = if strict { "strict" } else { "unordered" };
        order_variants.push(variant(name, move || {
            let r = reactor.clone();
            let input = input.clone();
            timed(
                // As many elements at once as the batch: this measures the
                // ordering, not the concurrency limit.
                async move {
                    r.run(Inputs::new().with("numbers", (*input).clone()))
                        .max_concurrency(10)
                        .await
                },
                move |out| {
                    let mut got = w4_values(&out.expect("W4 uneven run"));
                    got.sort_unstable();
                    check_eq(
                        "W4 uneven",
                        got,
                        &(0..500).map(|n| n * 2).collect::<Vec<i64>>(),
                    )
                },
            )
        }));
    }
    let o = bench.measure(&order_variants);
    bench.print_table(
        "W4 ordering: 500 elements, batch 10, every 10th takes 10 ms, the others 1 ms",
        500,
        &order_variants,
        &o,
    );
    println!(
        "  unordered / strict = {:.2}x",
        ratio(o[1].median, o[0].median)
    );

    // Memory: 1,000,000 elements, collected and streamed into a sink, each
    // in a process of its own so that its peak RSS is its own.
    println!();
    println!("W4 memory: N = 1,000,000 (peak RSS of a process doing only that run)");
    for batch in [100_usize, 1_000] {
        let collected = w4_memory_child(batch, false);
        let streamed = w4_memory_child(batch, true);
        println!(
            "  batch {batch:>5}: collected {collected:>7.1} MiB peak; streamed into a sink {streamed:>7.1} MiB peak"
        );
        if batch == 1_000 {
            bench.target(
                "W4 streamed map of 1,000,000 elements, batch 1,000: peak RSS".into(),
                streamed,
                64.0,
                " MiB",
                "(VmHWM of a process running only that map)".into(),
            );
        }
    }
}

/// Runs one W4 memory measurement in a child process; its peak RSS in MiB.
fn w4_memory_child(batch: usize, streamed: bool) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args([
            "--w4-memory-child",
            &batch.to_string(),
            if streamed { "sink" } else { "collect" },
        ])
        .output()
        .expect("W4 memory child");
    assert!(
        out.status.success(),
        "W4 memory child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("PEAK_MIB ")
                .and_then(|v| v.trim().parse().ok())
        })
        .expect("the child reports its peak")
}

/// The child's side: one map over 1,000,000 elements, checked, then its peak.
fn w4_memory_run(batch: usize, streamed: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let source = || reactor::kinds::MapSource::from_iterator(0..W4_MEMORY_N);
    if streamed {
        let sum = Arc::new(AtomicUsize::new(0));
        let s2 = sum.clone();
        let reactor = Reactor::builder("w4_stream")
            .input("numbers")
            .add(
                reactor::kinds::map("double", reactor::input("numbers"))
                    .steps([step("x2")
                        .argument("n", reactor::kinds::element("double"))
                        .run_sync(|a, _| Ok(a.get::<i64>("n")? * 2))])
                    .batch_size(batch)
                    .sink(move |v| {
                        s2.fetch_add(*v.get::<i64>()? as usize, Ordering::Relaxed);
                        Ok(())
                    })
                    .into_step()
                    .expect("W4 stream map"),
            )
            .returns("double")
            .build()
            .expect("W4 stream plans");
        let out = rt.block_on(async move {
            tokio::spawn(async move { reactor.run(Inputs::new().with("numbers", source())).await })
                .await
                .expect("task")
        });
        assert_eq!(
            *out.expect("W4 stream").get::<u64>().unwrap(),
            W4_MEMORY_N as u64
        );
        let want = (W4_MEMORY_N * (W4_MEMORY_N - 1)) as usize;
        assert_eq!(sum.load(Ordering::Relaxed), want, "W4 stream: WRONG RESULT");
    } else {
        let reactor = w4_reactor(batch, true);
        let out = rt.block_on(async move {
            tokio::spawn(async move { reactor.run(Inputs::new().with("numbers", source())).await })
                .await
                .expect("task")
        });
        let got = w4_values(&out.expect("W4 memory run"));
        assert!(
            got.iter().enumerate().all(|(i, v)| *v == 2 * i as i64)
                && got.len() == W4_MEMORY_N as usize,
            "W4 memory: WRONG RESULT"
        );
    }
    println!("PEAK_MIB {:.1}", peak_rss_mib());
}

fn w6(bench: &mut Bench) {
    let log = Arc::new(Mutex::new(Vec::with_capacity(W6_N as usize)));
    let reactor = w6_reactor(log.clone());
    let expected: Arc<Vec<i64>> = Arc::new((1..=W6_N).rev().collect());
    let variants = vec![variant("ours async (default)", move || {
        log.lock().expect("undo log").clear();
        let r = reactor.clone();
        let log = log.clone();
        let expected = expected.clone();
        timed(async move { r.run(x_input()).await }, move |out| {
            match out {
                Err(reactor::Error::Run(e)) => {
                    assert_eq!(e.errors.len(), 1, "W6: one failure, no undo errors: {e}");
                    assert_eq!(e.errors[0].step, format!("s{}", W6_N + 1), "W6: {e}");
                }
                Err(e) => panic!("W6: the run failed with the wrong error: {e}"),
                Ok(v) => panic!("W6: WRONG RESULT: the run succeeded with {v:?}"),
            }
            let undone = log.lock().expect("undo log");
            assert_eq!(undone.len(), W6_N as usize, "W6: WRONG number of undos");
            assert!(
                *undone == *expected,
                "W6: undos not in reverse completion order: first {:?}",
                &undone[..undone.len().min(10)]
            );
        })
    })];
    let s = bench.measure(&variants);
    let title = "W6 saga rollback: chain of 1,000 undoable steps, step 1,001 fails";
    bench.print_table(title, W6_N as usize + 1, &variants, &s);
    println!("  {:<26} 2,481 ms", "Elixir Reactor 1.0.6");
    println!("  checked: the run fails; exactly 1,000 undos, in order 1000, 999, ..., 1");
    bench.rows.push(Row {
        workload: "W6 saga rollback 1,000".into(),
        steps: W6_N as usize + 1,
        ours: Some(s[0]),
        baseline: None,
        ours_sync: None,
        inline: None,
        plain: None,
        elixir: "2,481 ms",
    });
}

fn w7(bench: &mut Bench) {
    let retries = Arc::new(AtomicUsize::new(0));
    let reactor = w7_reactor(retries.clone());
    let variants = vec![variant("ours async (default)", move || {
        retries.store(0, Ordering::SeqCst);
        let r = reactor.clone();
        let retries = retries.clone();
        timed(async move { r.run(Inputs::new()).await }, move |out| {
            check_eq("W7", ours::<i64>(out, "W7"), &(W7_N * (W7_N + 1) / 2));
            check_eq("W7 retries", retries.load(Ordering::SeqCst), &333);
        })
    })];
    let s = bench.measure(&variants);
    let title = "W7 retry: 1,000 steps, every third fails once, compensate retries";
    bench.print_table(title, W7_N as usize, &variants, &s);
    println!("  {:<26} 1,837 ms", "Elixir Reactor 1.0.6");
    println!("  checked: success; exactly 333 retries");
    bench.rows.push(Row {
        workload: "W7 retry 1,000 (333 retries)".into(),
        steps: W7_N as usize,
        ours: Some(s[0]),
        baseline: None,
        ours_sync: None,
        inline: None,
        plain: None,
        elixir: "1,837 ms",
    });
}

fn w8(bench: &mut Bench) {
    let gauge = Arc::new(Gauge::default());
    let reactor = w8_reactor(gauge.clone());
    let pool = ConcurrencyPool::new(W8_POOL);
    let overall_max = Arc::new(AtomicUsize::new(0));
    let expected = W8_N + W8_N * (W8_N + 1) / 2;
    let variants = {
        let overall_max = overall_max.clone();
        vec![variant("ours, 100 runs, pool 16", move || {
            gauge.running.store(0, Ordering::SeqCst);
            gauge.max.store(0, Ordering::SeqCst);
            let r = reactor.clone();
            let pool = pool.clone();
            let gauge = gauge.clone();
            let overall_max = overall_max.clone();
            let check_pool = pool.clone();
            timed(
                async move {
                    let runs: Vec<_> = (0..W8_RUNS)
                        .map(|_| {
                            let r = r.clone();
                            let pool = pool.clone();
                            tokio::spawn(async move {
                                r.run(x_input()).pool(pool).max_concurrency(W8_POOL).await
                            })
                        })
                        .collect();
                    let mut outs = Vec::with_capacity(W8_RUNS);
                    for run in runs {
                        outs.push(run.await.expect("W8 run task panicked"));
                    }
                    outs
                },
                move |outs| {
                    assert_eq!(outs.len(), W8_RUNS);
                    for out in outs {
                        check_eq("W8", ours::<i64>(out, "W8"), &expected);
                    }
                    let max = gauge.max.load(Ordering::SeqCst);
                    assert!(
                        max <= W8_POOL,
                        "W8: {max} steps ran at once, over the pool's {W8_POOL}"
                    );
                    assert_eq!(gauge.running.load(Ordering::SeqCst), 0);
                    assert_eq!(check_pool.available(), W8_POOL, "W8: pool slots leaked");
                    overall_max.fetch_max(max, Ordering::SeqCst);
                },
            )
        })]
    };
    let s = bench.measure(&variants);
    let steps = W8_RUNS * (W8_N as usize + 1);
    let title = "W8 shared pool 16: 100 concurrent runs x 11 steps";
    bench.print_table(title, steps, &variants, &s);
    println!("  {:<26} 1,374 ms (busy-waits)", "Elixir Reactor 1.0.6");
    println!(
        "  checked: all 100 succeed; at most {W8_POOL} steps at once (highest seen: {})",
        overall_max.load(Ordering::SeqCst)
    );
    bench.rows.push(Row {
        workload: "W8 pool 16, 100 runs x 11 steps".into(),
        steps,
        ours: Some(s[0]),
        baseline: None,
        ours_sync: None,
        inline: None,
        plain: None,
        elixir: "1,374 ms (busy-waits)",
    });
}

fn build_1m(bench: &mut Bench) {
    let mut total = Vec::new();
    let mut plan_only = Vec::new();
    let mut declare = Vec::new();
    let mut drop_times = Vec::new();
    for _ in 0..bench.cfg.build_runs {
        let started = Instant::now();
        let mut b = w1_declare(BUILD_STEPS, false);
        let declared = started.elapsed();
        let reactor = b.build().expect("1,000,000-step W1 plans");
        let all = started.elapsed();
        assert_eq!(reactor.step_count(), BUILD_STEPS as usize + 1);
        let dropping = Instant::now();
        drop(reactor);
        drop_times.push(dropping.elapsed());
        declare.push(declared);
        plan_only.push(all - declared);
        total.push(all);
    }
    let (total, plan_only, declare, dropped) = (
        stats(total),
        stats(plan_only),
        stats(declare),
        stats(drop_times),
    );
    println!();
    println!(
        "Build and plan a 1,000,000-step W1-shaped reactor  [{} runs, no warm-up]",
        bench.cfg.build_runs
    );
    println!(
        "  {:<26} {:>11} {:>11} {:>11} {:>11}",
        "phase", "median", "min", "max", "per step"
    );
    for (name, s) in [
        ("declare steps (builder)", declare),
        ("build() = plan", plan_only),
        ("declare + build (total)", total),
        ("drop the reactor", dropped),
    ] {
        println!(
            "  {:<26} {:>11} {:>11} {:>11} {:>11}",
            name,
            fmt_d(s.median),
            fmt_d(s.min),
            fmt_d(s.max),
            fmt_d(s.median / BUILD_STEPS as u32)
        );
    }
    println!(
        "  {:<26} about 16 s to build 10,000 steps (quadratic)",
        "Elixir Reactor 1.0.6"
    );
    bench.target(
        "build + plan of a 1,000,000-step W1 reactor".into(),
        total.median.as_secs_f64(),
        1.0,
        " s",
        format!(
            "(declare {} + build() {})",
            fmt_d(declare.median),
            fmt_d(plan_only.median)
        ),
    );
}

// ----- W10: CPU-heavy map ------------------------------------------------

const W10_N: u64 = 64;

/// Arithmetic on `n`, `rounds` times (about 5 ms at the calibrated count).
fn w10_work(n: u64, rounds: u64) -> u64 {
    let mut x = n.wrapping_add(1);
    for i in 0..rounds {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(i ^ n);
        x ^= x >> 29;
    }
    x
}

/// How many rounds of [`w10_work`] take about 5 ms on this machine.
fn w10_rounds() -> u64 {
    let probe = 2_000_000;
    let started = Instant::now();
    std::hint::black_box(w10_work(std::hint::black_box(1), probe));
    let per_round = started.elapsed().as_secs_f64() / probe as f64;
    ((0.005 / per_round) as u64).max(1)
}

fn w10_reactor(rounds: u64, cpu_bound: bool) -> Reactor {
    let s = step("crunch").argument("n", reactor::kinds::element("crunch_all"));
    let s = if cpu_bound { s.cpu_bound() } else { s };
    Reactor::builder("w10")
        .input("numbers")
        .add(
            reactor::kinds::map("crunch_all", input("numbers"))
                .items::<u64>()
                .steps([s.run_sync(move |a, _| Ok(w10_work(*a.get::<u64>("n")?, rounds)))])
                .into_step()
                .expect("W10 map"),
        )
        .returns("crunch_all")
        .build()
        .expect("W10 plans")
}

fn w10(bench: &mut Bench) {
    let rounds = w10_rounds();
    let input: Arc<Vec<u64>> = Arc::new((0..W10_N).collect());
    let expected: Arc<Vec<u64>> = Arc::new(input.iter().map(|&n| w10_work(n, rounds)).collect());
    let mut variants = Vec::new();
    for cpu_bound in [false, true] {
        for conc in [1_usize, 2] {
            let reactor = w10_reactor(rounds, cpu_bound);
            let (input, expected) = (input.clone(), expected.clone());
            let name: &'static str = Box::leak(
                format!(
                    "{} step, max_concurrency {conc}",
                    if cpu_bound { "cpu_bound" } else { "plain" }
                )
                .into_boxed_str(),
            );
            variants.push(variant(name, move || {
                let r = reactor.clone();
                let (input, expected) = (input.clone(), expected.clone());
                timed(
                    async move {
                        r.run(Inputs::new().with("numbers", (*input).clone()))
                            .max_concurrency(conc)
                            .await
                    },
                    move |out| {
                        let got: Vec<u64> = out
                            .expect("W10 run")
                            .get::<Vec<Value>>()
                            .expect("W10 outputs")
                            .iter()
                            .map(|v| *v.get::<u64>().expect("W10 output"))
                            .collect();
                        check_eq("W10", got, &*expected)
                    },
                )
            }));
        }
    }
    let s = bench.measure(&variants);
    bench.print_table(
        "W10 CPU-heavy map: 64 elements, about 5 ms of arithmetic each",
        W10_N as usize,
        &variants,
        &s,
    );
    for (k, kind) in ["plain", "cpu_bound"].iter().enumerate() {
        let (one, two) = (s[2 * k], s[2 * k + 1]);
        let speedup = one.median.as_secs_f64() / two.median.as_secs_f64();
        println!("  {kind}: max_concurrency 2 is {speedup:.2}x faster than 1");
        if *kind == "cpu_bound" {
            // Reported beside: the blocking pool's threads are woken on
            // the waker's core and wait for the kernel to spread them.
            continue;
        }
        bench.target_at_least(
            format!("W10 {kind} step: speed-up of two cores over one"),
            speedup,
            1.8,
            "x",
            format!(
                "({} with 1, {} with 2: {speedup:.2}x faster)",
                fmt_d(one.median),
                fmt_d(two.median)
            ),
        );
    }
}

// ----- 1,000,000 steps: memory and cost per step -------------------------

const MILLION: i64 = 1_000_000;

/// In a child process (a fresh heap): builds a 1,000,000-step W1 (`ours`:
/// async closures; `plain`: plain closures; `baseline`: the tokio
/// baseline's DAG), runs it [`MILLION_RUNS`] times, prints the peak RSS
/// before and after the first run and the median time of a run. (The
/// first run also pays the page faults of a fresh heap.) For `ours`, it
/// also times [`SMALL_RUNS`] runs of a 1,000-step W1 after each
/// million-step run, and prints their median: the two sizes are measured
/// in the same minute, as a ratio in this suite is, where this VM's speed
/// drifts by tens of percent from one minute to the next.
fn w1_million_run(which: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let before = peak_rss_mib();
    let expected = w1_expected(MILLION);
    let mut built = before;
    let mut peak = before;
    let mut took = Vec::new();
    let mut small_took = Vec::new();
    for round in 0..MILLION_RUNS {
        let elapsed = match which {
            "baseline" => {
                let dag = Arc::new(w1_dag(MILLION, true));
                if round == 0 {
                    built = peak_rss_mib();
                }
                let started = Instant::now();
                let v = rt.block_on(baseline::run_tokio(dag.clone(), x_val(), 2));
                let took = started.elapsed();
                check_eq("1M baseline", *get::<i64>(&v), &expected);
                // The DAG is dropped after the timing, as the small runs'
                // reactor is.
                drop(dag);
                took
            }
            kind => {
                let reactor = w1_reactor(MILLION, kind == "ours");
                if round == 0 {
                    built = peak_rss_mib();
                }
                let r = reactor.clone();
                let started = Instant::now();
                let out = rt.block_on(async move {
                    tokio::spawn(async move { r.run(x_input()).await })
                        .await
                        .expect("task")
                });
                let took = started.elapsed();
                check_eq("1M ours", ours::<i64>(out, "1M ours"), &expected);
                // The reactor is dropped after the timing, as the small
                // runs' reactor is.
                drop(reactor);
                took
            }
        };
        took.push(elapsed);
        if round == 0 {
            peak = peak_rss_mib();
        }
        if which == "ours" {
            small_took.extend(w1_small_runs(&rt, round == 0));
        }
    }
    took.sort();
    if !small_took.is_empty() {
        small_took.sort();
        println!("SMALL_NS {}", small_took[small_took.len() / 2].as_nanos());
    }
    println!("BEFORE_MIB {before:.1}");
    println!("BUILT_MIB {built:.1}");
    println!("PEAK_MIB {peak:.1}");
    println!("RUN_NS {}", took[took.len() / 2].as_nanos());
}

/// How many times the 1,000,000-step child runs W1 (the median is taken).
const MILLION_RUNS: usize = 3;
/// How many 1,000-step runs it times after each of them.
const SMALL_RUNS: usize = 21;

/// [`SMALL_RUNS`] timed runs of a 1,000-step W1 of async closures, each
/// awaited from a task of its own as the suite's samples are (after three
/// untimed ones when `warm_up`).
fn w1_small_runs(rt: &tokio::runtime::Runtime, warm_up: bool) -> Vec<Duration> {
    let reactor = w1_reactor(1_000, true);
    let expected = w1_expected(1_000);
    let runs = if warm_up { 3 + SMALL_RUNS } else { SMALL_RUNS };
    let mut took: Vec<Duration> = (0..runs)
        .map(|_| {
            let r = reactor.clone();
            let (elapsed, out) = rt.block_on(async move {
                tokio::spawn(async move {
                    let started = Instant::now();
                    let out = r.run(x_input()).await;
                    (started.elapsed(), out)
                })
                .await
                .expect("task")
            });
            check_eq("W1 1k", ours::<i64>(out, "W1 1k"), &expected);
            elapsed
        })
        .collect();
    took.split_off(runs - SMALL_RUNS)
}

struct MillionRun {
    before: f64,
    built: f64,
    peak: f64,
    run: Duration,
    /// The median 1,000-step run (`ours` only).
    small: Option<Duration>,
}

fn w1_million_child(which: &str) -> MillionRun {
    let out = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(["--w1-million-child", which])
        .output()
        .expect("1M child");
    assert!(
        out.status.success(),
        "1M child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("the child reports {name}"))
    };
    MillionRun {
        before: field("BEFORE_MIB "),
        built: field("BUILT_MIB "),
        peak: field("PEAK_MIB "),
        run: Duration::from_nanos(field("RUN_NS ") as u64),
        small: text
            .lines()
            .find_map(|l| {
                l.strip_prefix("SMALL_NS ")
                    .and_then(|v| v.trim().parse().ok())
            })
            .map(Duration::from_nanos),
    }
}

/// Peak RSS per step of a 1,000,000-step W1 run beside the baseline's,
/// and the run's cost per step against a 1,000-step run's.
fn w1_million(bench: &mut Bench) {
    let mut small = Duration::ZERO;
    println!();
    println!("1,000,000-step W1 in a fresh process each (peak RSS of the first run, whole process; median of {MILLION_RUNS} runs)");
    println!(
        "  {:<28} {:>10} {:>12} {:>16} {:>12}",
        "executor", "peak RSS", "per step", "of it, the DAG", "run / step"
    );
    let mut got = Vec::new();
    for which in ["ours", "plain", "baseline"] {
        let r = w1_million_child(which);
        let bytes = |mib: f64| mib * 1024.0 * 1024.0 / MILLION as f64;
        let per_step = bytes(r.peak - r.before);
        let label = match which {
            "ours" => "ours, async closures",
            "plain" => "ours, plain closures",
            _ => "tokio baseline",
        };
        println!(
            "  {label:<28} {:>6.1} MiB {:>10.0} B {:>14.0} B {:>12}",
            r.peak,
            per_step,
            bytes(r.built - r.before),
            fmt_d(r.run / MILLION as u32)
        );
        got.push((per_step, r.run / MILLION as u32));
        if let Some(s) = r.small {
            small = s / 1_000;
        }
    }
    println!(
        "  ours, async closures, n=1,000, in the same process: {} a step (median of {} runs)",
        fmt_d(small),
        MILLION_RUNS * SMALL_RUNS
    );
    bench.target(
        "W1 1,000,000 steps: peak RSS per step vs the tokio baseline".into(),
        got[0].0 / got[2].0,
        1.5,
        "x",
        format!(
            "(ours {:.0} B / baseline {:.0} B a step)",
            got[0].0, got[2].0
        ),
    );
    bench.target(
        "W1 async closures: cost per step at 1,000,000 vs at 1,000".into(),
        ratio(got[0].1, small),
        1.3,
        "x",
        format!("({} vs {})", fmt_d(got[0].1), fmt_d(small)),
    );
}

fn print_summary(bench: &Bench) {
    println!();
    println!("Summary (medians; ratio = ours / reference; markdown)");
    println!();
    println!("| workload | per step (n) | ours async | tokio baseline | async ratio | ours sync | inline baseline | sync ratio | ours, plain closures (chunked) | its ratio to tokio | Elixir Reactor 1.0.6 |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let cell = |s: Option<Stats>| s.map_or("–".to_string(), |s| fmt_d(s.median));
    let r = |a: Option<Stats>, b: Option<Stats>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", ratio(a.median, b.median)),
        _ => "–".to_string(),
    };
    for row in &bench.rows {
        let per_step = row
            .ours
            .map_or("–".to_string(), |s| fmt_d(s.median / row.steps as u32));
        println!(
            "| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.workload,
            per_step,
            row.steps,
            cell(row.ours),
            cell(row.baseline),
            r(row.ours, row.baseline),
            cell(row.ours_sync),
            cell(row.inline),
            r(row.ours_sync, row.inline),
            cell(row.plain),
            r(row.plain, row.baseline),
            row.elixir
        );
    }
    println!();
    println!("Targets");
    println!();
    for t in &bench.targets {
        println!(
            "- {}: **{}** ({})",
            t.name,
            if t.pass { "PASS" } else { "FAIL" },
            t.detail
        );
    }
    let failed = bench.targets.iter().filter(|t| !t.pass).count();
    println!();
    println!(
        "{} of {} targets pass{}",
        bench.targets.len() - failed,
        bench.targets.len(),
        if failed > 0 { "; see FAIL above" } else { "" }
    );
}

/// A workload's entry point.
type WorkloadFn = fn(&mut Bench);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(k) = args.iter().position(|a| a == "--w4-memory-child") {
        let batch = args[k + 1].parse().expect("batch size");
        w4_memory_run(batch, args[k + 2] == "sink");
        return;
    }
    if let Some(k) = args.iter().position(|a| a == "--w1-million-child") {
        w1_million_run(&args[k + 1]);
        return;
    }
    let cfg = Config::from_args();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "reactor workloads: {cores} tokio workers, {} mode ({} samples after {} warm-up)",
        if cfg.quick { "quick" } else { "full" },
        cfg.runs,
        cfg.warmup
    );
    let mut bench = Bench {
        rt,
        cfg,
        cores,
        targets: Vec::new(),
        rows: Vec::new(),
    };
    // The build comes first, on a fresh heap, as it would at start-up.
    let workloads: [(&str, WorkloadFn); 14] = [
        ("build", build_1m),
        ("w1", w1),
        ("w1y", awaiting::w1_awaiting),
        ("w2", w2),
        ("w3", w3),
        ("w4", w4),
        ("w5", w5),
        ("w6", w6),
        ("w7", w7),
        ("w8", w8),
        ("w9", small_runs::w9),
        ("w10", w10),
        ("rss", w1_million),
        ("auto", adaptive::adaptive),
    ];
    for (id, run) in workloads {
        if bench.cfg.selected(id) {
            run(&mut bench);
        }
    }
    print_summary(&bench);
}
