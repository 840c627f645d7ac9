//! A durable checkout saga on embedded SQLite: the README's main job.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example checkout                  # 200 orders
//! cargo run --release --example checkout -- --orders 1000 --fresh
//! ```
//!
//! Each order is a durable run of `checkout`: reserve stock, charge the
//! card, ship. One order in seven has an address no courier serves:
//! shipping fails, and the saga refunds the charge and releases the
//! stock. The journal lives in `reactor-data/journal.db`; the shop's
//! external systems (stock, payments, courier) are simulated in
//! `reactor-data/shop.log`, and honour idempotency keys as real ones do.
//!
//! Kill it with `kill -9` mid-run and start it again: it takes up the
//! orders that were under way from the journal and finishes them (a step
//! in flight at the crash runs again; the shop's idempotency keys make
//! that harmless), then skips the orders already finished (their
//! idempotency keys start nothing). At the end it checks the shop's
//! ledger: every shipped order was charged once and never refunded, every
//! failed one was refunded and released.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use reactor::durable::Runtime;
use reactor::{input, result, step, Error, Inputs, Reactor};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(about = "A durable checkout saga on embedded SQLite")]
struct Args {
    /// Where the journal and the shop's ledger are kept.
    #[arg(long, default_value = "reactor-data")]
    data: PathBuf,
    /// How many orders to place.
    #[arg(long, default_value_t = 200)]
    orders: u32,
    /// Orders in flight at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Every n-th order cannot be shipped (0: none).
    #[arg(long, default_value_t = 7)]
    undeliverable_every: u32,
    /// How long the courier takes to accept a parcel, in milliseconds.
    #[arg(long, default_value_t = 20)]
    courier_ms: u64,
    /// Start from an empty data directory.
    #[arg(long)]
    fresh: bool,
}

/// What the checkout is given.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Order {
    id: u32,
    sku: String,
    qty: u32,
    cents: u64,
    undeliverable: bool,
}

/// The shop's external systems, in one append-only file. Each operation
/// is keyed by the step's idempotency key: doing it again does nothing.
struct Shop {
    log: Mutex<(std::fs::File, HashSet<String>)>,
    courier: Duration,
}

impl Shop {
    fn open(path: &Path, courier: Duration) -> std::io::Result<Shop> {
        let seen = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Shop {
            log: Mutex::new((file, seen)),
            courier,
        })
    }

    /// Records `what` under `key` once; whether it was new.
    fn once(&self, what: &str, key: &str) -> bool {
        let line = format!("{what} {key}");
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if log.1.contains(&line) {
            return false;
        }
        let _ = writeln!(log.0, "{line}");
        log.1.insert(line);
        true
    }

    fn lines(&self) -> HashSet<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).1.clone()
    }
}

fn shop(ctx: &reactor::Context) -> Arc<Shop> {
    ctx.get::<Arc<Shop>>("shop")
        .expect("the runtime gives the shop")
        .clone()
}

