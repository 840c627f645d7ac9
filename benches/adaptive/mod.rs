//! The adaptive limit against a simulated service whose latency grows once
//! more than 32 calls are in flight (2 ms, times the square of the load
//! past 32): a sweep of fixed limits (1, 5, 10, 20, 50, 100, 200) and
//! `Concurrency::Auto`, in one run, 1,000 calls each.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{fmt_d, ratio, Bench};
use reactor::{result, step, Concurrency, Inputs, Reactor};

const CALLS: usize = 1_000;
const KNEE: f64 = 32.0;
const BASE: Duration = Duration::from_millis(2);

#[derive(Default)]
struct Service {
    in_flight: AtomicUsize,
}

impl Service {
    async fn call(&self) {
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let load = (n as f64 / KNEE).max(1.0);
        tokio::time::sleep(BASE.mul_f64(load * load)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn reactor(service: &Arc<Service>) -> Reactor {
    let mut b = Reactor::builder("service_calls");
    let mut all = step("all");
    for i in 0..CALLS {
        let service = service.clone();
        b.add(step(format!("c{i}")).run(move |_, _| {
            let service = service.clone();
            async move {
                service.call().await;
                Ok(())
            }
        }));
        all = all.argument(format!("c{i}"), result(format!("c{i}")));
    }
    b.add(all.run_sync(|args, _| Ok(args.len())));
    b.returns("all");
    b.build().expect("plans")
}

pub(super) fn adaptive(bench: &mut Bench) {
    let service = Arc::new(Service::default());
    let reactor = reactor(&service);
    let settings: Vec<(String, Concurrency)> = [1, 5, 10, 20, 50, 100, 200]
        .into_iter()
        .map(|n| (format!("fixed {n}"), Concurrency::Limit(n)))
        .chain([("Auto".to_string(), Concurrency::Auto)])
        .collect();
    let samples = if bench.cfg.quick { 3 } else { 5 };
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); settings.len()];
    for _ in 0..samples {
        for (k, (_, c)) in settings.iter().enumerate() {
            let (r, c) = (reactor.clone(), *c);
            let took = bench.rt.block_on(async move {
                tokio::spawn(async move {
                    let started = Instant::now();
                    let out = r
                        .run(Inputs::new())
                        .concurrency(c)
                        .await
                        .expect("the calls run");
                    assert_eq!(*out.get::<usize>().expect("a count"), CALLS, "WRONG RESULT");
                    started.elapsed()
                })
                .await
                .expect("the timing task")
            });
            times[k].push(took);
        }
    }
    println!();
    println!("Adaptive limit: {CALLS} calls to a service slowing past {KNEE} in flight, medians of {samples}");
    let medians: Vec<Duration> = times
        .into_iter()
        .map(|mut t| {
            t.sort_unstable();
            t[t.len() / 2]
        })
        .collect();
    for ((name, _), m) in settings.iter().zip(&medians) {
        println!("  {name:<12} {:>12}", fmt_d(*m));
    }
    let (auto, fixed) = medians.split_last().expect("Auto is last");
    let (best_k, best) = fixed
        .iter()
        .enumerate()
        .min_by_key(|(_, d)| **d)
        .expect("a sweep");
    bench.target(
        format!(
            "Adaptive limit vs the best fixed limit ({})",
            settings[best_k].0
        ),
        ratio(*auto, *best),
        1.1,
        "x",
        format!("(Auto {} / best fixed {})", fmt_d(*auto), fmt_d(*best)),
    );
}
