//! The performance guide's three memory-aware map configurations, one
//! reactor each:
//!
//! | reactor | records | `batch_size` |
//! |---|---|---|
//! | `LightweightProcessor` | small (~1 KB), light transformation | 1,000 |
//! | `HeavyProcessor` | large (>10 KB), results as large | 10 |
//! | `SingleItemProcessor` | very large (images, files) | 1 |
//!
//! A map holds at most `batch_size` elements (their inputs and results) in
//! flight, so its memory is about `batch_size × (input + output size)`
//! plus the collected results. The demo runs each over generated records,
//! counting the elements in flight, and checks the count never passed the
//! batch size and each result is right; it prints the process's peak RSS.
//!
//! ```text
//! cargo run --release --example memory_aware_processors
//! cargo run --release --example memory_aware_processors -- run HeavyProcessor --input 'records=["a","b"]'
//! ```

mod common;

use std::process::ExitCode;
use std::time::Instant;

use common::{check, peak_rss_mib, InFlight};
use reactor::cli::{App, Entry};
use reactor::kinds::{element, map};
use reactor::{input, step, BoxError, Inputs, Reactor, Value};

/// A map of `transform` over the input `source`, `batch` elements at a time.
fn processor(
    name: &str,
    source: &str,
    batch: usize,
    gauge: &InFlight,
    transform: fn(&str) -> String,
) -> Result<Reactor, BoxError> {
    let gauge = gauge.clone();
    let map_name = if source == "large_items" {
        "process_items"
    } else {
        "process_records"
    };
    let step_name = if source == "large_items" {
        "transform_item"
    } else {
        "transform_record"
    };
    let reactor = Reactor::builder(name)
        .input(source)
        .add(
            map(map_name, input(source))
                .items::<String>()
                .batch_size(batch)
                .steps([step(step_name).argument("record", element(map_name)).run(
                    move |args, _| {
                        let flying = gauge.enter();
                        async move {
                            let record = args.get::<String>("record")?;
                            // An await point, so elements overlap as far as
                            // the batch size lets them.
                            tokio::task::yield_now().await;
                            let out = transform(record);
                            drop(flying);
                            Ok(out)
                        }
                    },
                )])
                .returns(step_name)
                .into_step()?,
        )
        .returns(map_name)
        .build()?;
    Ok(reactor)
}

/// Lightweight: upper-cased.
fn simple_transform(record: &str) -> String {
    record.to_uppercase()
}

/// Heavy: the record repeated, as large results are.
fn complex_transform(record: &str) -> String {
    record.repeat(2)
}

/// Very large: a checksum line in place of the whole item.
fn process_large_item(item: &str) -> String {
    let sum = item
        .bytes()
        .fold(0_u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    format!("{} bytes, checksum {sum:016x}", item.len())
}

type Spec = (&'static str, &'static str, usize, fn(&str) -> String);

const PROCESSORS: [Spec; 3] = [
    ("LightweightProcessor", "records", 1_000, simple_transform),
    ("HeavyProcessor", "records", 10, complex_transform),
    ("SingleItemProcessor", "large_items", 1, process_large_item),
];

#[tokio::main]
async fn main() -> ExitCode {
    let mut app = App::new("memory_aware_processors")
        .about("Three map batch sizes for three sizes of record");
    for (name, source, batch, transform) in PROCESSORS {
        let reactor = processor(name, source, batch, &InFlight::default(), transform)
            .expect("a valid reactor");
        app = app.reactor(Entry::new(reactor).input::<Vec<String>>(source));
    }
    app.demo(demo).main().await
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let scale = if quick { 1 } else { 10 };
    // (how many records, each of how many bytes)
    let sizes = [
        (5_000 * scale, 1_000),
        (200 * scale, 10_000),
        (10 * scale, 1_000_000),
    ];
    for ((name, source, batch, transform), (count, bytes)) in PROCESSORS.into_iter().zip(sizes) {
        let gauge = InFlight::default();
        let reactor = processor(name, source, batch, &gauge, transform)?;
        let records: Vec<String> = (0..count)
            .map(|i| format!("{i:08}").repeat(bytes / 8))
            .collect();
        let expected: Vec<String> = records.iter().map(|r| transform(r)).collect();
        let started = Instant::now();
        let out = reactor.run(Inputs::new().with(source, records)).await?;
        let results = out.get::<Vec<Value>>()?;
        let peak = gauge.peak();
        println!(
            "{name:<22} {count:>6} records of {bytes:>9} bytes, batch {batch:>5}: {:>8.1?}, at most {peak} in flight",
            started.elapsed()
        );
        check(
            peak <= batch,
            format!("{name}: {peak} elements in flight, batch {batch}"),
        )?;
        check(
            results.len() == count,
            format!("{name}: {} results", results.len()),
        )?;
        for (got, want) in results.iter().zip(&expected) {
            check(
                got.get::<String>()? == want,
                format!("{name}: a wrong result"),
            )?;
        }
    }
    println!("peak RSS {:.1} MiB", peak_rss_mib());
    Ok(())
}
