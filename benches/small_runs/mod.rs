//! W9, small runs: input `x`; `a` returns x + 1 and `b` returns x + 2
//! (async closures, a task each), `c` sums them. What a service running a
//! reactor per request pays: the latency of one run (median and p99 of
//! sequential runs) and runs per second with 1, 16 and 256 concurrent
//! callers, beside the baseline executor on the same DAG and a
//! hand-written `tokio::join!` of two spawned tasks.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::baseline::{self, get, val, Dag, Node, Src, Val, Work};
use super::{fmt_d, ratio, Bench};
use reactor::{input, result, step, Inputs, Reactor};

const X: i64 = 20;
const EXPECTED: i64 = 2 * X + 3;

fn reactor() -> Reactor {
    Reactor::builder("w9_small")
        .input("x")
        .add(
            step("a")
                .argument("x", input("x"))
                .run(|args, _| async move { Ok(args.get::<i64>("x")? + 1) }),
        )
        .add(
            step("b")
                .argument("x", input("x"))
                .run(|args, _| async move { Ok(args.get::<i64>("x")? + 2) }),
        )
        .add(
            step("c")
                .argument("a", result("a"))
                .argument("b", result("b"))
                .run_sync(|args, _| Ok(args.get::<i64>("a")? + args.get::<i64>("b")?)),
        )
        .returns("c")
        .build()
        .expect("W9 plans")
}

fn dag() -> Dag {
    let add = |k: i64| Node {
        args: vec![Src::Input(0)],
        work: Work::Async(Arc::new(move |a: Vec<Val>| {
            Box::pin(async move { val(*get::<i64>(&a[0]) + k) })
        })),
    };
    Dag::new(
        vec![
            add(1),
            add(2),
            Node {
                args: vec![Src::Step(0), Src::Step(1)],
                work: Work::Sync(Arc::new(|a: &[Val]| {
                    val(*get::<i64>(&a[0]) + *get::<i64>(&a[1]))
                })),
            },
        ],
        2,
    )
}

type OneRun = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = i64> + Send>> + Send + Sync>;

/// The three ways of running the DAG, each a function making one run.
fn runners() -> Vec<(&'static str, OneRun)> {
    let r = reactor();
    let d = Arc::new(dag());
    let ours: OneRun = Arc::new(move || {
        let r = r.clone();
        Box::pin(async move {
            let out = r.run(Inputs::new().with("x", X)).await.expect("W9 runs");
            *out.get::<i64>().expect("an i64")
        })
    });
    let base: OneRun = Arc::new(move || {
        let d = d.clone();
        Box::pin(
            async move { *get::<i64>(&baseline::run_tokio(d, Arc::from(vec![val(X)]), 2).await) },
        )
    });
    let join: OneRun = Arc::new(|| {
        Box::pin(async {
            let (a, b) = tokio::join!(tokio::spawn(async { X + 1 }), tokio::spawn(async { X + 2 }));
            a.expect("a") + b.expect("b")
        })
    });
    vec![
        ("ours", ours),
        ("baseline executor", base),
        ("tokio::join!", join),
    ]
}

/// Median and p99 of `n` sequential runs, in one task.
fn latency(bench: &Bench, run: &OneRun, n: usize) -> (Duration, Duration) {
    let run = run.clone();
    let mut samples = bench.rt.block_on(async move {
        tokio::spawn(async move {
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                let started = Instant::now();
                let out = run().await;
                samples.push(started.elapsed());
                assert_eq!(out, EXPECTED, "W9: WRONG RESULT");
            }
            samples
        })
        .await
        .expect("the timing task")
    });
    samples.sort_unstable();
    (samples[n / 2], samples[(n * 99 / 100).min(n - 1)])
}

/// Runs per second with `callers` tasks running `total` runs between them.
fn throughput(bench: &Bench, run: &OneRun, callers: usize, total: usize) -> f64 {
    let left = Arc::new(AtomicUsize::new(total));
    let run = run.clone();
    bench.rt.block_on(async move {
        let started = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let (left, run) = (left.clone(), run.clone());
                tokio::spawn(async move {
                    while left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        assert_eq!(run().await, EXPECTED, "W9: WRONG RESULT");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("a caller");
        }
        total as f64 / started.elapsed().as_secs_f64()
    })
}

pub(super) fn w9(bench: &mut Bench) {
    let runners = runners();
    let (n, total) = if bench.cfg.quick {
        (2_000, 10_000)
    } else {
        (10_000, 50_000)
    };
    for (_, run) in &runners {
        latency(bench, run, n / 10); // warm-up
    }
    println!();
    println!("W9 small runs (a, b async closures; c sums): latency of {n} sequential runs, runs/s over {total} runs");
    println!(
        "  {:<20} {:>10} {:>10} {:>12} {:>12} {:>12}",
        "executor", "median", "p99", "1 caller", "16 callers", "256 callers"
    );
    let mut rows = Vec::new();
    for (name, run) in &runners {
        let (median, p99) = latency(bench, run, n);
        let rates: Vec<f64> = [1, 16, 256]
            .iter()
            .map(|&c| throughput(bench, run, c, total))
            .collect();
        println!(
            "  {name:<20} {:>10} {:>10} {:>12.0} {:>12.0} {:>12.0}",
            fmt_d(median),
            fmt_d(p99),
            rates[0],
            rates[1],
            rates[2]
        );
        rows.push((median, rates));
    }
    let (ours, base) = (&rows[0], &rows[1]);
    bench.target(
        "W9 small run: latency vs baseline executor".into(),
        ratio(ours.0, base.0),
        1.5,
        "x",
        format!("(ours {} / baseline {})", fmt_d(ours.0), fmt_d(base.0)),
    );
    for (k, callers) in [(1, 16), (2, 256)] {
        bench.target_at_least(
            format!("W9 small runs: throughput with {callers} callers vs baseline executor"),
            ours.1[k] / base.1[k],
            0.8,
            "x",
            format!("(ours {:.0} / baseline {:.0} runs/s)", ours.1[k], base.1[k]),
        );
    }
}
