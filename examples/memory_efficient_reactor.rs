//! The performance guide's `MemoryEfficientReactor`: a step that reduces a
//! large dataset to a small summary, so that only the summary is kept.
//! `validate_data` has no undo (so nothing of it goes on the undo stack),
//! and the large intermediate list it builds is dropped inside the step;
//! `generate_report` reads the summary only. The run releases the dataset
//! as soon as no step still needs it.
//!
//! The demo runs it on a generated dataset, checks the report, and checks
//! that the run kept no reference to the dataset once it returned.
//!
//! ```text
//! cargo run --release --example memory_efficient_reactor
//! cargo run --release --example memory_efficient_reactor -- run MemoryEfficientReactor --input 'large_dataset=["a","","b"]'
//! ```

mod common;

use std::process::ExitCode;
use std::sync::Arc;

use common::{check, peak_rss_mib};
use reactor::cli::{App, Entry};
use reactor::{input, result, step, BoxError, Inputs, Reactor};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
struct Summary {
    total_records: usize,
    valid_records: usize,
    /// The first few errors (not all of them: the summary stays small).
    errors: Vec<String>,
}

/// The guide's `validate_large_dataset`: a result per record (a large
/// intermediate list).
fn validate_large_dataset(data: &[String]) -> Vec<Result<(), String>> {
    data.iter()
        .enumerate()
        .map(|(i, r)| {
            if r.is_empty() {
                Err(format!("record {i} is empty"))
            } else {
                Ok(())
            }
        })
        .collect()
}

fn memory_efficient_reactor() -> Result<Reactor, reactor::Error> {
    Reactor::builder("MemoryEfficientReactor")
        .input("large_dataset")
        // No undo: nothing of this step is kept on the undo stack; its
        // result is the small summary only.
        .add(
            step("validate_data")
                .argument("data", input("large_dataset"))
                .run_sync(|args, _| {
                    let data = args.get::<Arc<Vec<String>>>("data")?;
                    let validated = validate_large_dataset(data); // large, dropped below
                    let summary = Summary {
                        total_records: validated.len(),
                        valid_records: validated.iter().filter(|v| v.is_ok()).count(),
                        errors: validated
                            .iter()
                            .filter_map(|v| v.clone().err())
                            .take(5)
                            .collect(),
                    };
                    Ok(summary)
                }),
        )
        // The summary instead of the full dataset.
        .add(
            step("generate_report")
                .argument("summary", result("validate_data"))
                .run_sync(|args, _| {
                    let s = args.get::<Summary>("summary")?;
                    Ok(format!(
                        "{} of {} records valid; first errors: {}",
                        s.valid_records,
                        s.total_records,
                        if s.errors.is_empty() {
                            "none".to_string()
                        } else {
                            s.errors.join(", ")
                        }
                    ))
                }),
        )
        .returns("generate_report")
        .build()
}

#[tokio::main]
async fn main() -> ExitCode {
    let reactor = memory_efficient_reactor().expect("a valid reactor");
    App::new("memory_efficient_reactor")
        .about("Reduce a large dataset to a small summary in one step")
        .reactor(Entry::new(reactor).input::<Arc<Vec<String>>>("large_dataset"))
        .demo(demo)
        .main()
        .await
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let n = if quick { 100_000 } else { 5_000_000 };
    let dataset: Arc<Vec<String>> = Arc::new(
        (0..n)
            .map(|i| {
                if i % 1_000 == 7 {
                    String::new()
                } else {
                    format!("record {i}")
                }
            })
            .collect(),
    );
    let reactor = memory_efficient_reactor()?;
    let out = reactor
        .run(Inputs::new().with("large_dataset", dataset.clone()))
        .await?;
    let report = out.get::<String>()?;
    println!("{report}\npeak RSS {:.1} MiB", peak_rss_mib());
    let invalid = n / 1_000;
    check(
        report.starts_with(&format!(
            "{} of {n} records valid; first errors: record 7 is empty, record 1007 is empty",
            n - invalid
        )),
        report,
    )?;
    check(
        Arc::strong_count(&dataset) == 1,
        "the run kept a reference to the dataset",
    )
}
