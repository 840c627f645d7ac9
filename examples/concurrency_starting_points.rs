//! The performance guide's "Tuning Concurrency Settings": its starting
//! points for `max_concurrency` by kind of work, tried on two reactors.
//!
//! | workload | starting point |
//! |---|---|
//! | I/O-bound (API calls, database queries) | 4 × cores |
//! | CPU-bound | 1 × cores |
//! | mixed | 2 × cores |
//! | an external service's limit | 10 |
//!
//! `IoBoundWork` is 40 steps each awaiting a (simulated) 20 ms call;
//! `CpuBoundWork` is 8 `cpu_bound` steps each counting primes. The demo
//! runs each at the guide's settings (and at 50%, 150% and 200% of the
//! I/O baseline, as the guide suggests trying), printing the time taken
//! and the most steps seen in flight at once, and checks that the limit
//! held every time.
//!
//! ```text
//! cargo run --release --example concurrency_starting_points
//! cargo run --release --example concurrency_starting_points -- run IoBoundWork --max-concurrency 20 --timeline
//! ```

mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{check, cores, InFlight};
use reactor::cli::{App, Entry};
use reactor::{result, step, BoxError, Inputs, Reactor};

const CALLS: usize = 40;
const CRUNCHES: usize = 8;

/// 40 awaiting calls, then their sum.
fn io_bound(gauge: &InFlight, call: Duration) -> Result<Reactor, reactor::Error> {
    let mut builder = Reactor::builder("IoBoundWork");
    builder.description("40 steps each awaiting a simulated 20 ms API call, then their sum");
    let mut sum = step("sum");
    for i in 0..CALLS {
        let gauge = gauge.clone();
        builder.add(step(format!("call_{i}")).run(move |_, _| {
            let gauge = gauge.clone();
            async move {
                let _flying = gauge.enter();
                tokio::time::sleep(call).await;
                Ok(i as u64)
            }
        }));
        sum = sum.argument(format!("r{i}"), result(format!("call_{i}")));
    }
    builder
        .add(sum.run_sync(|args, _| {
            let mut total = 0_u64;
            for (_, v) in args.iter() {
                total += v.get::<u64>()?;
            }
            Ok(total)
        }))
        .returns("sum")
        .build()
}

/// The number of primes below `n`, counted the slow way.
fn count_primes(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

/// 8 CPU-bound steps, then their sum.
fn cpu_bound(gauge: &InFlight, work: u64) -> Result<Reactor, reactor::Error> {
    let mut builder = Reactor::builder("CpuBoundWork");
    builder.description("8 cpu_bound steps each counting primes, then their sum");
    let mut sum = step("sum");
    for i in 0..CRUNCHES {
        let gauge = gauge.clone();
        builder.add(
            step(format!("crunch_{i}"))
                .cpu_bound()
                .run_sync(move |_, _| {
                    let _flying = gauge.enter();
                    Ok(count_primes(work))
                }),
        );
        sum = sum.argument(format!("r{i}"), result(format!("crunch_{i}")));
    }
    builder
        .add(sum.run_sync(|args, _| {
            let mut total = 0_u64;
            for (_, v) in args.iter() {
                total += v.get::<u64>()?;
            }
            Ok(total)
        }))
        .returns("sum")
        .build()
}

#[tokio::main]
async fn main() -> ExitCode {
    let gauge = InFlight::default();
    let io = io_bound(&gauge, Duration::from_millis(20)).expect("a valid reactor");
    let cpu = cpu_bound(&gauge, 200_000).expect("a valid reactor");
    App::new("concurrency_starting_points")
        .about("The guide's max_concurrency starting points, tried on I/O- and CPU-bound reactors")
        .reactor(Entry::new(io).output::<u64>())
        .reactor(Entry::new(cpu).output::<u64>())
        .demo(demo)
        .main()
        .await
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let gauge = InFlight::default();
    let call = Duration::from_millis(if quick { 5 } else { 20 });
    let io = io_bound(&gauge, call)?;
    let cpu = cpu_bound(&gauge, if quick { 5_000 } else { 300_000 })?;
    let n = cores();
    let expected_io = (0..CALLS as u64).sum::<u64>();
    let expected_cpu = count_primes(if quick { 5_000 } else { 300_000 }) * CRUNCHES as u64;
    println!("{n} cores");
    println!(
        "{:<34} {:>6} {:>10} {:>10}",
        "workload", "limit", "time", "peak"
    );
    let settings: [(&str, &Reactor, usize, u64); 7] = [
        ("I/O-bound, 4 x cores", &io, n * 4, expected_io),
        ("I/O-bound, 50% of that", &io, (n * 2).max(1), expected_io),
        ("I/O-bound, 150%", &io, n * 6, expected_io),
        ("I/O-bound, 200%", &io, n * 8, expected_io),
        ("mixed, 2 x cores", &io, n * 2, expected_io),
        ("external service limit, 10", &io, 10, expected_io),
        ("CPU-bound, 1 x cores", &cpu, n, expected_cpu),
    ];
    for (label, reactor, limit, expected) in settings {
        gauge.reset();
        let started = Instant::now();
        let out = reactor.run(Inputs::new()).max_concurrency(limit).await?;
        let took = started.elapsed();
        let peak = gauge.peak();
        println!("{label:<34} {limit:>6} {:>10.1?} {peak:>10}", took);
        check(
            *out.get::<u64>()? == expected,
            format!("{label}: sum {out:?}, expected {expected}"),
        )?;
        check(
            peak <= limit,
            format!("{label}: {peak} steps in flight, limit {limit}"),
        )?;
    }
    println!("Each limit held; the I/O-bound reactor speeds up as the limit rises, the CPU-bound one stops gaining at the core count.");
    Ok(())
}
