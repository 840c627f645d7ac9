//! Submits `n` runs of `fulfilment` (default 10,000) for the `worker`
//! examples to drive, then watches them end and checks the shop's
//! ledger: every order shipped was charged, every one that failed was
//! undone.
//!
//! ```text
//! cargo run --release --example submitter -- 10000
//! ```
//!
//! Submitting again is harmless: each order's idempotency key starts
//! nothing the second time. `--fresh` drops the examples' schema first.

#[path = "fulfilment/mod.rs"]
mod fulfilment;

use std::collections::HashMap;

use futures::StreamExt;
use std::time::{Duration, Instant};

use reactor::durable::Runtime;
use reactor::journal::{PgStore, RunStatus};
use reactor::Inputs;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let url = fulfilment::database_url();
    if args.iter().any(|a| a == "--fresh") {
        PgStore::connect_in(&url, fulfilment::SCHEMA)
            .await?
            .drop_schema()
            .await?;
        let _ = std::fs::remove_file(fulfilment::ledger());
    }
    let store = PgStore::connect_in(&url, fulfilment::SCHEMA).await?;
    let limits = store.shared_limits();
    let runtime = Runtime::new(store);
    runtime.register(fulfilment::fulfilment(Some(limits), Duration::ZERO))?;
    runtime.register(fulfilment::chain(fulfilment::CHAIN))?;
    // `--chain`: runs of a 100-step chain instead (the benchmark's shape).
    let chain = args.iter().any(|a| a == "--chain");
    let reactor = if chain { "chain" } else { "fulfilment" };
    let input = if chain { "n" } else { "order" };
    let began = Instant::now();
    // 64 at a time: the store commits concurrent submissions together.
    let submitted: Vec<Result<String, reactor::Error>> = futures::stream::iter(0..n)
        .map(|order| {
            let id = format!("order-{order}");
            runtime
                .start(reactor, Inputs::new().with(input, order))
                .run_id(id.clone())
                .idempotency_key(id)
                .submit()
        })
        .buffer_unordered(64)
        .collect()
        .await;
    submitted.into_iter().collect::<Result<Vec<_>, _>>()?;
    println!("submitted {n} runs in {:.1?}", began.elapsed());
    let began = Instant::now();
    // Runs under way, polled (cheaper as they end), then the totals.
    loop {
        let mut under_way = 0;
        for status in [RunStatus::Running, RunStatus::Unwinding] {
            under_way += runtime
                .runs(Some(status))
                .await?
                .iter()
                .filter(|r| !r.id.contains('/'))
                .count();
        }
        if under_way == 0 {
            break;
        }
        println!("{:>7.2?}: {under_way} under way", began.elapsed());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = began.elapsed();
    let runs = runtime.runs(None).await?;
    let ended = |status| {
        runs.iter()
            .filter(|r| !r.id.contains('/') && r.status == status)
            .count()
    };
    println!(
        "{:>7.2?}: {} completed, {} failed, 0 under way ({:.0} runs/s since submitted)",
        took,
        ended(RunStatus::Completed),
        ended(RunStatus::Failed),
        n as f64 / took.as_secs_f64()
    );
    if chain {
        println!(
            "{:.0} durable steps/s",
            (n as usize * fulfilment::CHAIN) as f64 / took.as_secs_f64()
        );
        return Ok(());
    }
    // The shop's ledger: each order's effects, each undone once if it failed.
    let ledger = std::fs::read_to_string(fulfilment::ledger()).unwrap_or_default();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for line in ledger.lines() {
        *count.entry(line).or_default() += 1;
    }
    let mut bad = 0;
    for order in 0..n {
        for s in ["reserve", "charge"] {
            let key = format!("order-{order}:{s}");
            let done = count
                .get(format!("do {key}").as_str())
                .copied()
                .unwrap_or(0);
            let undone = count
                .get(format!("undo {key}").as_str())
                .copied()
                .unwrap_or(0);
            let want_undone = usize::from(order % 10 == 7);
            if done == 0 || (undone > 0) != (want_undone > 0) {
                bad += 1;
            }
        }
    }
    if bad > 0 {
        return Err(format!("{bad} effects are not as the saga promises").into());
    }
    println!("every order's effects are as the saga promises");
    Ok(())
}
