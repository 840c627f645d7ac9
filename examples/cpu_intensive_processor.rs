//! The performance guide's `CPUIntensiveProcessor`: a CPU-bound map in
//! small batches (5), its analysis step marked `cpu_bound` so elements run
//! on all cores, with the reactor's `max_concurrency` at the core count.
//!
//! The demo analyses generated datasets (mean, standard deviation, median,
//! a slow bootstrap estimate), once with `max_concurrency(1)` and once with
//! the core count, prints both times and the speed-up, and checks every
//! result against a direct computation.
//!
//! ```text
//! cargo run --release --example cpu_intensive_processor
//! cargo run --release --example cpu_intensive_processor -- run CPUIntensiveProcessor --input 'datasets=[[1,2,3],[4,5,6,7]]'
//! ```

mod common;

use std::process::ExitCode;
use std::time::Instant;

use common::{check, cores};
use reactor::cli::{App, Entry};
use reactor::kinds::{element, map};
use reactor::{input, step, BoxError, Inputs, Reactor, Value};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
struct Analysis {
    count: usize,
    mean: f64,
    stddev: f64,
    median: f64,
    /// The mean of 200 deterministic resamples (the CPU-heavy part).
    bootstrap_mean: f64,
}

/// The guide's `perform_statistical_analysis`.
fn perform_statistical_analysis(data: &[f64]) -> Analysis {
    let count = data.len();
    if count == 0 {
        return Analysis {
            count,
            mean: 0.0,
            stddev: 0.0,
            median: 0.0,
            bootstrap_mean: 0.0,
        };
    }
    let mean = data.iter().sum::<f64>() / count as f64;
    let stddev = (data.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / count as f64).sqrt();
    let mut sorted = data.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = if count % 2 == 1 {
        sorted[count / 2]
    } else {
        (sorted[count / 2 - 1] + sorted[count / 2]) / 2.0
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut resampled = 0.0;
    for _ in 0..200 {
        let mut sum = 0.0;
        for _ in 0..count {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            sum += data[(seed % count as u64) as usize];
        }
        resampled += sum / count as f64;
    }
    Analysis {
        count,
        mean,
        stddev,
        median,
        bootstrap_mean: resampled / 200.0,
    }
}

fn cpu_intensive_processor() -> Result<Reactor, BoxError> {
    let reactor = Reactor::builder("CPUIntensiveProcessor")
        .input("datasets")
        .add(
            map("process_datasets", input("datasets"))
                .items::<Vec<f64>>()
                .batch_size(5) // small batches for CPU work
                .steps([step("complex_analysis")
                    .argument("dataset", element("process_datasets"))
                    .cpu_bound()
                    .run_sync(|args, _| {
                        Ok(perform_statistical_analysis(
                            args.get::<Vec<f64>>("dataset")?,
                        ))
                    })])
                .returns("complex_analysis")
                .into_step()?,
        )
        .returns("process_datasets")
        .build()?;
    Ok(reactor)
}

#[tokio::main]
async fn main() -> ExitCode {
    let reactor = cpu_intensive_processor().expect("a valid reactor");
    App::new("cpu_intensive_processor")
        .about("A CPU-bound map in batches of 5, on every core")
        .reactor(
            Entry::new(reactor)
                .input::<Vec<Vec<f64>>>("datasets")
                .output::<Analysis>()
                .configure(|run| run.max_concurrency(cores())),
        )
        .demo(demo)
        .main()
        .await
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let (sets, size) = if quick { (20, 200) } else { (200, 5_000) };
    let datasets: Vec<Vec<f64>> = (0..sets)
        .map(|s| {
            (0..size)
                .map(|i| ((i * 7919 + s * 104_729) % 1_000) as f64 / 10.0)
                .collect()
        })
        .collect();
    let expected: Vec<Analysis> = datasets
        .iter()
        .map(|d| perform_statistical_analysis(d))
        .collect();
    let reactor = cpu_intensive_processor()?;
    let mut times = Vec::new();
    for limit in [1, cores()] {
        let started = Instant::now();
        let out = reactor
            .run(Inputs::new().with("datasets", datasets.clone()))
            .max_concurrency(limit) // tuned for CPU-bound work
            .await?;
        times.push(started.elapsed());
        let results = out.get::<Vec<Value>>()?;
        check(
            results.len() == sets,
            format!("{} results of {sets}", results.len()),
        )?;
        for (got, want) in results.iter().zip(&expected) {
            check(
                got.get::<Analysis>()? == want,
                format!("{:?} != {want:?}", got),
            )?;
        }
        println!(
            "max_concurrency {limit}: {sets} datasets of {size} in {:.1?}",
            started.elapsed()
        );
    }
    println!(
        "speed-up on {} cores: {:.2}x; the first analysis: {:?}",
        cores(),
        times[0].as_secs_f64() / times[1].as_secs_f64(),
        expected[0]
    );
    Ok(())
}
