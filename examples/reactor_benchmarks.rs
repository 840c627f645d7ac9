//! The performance guide's `ReactorBenchmarks` ("Performance Benchmarking:
//! Using Benchee for Reactor Performance Testing"), with
//! [criterion](https://docs.rs/criterion/0.5) used as a library in place of
//! Benchee. Three benchmark groups:
//!
//! - `concurrency`: the processing reactor over 1,000 records at
//!   `max_concurrency` 1, 5, 10 and 20 (`run_concurrency_benchmark`);
//! - `batch_size`: the same work with the map's `batch_size` at 10, 50, 100
//!   and 500 (`run_batch_size_benchmark`), at `max_concurrency(500)`, the
//!   largest batch size, so that the batch size alone bounds how many
//!   elements are in flight (a map's elements share the run's limit: at a
//!   lower limit, every batch size above it would run alike). With the
//!   1,000 records of the full run the four sizes differ; with the 100 of
//!   `--quick`, batches of 100 and 500 both hold every record;
//! - `reactor_comparison`: over 500 records, the processing reactor run
//!   synchronously (`.run_async(false)`, the guide's `async?: false`), run
//!   asynchronously at `max_concurrency(10)`, and an "optimized" reactor
//!   that processes the records in chunks of 50, one step and one
//!   simulated round trip per chunk, at `max_concurrency(5)`
//!   (`run_reactor_comparison_benchmark`).
//!
//! Each record costs a little CPU (64 rounds of a hash) and one record in
//! ten awaits a 1 ms timer, a simulated lookup: the I/O-bound part that
//! concurrency overlaps. Every reactor's result (the sum of the processed
//! records) is checked against a direct computation, once before the
//! benchmarks and again on every iteration.
//!
//! The full run uses criterion's normal settings (100 samples, 3 s of
//! warm-up, 5 s of measurement per benchmark: a few minutes in all; build
//! with `--release`), prints criterion's report, and writes criterion's
//! HTML reports to `target/criterion` (`target/criterion/report/index.html`).
//! `--quick` uses 10 samples, a few milliseconds of measurement and a tenth
//! of the data, writes criterion's files to the system's temporary
//! directory (not over the full run's baselines) without plots, and
//! finishes in a couple of seconds even in a debug build.
//!
//! Two of the guide's Benchee options have no counterpart here: criterion
//! measures time only, so there is no `memory_time` (the memory each run
//! allocates is not reported), and it has no JSON formatter option: its
//! results are in JSON anyway, in `target/criterion/**/estimates.json`
//! (beside `benchmark.json` and `sample.json`), for the full run.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example reactor_benchmarks                   # the benchmarks
//! cargo run --release --example reactor_benchmarks -- demo --quick   # a short run
//! cargo run --release --example reactor_benchmarks -- list
//! cargo run --release --example reactor_benchmarks -- describe optimized_processing
//! cargo run --release --example reactor_benchmarks -- run processing --input 'data=[1,2,3,4,5,6,7,8,9,10]'
//! ```
//!
//! `processing(data)` and `optimized_processing(data)` take a JSON array of
//! numbers and print the sum of the processed records.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mix;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use reactor::kinds::{element, map};
use reactor::{input, result, step, BoxError, Inputs, Reactor, RunRequest, Value};

/// The latency of the simulated lookup.
const IO_LATENCY: Duration = Duration::from_millis(1);
/// How many records the optimized reactor handles per step.
const CHUNK: usize = 50;

/// The guide's `generate_test_data(n)`: `n` records (one in ten needs a lookup).
fn generate_test_data(n: u64) -> Vec<u64> {
    (0..n).map(|i| i * 3 + 1).collect()
}

/// Whether processing `record` needs the (simulated) lookup.
fn needs_lookup(record: u64) -> bool {
    record.is_multiple_of(10)
}

/// The CPU part of processing a record.
fn process_record(record: u64) -> u64 {
    let mut h = record;
    for _ in 0..64 {
        h = mix(h);
    }
    h % 1_000
}

/// What every reactor must return for `data`.
fn expected_total(data: &[u64]) -> u64 {
    data.iter().map(|r| process_record(*r)).sum()
}

/// `total`: the sum of a map's `u64` outputs.
fn total(map_name: &str) -> reactor::StepSpec {
    step("total")
        .argument("outputs", result(map_name))
        .run_sync(|args, _| {
            let mut sum = 0_u64;
            for v in args.get::<Vec<Value>>("outputs")? {
                sum += *v.get::<u64>()?;
            }
            Ok(sum)
        })
}

