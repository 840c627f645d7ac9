//! Criterion micro-benchmarks of the engine's own cost per step: a fan-out
//! of plain closures (async and sync runs), the same watched by each
//! ready-made middleware, and planning. The standard
//! workloads, with their baselines and targets, are in `workloads.rs`.
//!
//! ```text
//! cargo bench --bench step_overhead
//! ```

use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use reactor::telemetry::{Handlers, Metrics};
use reactor::{input, result, step, Builder, Inputs, Middleware, Reactor, Recording};

fn fanout(n: i64) -> Builder {
    let mut b = Reactor::builder("fanout");
    b.input("x");
    let mut sum = step("sum");
    for i in 1..=n {
        let name = format!("s{i}");
        b.add(
            step(name.clone())
                .argument("x", input("x"))
                .run_sync(move |args, _| Ok(args.get::<i64>("x")? + i)),
        );
        sum = sum.argument(name.clone(), result(name));
    }
    b.add(sum.run_sync(|args, _| {
        Ok(args
            .values()
            .iter()
            .map(|v| *v.get::<i64>().unwrap())
            .sum::<i64>())
    }));
    b.returns("sum");
    b
}

fn runs(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("fanout_run");
    for n in [100_i64, 1_000] {
        let reactor = fanout(n).build().unwrap();
        group.throughput(Throughput::Elements(n as u64));
        for run_async in [true, false] {
            let id = BenchmarkId::new(if run_async { "async" } else { "sync" }, n);
            group.bench_with_input(id, &reactor, |b, reactor| {
                b.to_async(&rt).iter(|| {
                    let reactor = reactor.clone();
                    async move {
                        let r = reactor
                            .run(Inputs::new().with("x", 1_i64))
                            .run_async(run_async);
                        tokio::spawn(r.into_future()).await.unwrap().unwrap()
                    }
                })
            });
        }
    }
    group.finish();
}

/// A middleware that does nothing with the events it is given.
struct Noop;

impl Middleware for Noop {
    fn on_event(&self, _: &reactor::Event<'_>) {}
}

/// What watching a run costs: the 1,000-step fan-out (async run) with no
/// middleware, one that ignores every event (the cost of delivering
/// them), a `Recording`, `telemetry::Metrics` (with no recorder
/// installed: the facade's no-op) and `telemetry::Handlers` with one
/// handler attached to step stops.
fn watched(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("watched_fanout_1000");
    group.throughput(Throughput::Elements(1_000));
    let reactor = fanout(1_000).build().unwrap();
    let handlers = Arc::new(Handlers::new());
    let stops = Arc::new(AtomicU64::new(0));
    let counted = stops.clone();
    handlers.attach("count", "reactor.step.run.stop", move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
    });
    let watchers: [(&str, Option<Arc<dyn Middleware>>); 5] = [
        ("none", None),
        ("noop_middleware", Some(Arc::new(Noop))),
        ("recording", Some(Arc::new(Recording::new()))),
        ("metrics", Some(Arc::new(Metrics::new()))),
        ("handlers", Some(handlers)),
    ];
    for (name, watcher) in watchers {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let mut run = reactor.run(Inputs::new().with("x", 1_i64));
                if let Some(w) = &watcher {
                    run = run.middleware(w.clone());
                }
                async move { tokio::spawn(run.into_future()).await.unwrap().unwrap() }
            })
        });
    }
    group.finish();
}

fn planning(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    let n = 10_000;
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("fanout_10k", |b| {
        b.iter_batched(
            || fanout(n),
            |mut builder| builder.build().unwrap(),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, runs, watched, planning);
criterion_main!(benches);