fn checkout() -> Result<Reactor, Error> {
    Reactor::builder("checkout")
        .input_as::<Order>("order")
        .add(
            step("reserve")
                .argument("order", input("order"))
                .output::<u32>()
                .run(|a, ctx| async move {
                    let order = a.get::<Order>("order")?;
                    shop(&ctx).once("reserve", &ctx.idempotency_key());
                    Ok(order.qty)
                })
                .undo(|_, _, ctx| async move {
                    shop(&ctx).once("release", &ctx.idempotency_key());
                    Ok(())
                }),
        )
        .add(
            step("charge")
                .argument("order", input("order"))
                .argument("reserved", result("reserve"))
                .output::<u64>()
                .run(|a, ctx| async move {
                    let order = a.get::<Order>("order")?;
                    shop(&ctx).once("charge", &ctx.idempotency_key());
                    Ok(order.cents * u64::from(*a.get::<u32>("reserved")?))
                })
                .undo(|_, _, ctx| async move {
                    shop(&ctx).once("refund", &ctx.idempotency_key());
                    Ok(())
                }),
        )
        .add(
            step("ship")
                .argument("order", input("order"))
                .argument("paid", result("charge"))
                .output::<String>()
                .max_retries(2)
                .run(|a, ctx| async move {
                    let order = a.get::<Order>("order")?;
                    let shop = shop(&ctx);
                    tokio::time::sleep(shop.courier).await;
                    if order.undeliverable {
                        return Err(
                            format!("no courier serves the address of order {}", order.id).into(),
                        );
                    }
                    shop.once("ship", &ctx.idempotency_key());
                    Ok(format!("parcel-{}", order.id))
                }),
        )
        .returns("ship")
        .build()
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    if args.fresh {
        let _ = std::fs::remove_dir_all(&args.data);
    }
    std::fs::create_dir_all(&args.data)?;
    let shop = Arc::new(Shop::open(
        &args.data.join("shop.log"),
        Duration::from_millis(args.courier_ms),
    )?);
    let runtime = Runtime::open(&args.data)?;
    runtime.register(checkout()?)?;
    runtime.context("shop", shop.clone());
    println!("journal: {}", args.data.join("journal.db").display());

    let started = Instant::now();
    let recovery = runtime.recover().await;
    if !recovery.finished.is_empty() || !recovery.skipped.is_empty() {
        println!(
            "took up {} orders left unfinished by an earlier process ({} could not be)",
            recovery.finished.len(),
            recovery.skipped.len()
        );
    }
    for (id, e) in &recovery.skipped {
        eprintln!("could not take up {id}: {e}");
    }

    let mut outcomes: HashMap<u32, Result<String, String>> = HashMap::new();
    let mut results = futures::stream::iter(1..=args.orders)
        .map(|id| {
            let runtime = runtime.clone();
            let order = Order {
                id,
                sku: format!("sku-{}", id % 13),
                qty: 1 + id % 3,
                cents: 1_999,
                undeliverable: args.undeliverable_every != 0 && id % args.undeliverable_every == 0,
            };
            async move {
                let key = format!("order-{id}");
                let out = runtime
                    .start("checkout", Inputs::new().with("order", order))
                    .run_id(key.clone())
                    .idempotency_key(key)
                    .await;
                (id, out)
            }
        })
        .buffer_unordered(args.concurrency.max(1));
    while let Some((id, out)) = results.next().await {
        let shown = match &out {
            Ok(v) => Ok(v.get::<String>().cloned().unwrap_or_default()),
            Err(e) => Err(e.to_string()),
        };
        match &shown {
            Ok(parcel) => println!("order-{id} shipped as {parcel}"),
            Err(_) => println!("order-{id} undone"),
        }
        outcomes.insert(id, shown);
    }
    let shipped = outcomes.values().filter(|o| o.is_ok()).count();
    println!(
        "{} orders in {:.2?}: {shipped} shipped, {} undone (charge refunded, stock released)",
        outcomes.len(),
        started.elapsed(),
        outcomes.len() - shipped
    );

    // The shop's ledger agrees with the journal.
    let lines = shop.lines();
    let has =
        |what: &str, id: u32, step: &str| lines.contains(&format!("{what} order-{id}:{step}"));
    let mut consistent = true;
    for (id, out) in &outcomes {
        let ok = match out {
            Ok(_) => {
                has("reserve", *id, "reserve")
                    && has("charge", *id, "charge")
                    && has("ship", *id, "ship")
                    && !has("refund", *id, "charge")
                    && !has("release", *id, "reserve")
            }
            Err(_) => {
                !has("ship", *id, "ship")
                    && has("charge", *id, "charge") == has("refund", *id, "charge")
                    && has("reserve", *id, "reserve") == has("release", *id, "reserve")
            }
        };
        if !ok {
            consistent = false;
            eprintln!("order-{id}: the shop's ledger disagrees with the journal");
        }
    }
    println!(
        "the shop's ledger {}",
        if consistent {
            "agrees: every shipped order charged once, every undone one refunded"
        } else {
            "DISAGREES"
        }
    );
    Ok(consistent)
}