/// The guide's `ProcessingReactor` (and `create_map_reactor(batch_size)`):
/// a map processes each record of `data` in an async step, `batch_size`
/// records in flight at most; `total` sums the results.
fn processing_reactor(name: &str, batch_size: usize) -> Result<Reactor, BoxError> {
    let reactor = Reactor::builder(name)
        .description(format!(
            "processes each record in its own async step (map batch size {batch_size}) and sums them"
        ))
        .input("data")
        .add(
            map("process", input("data"))
                .items::<u64>()
                .batch_size(batch_size)
                .steps([step("process_record")
                    .argument("record", element("process"))
                    .run(|args, _| async move {
                        let record = *args.get::<u64>("record")?;
                        if needs_lookup(record) {
                            tokio::time::sleep(IO_LATENCY).await;
                        }
                        Ok(process_record(record))
                    })])
                .into_step()?,
        )
        .add(total("process"))
        .returns("total")
        .build()?;
    Ok(reactor)
}

/// The guide's `OptimizedReactor`: the records in chunks of [`CHUNK`], each
/// chunk one step with at most one lookup (a batched round trip), so the
/// engine schedules 20 times fewer steps.
fn optimized_reactor() -> Result<Reactor, BoxError> {
    let reactor = Reactor::builder("optimized_processing")
        .description("processes the records in chunks of 50, one step and one lookup per chunk, and sums them")
        .input("data")
        .add(
            step("chunks")
                .argument("data", input("data"))
                .run_sync(|args, _| {
                    let data = args.get::<Vec<u64>>("data")?;
                    Ok(data.chunks(CHUNK).map(<[u64]>::to_vec).collect::<Vec<_>>())
                }),
        )
        .add(
            map("process_chunks", result("chunks"))
                .items::<Vec<u64>>()
                .steps([step("process_chunk")
                    .argument("chunk", element("process_chunks"))
                    .run(|args, _| async move {
                        let chunk = args.get::<Vec<u64>>("chunk")?;
                        if chunk.iter().any(|r| needs_lookup(*r)) {
                            tokio::time::sleep(IO_LATENCY).await;
                        }
                        Ok(chunk.iter().map(|r| process_record(*r)).sum::<u64>())
                    })])
                .into_step()?,
        )
        .add(total("process_chunks"))
        .returns("total")
        .build()?;
    Ok(reactor)
}

/// One benchmarked configuration: a reactor and how it is run.
#[derive(Clone)]
struct Case {
    name: String,
    reactor: Reactor,
    configure: fn(RunRequest, usize) -> RunRequest,
    /// The concurrency limit (0: the default).
    concurrency: usize,
}

impl Case {
    fn new(name: impl Into<String>, reactor: &Reactor, concurrency: usize) -> Case {
        Case {
            name: name.into(),
            reactor: reactor.clone(),
            configure: |run, n| if n == 0 { run } else { run.max_concurrency(n) },
            concurrency,
        }
    }

    /// The guide's `async?: false`: every step inline, one at a time.
    fn sync(name: impl Into<String>, reactor: &Reactor) -> Case {
        Case {
            name: name.into(),
            reactor: reactor.clone(),
            configure: |run, _| run.run_async(false),
            concurrency: 0,
        }
    }

    /// Runs the case over `data`, returning the total.
    async fn run(&self, data: &[u64]) -> Result<u64, BoxError> {
        let request = self.reactor.run(Inputs::new().with("data", data.to_vec()));
        let out = (self.configure)(request, self.concurrency).await?;
        Ok(*out.get::<u64>()?)
    }
}

