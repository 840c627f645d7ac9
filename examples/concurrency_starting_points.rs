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
//! `IoBoundWork` is 40 steps each awaiting a (simulated) API call of
//! `call_ms` milliseconds; `CpuBoundWork` is 8 `cpu_bound` steps each
//! counting primes. The demo runs each at the guide's settings (and at
//! 50%, 150% and 200% of the I/O baseline, as the guide suggests trying),
//! with 20 ms calls (5 ms with `--quick`), printing the time taken and the
//! most steps seen in flight at once, and checks that the limit held every
//! time.
//!
//! ```text
//! cargo run --release --example concurrency_starting_points
//! cargo run --release --example concurrency_starting_points -- run IoBoundWork --input call_ms=20 --max-concurrency 20 --timeline
//! ```

mod common;

use std::process::ExitCode;
use std::time::Instant;

use common::{check, cores, simulated_calls, sum_of, InFlight};
use reactor::cli::{App, Entry};
use reactor::{step, BoxError, Inputs, Reactor};

const CALLS: usize = 40;
const CRUNCHES: usize = 8;

/// 40 calls each awaiting `call_ms`, then their sum.
fn io_bound(gauge: &InFlight) -> Result<Reactor, reactor::Error> {
    simulated_calls(
        "IoBoundWork",
        "40 steps each awaiting a simulated API call of `call_ms` ms, then their sum",
        CALLS,
        gauge,
    )
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
    }
    builder
        .add(sum_of("sum", (0..CRUNCHES).map(|i| format!("crunch_{i}"))))
        .returns("sum")
        .build()
}

#[tokio::main]
async fn main() -> ExitCode {
    let gauge = InFlight::default();
    let io = io_bound(&gauge).expect("a valid reactor");
    let cpu = cpu_bound(&gauge, 200_000).expect("a valid reactor");
    App::new("concurrency_starting_points")
        .about("The guide's max_concurrency starting points, tried on I/O- and CPU-bound reactors")
        .reactor(Entry::new(io).input::<u64>("call_ms").output::<u64>())
        .reactor(Entry::new(cpu).output::<u64>())
        .demo(demo)
        .main()
        .await
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let gauge = InFlight::default();
    let io = io_bound(&gauge)?;
    let call_ms = Inputs::new().with("call_ms", if quick { 5_u64 } else { 20 });
    let cpu = cpu_bound(&gauge, if quick { 5_000 } else { 300_000 })?;
    let n = cores();
    let expected_io = (0..CALLS as u64).sum::<u64>();
    let expected_cpu = count_primes(if quick { 5_000 } else { 300_000 }) * CRUNCHES as u64;
    println!("{n} cores");
    println!(
        "{:<34} {:>6} {:>10} {:>10}",
        "workload", "limit", "time", "peak"
    );
    let io = (&io, &call_ms, expected_io);
    let cpu = (&cpu, &Inputs::new(), expected_cpu);
    let settings = [
        ("I/O-bound, 4 x cores", io, n * 4),
        ("I/O-bound, 50% of that", io, (n * 2).max(1)),
        ("I/O-bound, 150%", io, n * 6),
        ("I/O-bound, 200%", io, n * 8),
        ("mixed, 2 x cores", io, n * 2),
        ("external service limit, 10", io, 10),
        ("CPU-bound, 1 x cores", cpu, n),
    ];
    for (label, (reactor, inputs, expected), limit) in settings {
        gauge.reset();
        let started = Instant::now();
        let out = reactor.run(inputs.clone()).max_concurrency(limit).await?;
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
