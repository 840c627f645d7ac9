//! The performance guide's "Shared Concurrency Pools": one pool's limit
//! shared by several runs at once (the guide's `allocate_pool(100)` with
//! `concurrency_key`), so that concurrent runs do not compete past it.
//!
//! `ApiFanOut` calls a (simulated) API 12 times at once, then joins the
//! answers. The demo starts three runs of it together, first each with its
//! own limit of 6 (up to 18 calls in flight), then all on one shared
//! [`ConcurrencyPool`] of 6 (never more than 6), and checks both results
//! and the shared limit.
//!
//! ```text
//! cargo run --release --example shared_pools
//! cargo run --release --example shared_pools -- run ApiFanOut --input call_ms=5
//! ```

mod common;

use std::future::IntoFuture;
use std::process::ExitCode;
use std::time::Instant;

use common::{check, simulated_calls, InFlight};
use reactor::cli::{App, Entry};
use reactor::{BoxError, ConcurrencyPool, Inputs, Reactor};

const CALLS: usize = 12;

/// 12 concurrent calls each awaiting `call_ms`, then their sum.
fn api_fan_out(gauge: &InFlight) -> Result<Reactor, reactor::Error> {
    simulated_calls(
        "ApiFanOut",
        "12 simulated API calls at once, then their sum",
        CALLS,
        gauge,
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    let reactor = api_fan_out(&InFlight::default()).expect("a valid reactor");
    App::new("shared_pools")
        .about("Three concurrent runs sharing one concurrency pool")
        .reactor(Entry::new(reactor).input::<u64>("call_ms").output::<u64>())
        .demo(demo)
        .main()
        .await
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    const LIMIT: usize = 6;
    let ms = if quick { 5_u64 } else { 25 };
    let gauge = InFlight::default();
    let reactor = api_fan_out(&gauge)?;
    let expected = (0..CALLS as u64).sum::<u64>();

    for shared in [false, true] {
        gauge.reset();
        // The guide's `allocate_pool(100)`: here a pool of 6, shared by
        // every run given it.
        let pool = ConcurrencyPool::named("api", LIMIT);
        let started = Instant::now();
        let runs = (0..3).map(|_| {
            let run = reactor
                .run(Inputs::new().with("call_ms", ms))
                .max_concurrency(LIMIT);
            let run = if shared { run.pool(pool.clone()) } else { run };
            tokio::spawn(run.into_future())
        });
        for handle in futures::future::join_all(runs).await {
            let out = handle??;
            check(*out.get::<u64>()? == expected, format!("sum {out:?}"))?;
        }
        let peak = gauge.peak();
        println!(
            "3 runs, {}: {:.1?}, at most {peak} calls in flight",
            if shared {
                "one shared pool of 6"
            } else {
                "each its own limit of 6"
            },
            started.elapsed()
        );
        if shared {
            check(
                peak <= LIMIT,
                format!("{peak} calls in flight on a pool of {LIMIT}"),
            )?;
        } else {
            check(
                peak <= 3 * LIMIT,
                format!("{peak} calls in flight, 3 runs of {LIMIT}"),
            )?;
        }
    }
    Ok(())
}
