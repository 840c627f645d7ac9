//! The reactor the `worker` and `submitter` examples share: a
//! fulfilment saga (reserve, charge, ship; shipping fails for one order
//! in ten, and the saga undoes the rest), its effects appended to a
//! ledger file with their idempotency keys, charges limited to 2 at once
//! per customer across the cluster.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reactor::limit::SharedLimits;
use reactor::{input, result, step, Limit, Reactor, StepSpec};

/// `DATABASE_URL`, or the local server.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".to_string())
}

/// The schema the examples keep their tables in.
pub const SCHEMA: &str = "fulfilment";

/// The shop's ledger: one line per effect, from every worker.
pub fn ledger() -> PathBuf {
    std::env::temp_dir().join("reactor-fulfilment.log")
}

fn write(line: String) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ledger())
        .expect("the ledger opens");
    f.write_all(format!("{line}\n").as_bytes())
        .expect("the ledger takes a line");
}

/// An effect, done and undone on the ledger under its idempotency key
/// (taking `pause` first: the external call).
fn effect(name: &str, after: Option<&str>, pause: Duration) -> StepSpec {
    let mut s = step(name).argument("order", input("order")).output::<u64>();
    if let Some(a) = after {
        s = s.argument(a, result(a));
    }
    s.run(move |a, ctx| async move {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        write(format!("do {}", ctx.idempotency_key()));
        Ok(*a.get::<u64>("order")?)
    })
    .undo(|_, _, ctx| async move {
        write(format!("undo {}", ctx.idempotency_key()));
        Ok(())
    })
}

/// reserve, charge (at most 2 at once per customer across the cluster,
/// when given the cluster's `limits`), ship; each external call takes
/// `pause`. Limits and pauses are not part of the reactor's definition:
/// workers with and without them share runs.
pub fn fulfilment(limits: Option<Arc<dyn SharedLimits>>, pause: Duration) -> Reactor {
    let mut charge = effect("charge", Some("reserve"), pause);
    if let Some(limits) = limits {
        let per_customer = Limit::per_key("charges_per_customer", 2, |args| {
            Ok(format!("customer-{}", args.get::<u64>("order")? % 100))
        });
        charge = charge.limit(per_customer.shared(limits));
    }
    Reactor::builder("fulfilment")
        .input_as::<u64>("order")
        .add(effect("reserve", None, pause))
        .add(charge)
        .add(
            step("ship")
                .argument("order", input("order"))
                .argument("charge", result("charge"))
                .output::<u64>()
                .max_retries(0)
                .run(|a, _| async move {
                    let order = *a.get::<u64>("order")?;
                    if order % 10 == 7 {
                        return Err("no courier serves this address".into());
                    }
                    Ok(order)
                }),
        )
        .returns("ship")
        .build()
        .expect("the fulfilment reactor is valid")
}

/// A chain of `len` trivial steps, each adding one to the last: the
/// shape the durable benchmark measures (every step a graph level of its
/// own, so each waits for a commit).
pub fn chain(len: usize) -> Reactor {
    let mut b = Reactor::builder("chain");
    b.input_as::<u64>("n");
    b.add(
        step("s0")
            .argument("n", input("n"))
            .output::<u64>()
            .run_sync(|a, _| Ok(*a.get::<u64>("n")? + 1)),
    );
    for i in 1..len {
        let prev = format!("s{}", i - 1);
        b.add(
            step(format!("s{i}"))
                .argument("n", result(prev))
                .output::<u64>()
                .run_sync(|a, _| Ok(*a.get::<u64>("n")? + 1)),
        );
    }
    b.returns(format!("s{}", len - 1));
    b.build().expect("the chain is valid")
}

/// The chain's length.
pub const CHAIN: usize = 100;
