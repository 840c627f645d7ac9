//! A worker process: drives runs of `fulfilment` from PostgreSQL with
//! the other workers, its steps sharing a pool of 16 slots across all of
//! them, until Ctrl-C (then it hands its runs back at once).
//!
//! ```text
//! cargo run --release --example worker &      # start several
//! cargo run --release --example worker &
//! cargo run --release --example submitter -- 10000
//! kill -9 %1                                  # its runs finish on the others
//! ```
//!
//! `DATABASE_URL` says which server (default: the local one on
//! 127.0.0.1:5432, database `test`). `--bare` drops the shared pool, the
//! per-customer limit and the 5 ms each external call takes: the
//! engine's own throughput, as BENCHMARKS.md measures it.

#[path = "fulfilment/mod.rs"]
mod fulfilment;

use reactor::durable::{Runtime, Worker};
use reactor::journal::PgStore;
use std::time::Duration;

use reactor::ConcurrencyPool;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = PgStore::options(&fulfilment::database_url())
        .schema(fulfilment::SCHEMA)
        .connect()
        .await?;
    let bare = std::env::args().any(|a| a == "--bare");
    let limits = store.shared_limits();
    let runtime = Runtime::new(store);
    runtime.register(fulfilment::chain(fulfilment::CHAIN))?;
    if bare {
        runtime.register(fulfilment::fulfilment(None, Duration::ZERO))?;
    } else {
        let pool = ConcurrencyPool::shared("fulfilment", 16, limits.clone())?;
        runtime.register(fulfilment::fulfilment(
            Some(limits),
            Duration::from_millis(5),
        ))?;
        runtime.configure(move |run| run.pool(pool.clone()));
    }
    eprintln!("worker {} ready", std::process::id());
    let report = Worker::new(&runtime)?
        .max_runs(500)
        .run(async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await;
    eprintln!(
        "worker {}: {} runs finished, {} lost to other workers, {} handed back, {} skipped",
        std::process::id(),
        report.finished,
        report.lost.len(),
        report.handed_back.len(),
        report.skipped.len()
    );
    Ok(())
}