/// Benchmarks `group`'s cases over its data as one criterion group,
/// counting in `wrong` every iteration whose result is not the expected one.
fn bench_group(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    quick: bool,
    group: &Group,
    wrong: &AtomicUsize,
) {
    let data = &group.data;
    let expected = expected_total(data);
    let mut g = c.benchmark_group(group.name);
    g.throughput(Throughput::Elements(data.len() as u64));
    if quick {
        // As many iterations in every sample: for these runs of a few
        // milliseconds, one each, the fewest criterion allows.
        g.sampling_mode(SamplingMode::Flat);
    }
    for case in &group.cases {
        let id = BenchmarkId::new(case.name.clone(), data.len());
        g.bench_function(id, |b| {
            b.to_async(rt).iter(|| async {
                match case.run(data).await {
                    Ok(total) if total == expected => {}
                    _ => {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        });
    }
    g.finish();
}

/// The guide's `run_concurrency_benchmark`.
fn concurrency_cases() -> Result<Vec<Case>, BoxError> {
    let reactor = processing_reactor("processing", 100)?;
    Ok([1, 5, 10, 20]
        .into_iter()
        .map(|n| Case::new(format!("concurrency_{n}"), &reactor, n))
        .collect())
}

/// The batch sizes `run_batch_size_benchmark` tries.
const BATCH_SIZES: [usize; 4] = [10, 50, 100, 500];

/// The guide's `run_batch_size_benchmark`: each batch size at a concurrency
/// limit of the largest one, so that the map's batch size, not the run's
/// limit, bounds the elements in flight.
fn batch_size_cases() -> Result<Vec<Case>, BoxError> {
    let limit = BATCH_SIZES.into_iter().max().unwrap_or(1);
    BATCH_SIZES
        .into_iter()
        .map(|size| {
            let reactor = processing_reactor(&format!("processing_batch_{size}"), size)?;
            Ok(Case::new(format!("batch_{size}"), &reactor, limit))
        })
        .collect()
}

/// The guide's `run_reactor_comparison_benchmark`.
fn comparison_cases() -> Result<Vec<Case>, BoxError> {
    let processing = processing_reactor("processing", 100)?;
    let optimized = optimized_reactor()?;
    Ok(vec![
        Case::sync("sync_reactor", &processing),
        Case::new("async_reactor", &processing, 10),
        Case::new("optimized_reactor", &optimized, 5),
    ])
}

fn criterion(quick: bool) -> Criterion {
    if quick {
        Criterion::default()
            .sample_size(10)
            .warm_up_time(Duration::from_millis(5))
            .measurement_time(Duration::from_millis(20))
            .nresamples(1_000)
            .without_plots()
            .output_directory(&std::env::temp_dir().join("reactor_benchmarks_quick"))
    } else {
        // Criterion's defaults: 100 samples, 3 s warm-up, 5 s measurement,
        // HTML reports in target/criterion.
        Criterion::default()
    }
}

/// A criterion group: its cases and the data they all process.
struct Group {
    name: &'static str,
    cases: Vec<Case>,
    data: Arc<Vec<u64>>,
}

impl Group {
    fn new(name: &'static str, cases: Vec<Case>, data: &Arc<Vec<u64>>) -> Group {
        Group {
            name,
            cases,
            data: data.clone(),
        }
    }
}

/// Runs every group; returns how many iterations gave a wrong result.
fn run_benchmarks(quick: bool, groups: Vec<Group>) -> Result<usize, BoxError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let wrong = AtomicUsize::new(0);
    let mut c = criterion(quick);
    for group in &groups {
        bench_group(&mut c, &rt, quick, group, &wrong);
    }
    c.final_summary();
    Ok(wrong.into_inner())
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let (n, comparison_n) = if quick { (100, 50) } else { (1_000, 500) };
    let data = Arc::new(generate_test_data(n));
    let comparison_data = Arc::new(generate_test_data(comparison_n));
    let groups = vec![
        Group::new("concurrency", concurrency_cases()?, &data),
        Group::new("batch_size", batch_size_cases()?, &data),
        Group::new("reactor_comparison", comparison_cases()?, &comparison_data),
    ];

    // Every case returns the right total before it is measured.
    println!("Checking each benchmarked reactor's result:");
    for Group { name, cases, data } in &groups {
        let expected = expected_total(data);
        for case in cases {
            let started = Instant::now();
            let total = case.run(data).await?;
            println!(
                "  {:<38} {:>4} records -> {total:>7} in {:>7.2} ms",
                format!("{name}/{}", case.name),
                data.len(),
                started.elapsed().as_secs_f64() * 1e3
            );
            if total != expected {
                return Err(
                    format!("{name}/{} returned {total}, expected {expected}", case.name).into(),
                );
            }
        }
    }

    println!(
        "\nBenchmarking with criterion ({} mode):",
        if quick { "quick" } else { "full" }
    );
    // Criterion drives its own runtime (`to_async`): it runs on a blocking
    // thread, outside this one.
    let wrong = tokio::task::spawn_blocking(move || run_benchmarks(quick, groups)).await??;
    if wrong > 0 {
        return Err(format!("{wrong} benchmark iteration(s) returned a wrong total").into());
    }
    if !quick {
        println!("HTML reports: target/criterion/report/index.html");
    }
    println!("Every iteration returned the right total.");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let reactors =
        processing_reactor("processing", 100).and_then(|p| Ok((p, optimized_reactor()?)));
    let (processing, optimized) = match reactors {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    reactor::cli::App::new("reactor_benchmarks")
        .about("The performance guide's ReactorBenchmarks with criterion: concurrency, batch size, sync vs async")
        .reactor(reactor::cli::Entry::new(processing).input::<Vec<u64>>("data").configure(|run| run.max_concurrency(10)))
        .reactor(reactor::cli::Entry::new(optimized).input::<Vec<u64>>("data").configure(|run| run.max_concurrency(5)))
        .demo(demo)
        .main()
        .await
}
