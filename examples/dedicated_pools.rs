//! The performance guide's fix for inconsistent performance: dedicated
//! concurrency pools for different kinds of work, so that slow operations
//! cannot take the slots fast ones need (`fast_pool = allocate_pool(100)`,
//! `slow_pool = allocate_pool(10)`).
//!
//! `FastReactor` makes 200 quick calls; `SlowReactor` 30 slow ones. The
//! demo runs several of each at the same time, each kind on its own
//! [`ConcurrencyPool`], and checks that neither pool's limit was passed
//! and every result is right.
//!
//! ```text
//! cargo run --release --example dedicated_pools
//! cargo run --release --example dedicated_pools -- run SlowReactor --input call_ms=50 --progress
//! ```

mod common;

use std::future::IntoFuture;
use std::process::ExitCode;
use std::time::Instant;

use common::{check, simulated_calls, InFlight};
use reactor::cli::{App, Entry};
use reactor::{BoxError, ConcurrencyPool, Inputs, Reactor};

/// `name`: `calls` simulated calls each awaiting `call_ms`, then their sum.
fn calls(name: &str, calls: usize, gauge: &InFlight) -> Result<Reactor, reactor::Error> {
    simulated_calls(
        name,
        &format!("{calls} simulated calls, then their sum"),
        calls,
        gauge,
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    let gauge = InFlight::default();
    let fast = calls("FastReactor", 200, &gauge).expect("a valid reactor");
    let slow = calls("SlowReactor", 30, &gauge).expect("a valid reactor");
    App::new("dedicated_pools")
        .about("Fast and slow work, each on its own concurrency pool")
        .reactor(Entry::new(fast).input::<u64>("call_ms").output::<u64>())
        .reactor(Entry::new(slow).input::<u64>("call_ms").output::<u64>())
        .demo(demo)
        .main()
        .await
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let (fast_gauge, slow_gauge) = (InFlight::default(), InFlight::default());
    let fast = calls("FastReactor", 200, &fast_gauge)?;
    let slow = calls("SlowReactor", 30, &slow_gauge)?;
    let fast_pool = ConcurrencyPool::named("fast", 100);
    let slow_pool = ConcurrencyPool::named("slow", 10);
    let (fast_ms, slow_ms) = if quick { (1_u64, 5_u64) } else { (2, 100) };
    let runs = if quick { 2 } else { 4 };

    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..runs {
        // Fast operations, on the fast pool.
        let run = fast
            .run(Inputs::new().with("call_ms", fast_ms))
            .pool(fast_pool.clone());
        handles.push(("FastReactor", 200, tokio::spawn(run.into_future())));
        // Slow operations, on the slow pool.
        let run = slow
            .run(Inputs::new().with("call_ms", slow_ms))
            .pool(slow_pool.clone());
        handles.push(("SlowReactor", 30, tokio::spawn(run.into_future())));
    }
    for (name, calls, handle) in handles {
        let out = handle.await??;
        let expected = (0..calls).sum::<u64>();
        check(
            *out.get::<u64>()? == expected,
            format!("{name}: sum {out:?}, expected {expected}"),
        )?;
    }
    println!(
        "{runs} runs of each in {:.1?}; fast pool: at most {} of 100 in flight, slow pool: at most {} of 10",
        started.elapsed(),
        fast_gauge.peak(),
        slow_gauge.peak()
    );
    check(fast_gauge.peak() <= 100, "the fast pool's limit held")?;
    check(slow_gauge.peak() <= 10, "the slow pool's limit held")?;
    Ok(())
}
