//! The performance guide's "Tuning Concurrency Settings": its starting
//! points for `max_concurrency` by kind of work, tried on three reactors.
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
//! counting primes; `MixedWork` is both at once, 20 awaiting calls and 4
//! `cpu_bound` steps. The demo runs each at the guide's setting for it
//! (and the I/O-bound one also at 50%, 150% and 200% of its baseline, as
//! the guide suggests trying, and at an external service's limit), with
//! 20 ms calls (5 ms with `--quick`), printing the time taken and the most
//! steps seen in flight at once, and checks each result and that the limit
//! held every time. The times are printed, not checked: they depend on the
//! machine and its load.
//!
//! ```text
//! cargo run --release --example concurrency_starting_points
//! cargo run --release --example concurrency_starting_points -- run IoBoundWork --input call_ms=20 --max-concurrency 20 --timeline
//! ```

mod common;

use std::process::ExitCode;
use std::time::Instant;

use common::{check, cores, simulated_call, simulated_calls, sum_of, InFlight};
use reactor::cli::{App, Entry};
use reactor::{step, BoxError, Inputs, Reactor, StepSpec};

const CALLS: usize = 40;
const CRUNCHES: usize = 8;
/// `MixedWork`'s awaiting calls and CPU-bound steps.
const MIXED_CALLS: usize = 20;
const MIXED_CRUNCHES: usize = 4;

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

/// Step `crunch_{i}`: counts the primes below `work` (`cpu_bound`),
/// counted by `gauge`.
fn crunch(i: usize, gauge: &InFlight, work: u64) -> StepSpec {
    let gauge = gauge.clone();
    step(format!("crunch_{i}"))
        .cpu_bound()
        .run_sync(move |_, _| {
            let _flying = gauge.enter();
            Ok(count_primes(work))
        })
}

/// 8 CPU-bound steps, then their sum.
fn cpu_bound(gauge: &InFlight, work: u64) -> Result<Reactor, reactor::Error> {
    let mut builder = Reactor::builder("CpuBoundWork");
    builder.description("8 cpu_bound steps each counting primes, then their sum");
    for i in 0..CRUNCHES {
        builder.add(crunch(i, gauge, work));
    }
    builder
        .add(sum_of("sum", (0..CRUNCHES).map(|i| format!("crunch_{i}"))))
        .returns("sum")
        .build()
}

/// A mixed workload: 20 steps each awaiting `call_ms` (returning their
/// index) and 4 `cpu_bound` steps counting primes below `work`, all
/// independent, then the sum of their results.
fn mixed(gauge: &InFlight, work: u64) -> Result<Reactor, reactor::Error> {
    let mut builder = Reactor::builder("MixedWork");
    builder
        .description(
            "20 steps awaiting a simulated call of `call_ms` ms and 4 cpu_bound steps counting primes, then their sum",
        )
        .input("call_ms");
    for i in 0..MIXED_CALLS {
        builder.add(simulated_call(i, gauge));
    }
    for i in 0..MIXED_CRUNCHES {
        builder.add(crunch(i, gauge, work));
    }
    let steps = (0..MIXED_CALLS)
        .map(|i| format!("call_{i}"))
        .chain((0..MIXED_CRUNCHES).map(|i| format!("crunch_{i}")));
    builder.add(sum_of("sum", steps)).returns("sum").build()
}

#[tokio::main]
async fn main() -> ExitCode {
    let gauge = InFlight::default();
    let io = io_bound(&gauge).expect("a valid reactor");
    let cpu = cpu_bound(&gauge, 200_000).expect("a valid reactor");
    let mixed = mixed(&gauge, 200_000).expect("a valid reactor");
    App::new("concurrency_starting_points")
        .about("The guide's max_concurrency starting points, tried on I/O-bound, CPU-bound and mixed reactors")
        .reactor(Entry::new(io).input::<u64>("call_ms").output::<u64>())
        .reactor(Entry::new(cpu).output::<u64>())
        .reactor(Entry::new(mixed).input::<u64>("call_ms").output::<u64>())
        .demo(demo)
        .main()
        .await
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let gauge = InFlight::default();
    let io = io_bound(&gauge)?;
    let call_ms = Inputs::new().with("call_ms", if quick { 5_u64 } else { 20 });
    let work = if quick { 5_000 } else { 300_000 };
    let cpu = cpu_bound(&gauge, work)?;
    let mixed = mixed(&gauge, work)?;
    let n = cores();
    let expected_io = (0..CALLS as u64).sum::<u64>();
    let expected_cpu = count_primes(work) * CRUNCHES as u64;
    let expected_mixed =
        (0..MIXED_CALLS as u64).sum::<u64>() + count_primes(work) * MIXED_CRUNCHES as u64;
    println!("{n} cores");
    println!(
        "{:<34} {:>6} {:>10} {:>10}",
        "workload", "limit", "time", "peak"
    );
    let io = (&io, &call_ms, expected_io);
    let cpu = (&cpu, &Inputs::new(), expected_cpu);
    let mixed = (&mixed, &call_ms, expected_mixed);
    let settings = [
        ("I/O-bound, 4 x cores", io, n * 4),
        ("I/O-bound, 50% of that", io, (n * 2).max(1)),
        ("I/O-bound, 150%", io, n * 6),
        ("I/O-bound, 200%", io, n * 8),
        ("mixed, 2 x cores", mixed, n * 2),
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
    println!("Each limit held. (Typically the I/O-bound reactor speeds up as its limit rises, while CPU-bound\nwork gains nothing past the core count; the times above are measured, not checked.)");
    Ok(())
}
