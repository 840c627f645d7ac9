//! The performance guide's `BatchProcessingReactor`: two maps over the same
//! records, tuned differently: a fast validation with large batches (1,000
//! elements in flight), an expensive computation with small ones (10), and
//! a template return step, "Processing complete: {{ processed }} records".
//!
//! ```text
//! cargo run --release --example batch_processing_reactor
//! cargo run --release --example batch_processing_reactor -- describe BatchProcessingReactor
//! echo '{"records": [{"id": 1, "payload": "a"}], "processing_type": "hash"}' |
//!   cargo run --release --example batch_processing_reactor -- run BatchProcessingReactor --inputs - --progress
//! ```

mod common;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::check;
use reactor::cli::{App, Entry};
use reactor::kinds::{element, map, template};
use reactor::{input, result, step, BoxError, Inputs, Reactor, Value};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
struct Record {
    id: u64,
    payload: String,
}

/// The guide's fast `validate_record`.
fn validate_record(record: &Record) -> bool {
    record.id > 0 && !record.payload.is_empty()
}

/// The guide's `expensive_computation`: a checksum mixed 2,000 times
/// (`hash`), or the payload's bytes summed (`sum`).
fn expensive_computation(record: &Record, processing_type: &str) -> u64 {
    let bytes = record.payload.bytes().map(u64::from);
    match processing_type {
        "sum" => bytes.sum(),
        _ => (0..2_000).fold(record.id ^ bytes.sum::<u64>(), |h, i| {
            (h ^ i).wrapping_mul(0x0100_0000_01b3).rotate_left(5)
        }),
    }
}

fn batch_processing_reactor(heavy_done: Arc<AtomicU64>) -> Result<Reactor, BoxError> {
    let reactor = Reactor::builder("BatchProcessingReactor")
        .input("records")
        .input("processing_type")
        // For small, fast operations: larger batches.
        .add(
            map("process_lightweight_data", input("records"))
                .items::<Record>()
                .batch_size(1_000) // 1,000 elements at once
                .allow_async(true)
                .steps([step("validate")
                    .argument("record", element("process_lightweight_data"))
                    .run_sync(|args, _| Ok(validate_record(args.get::<Record>("record")?)))])
                .returns("validate")
                .into_step()?,
        )
        // For expensive operations: smaller batches.
        .add(
            map("process_heavy_computation", input("records"))
                .items::<Record>()
                .batch_size(10) // only 10 elements at once
                .steps([step("complex_calculation")
                    .argument("record", element("process_heavy_computation"))
                    .argument("processing_type", input("processing_type"))
                    .cpu_bound()
                    .run_sync(move |args, _| {
                        let record = args.get::<Record>("record")?;
                        let kind = args.get::<String>("processing_type")?;
                        heavy_done.fetch_add(1, Ordering::Relaxed);
                        Ok(expensive_computation(record, kind))
                    })])
                .returns("complex_calculation")
                .into_step()?
                .argument("processing_type", input("processing_type")),
        )
        // The guide's `return template(...)`: a template step, returned.
        .add(
            template("summary", "Processing complete: {{ processed }} records").argument(
                "processed",
                result("process_lightweight_data").map(|valid: &Vec<Value>| valid.len()),
            ),
        )
        .returns("summary")
        .build()?;
    Ok(reactor)
}

#[tokio::main]
async fn main() -> ExitCode {
    let reactor = batch_processing_reactor(Arc::default()).expect("a valid reactor");
    App::new("batch_processing_reactor")
        .about("Two maps tuned with different batch sizes, and a template return")
        .reactor(
            Entry::new(reactor)
                .input::<Vec<Record>>("records")
                .input::<String>("processing_type"),
        )
        .demo(demo)
        .main()
        .await
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let n = if quick { 2_000 } else { 100_000 };
    let records: Vec<Record> = (1..=n)
        .map(|id| Record {
            id,
            payload: format!("record {id}"),
        })
        .collect();
    let heavy_done = Arc::new(AtomicU64::new(0));
    let reactor = batch_processing_reactor(heavy_done.clone())?;
    let started = Instant::now();
    let out = reactor
        .run(
            Inputs::new()
                .with("records", records)
                .with("processing_type", "hash".to_string()),
        )
        .await?;
    let text = out.get::<String>()?;
    println!("{text} ({:.1?})", started.elapsed());
    check(*text == format!("Processing complete: {n} records"), text)?;
    let heavy = heavy_done.load(Ordering::Relaxed);
    check(
        heavy == n,
        format!("the heavy map computed {heavy} of {n} records"),
    )?;
    Ok(())
}
