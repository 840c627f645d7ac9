//! The performance guide's `StreamingProcessor`, done so that memory stays
//! bounded by the batch size: a map pulls the lines of `file_path` lazily
//! (100 in flight, in any order) and streams each transformed line into
//! `output_path` through a sink, never collecting them; `write_output`
//! flushes the file and returns how many lines it holds.
//!
//! ```text
//! cargo run --release --example streaming_processor      # makes a 1,000,000-line file first
//! cargo run --release --example streaming_processor -- run StreamingProcessor \
//!     --input file_path=IN.txt --input output_path=OUT.txt --progress
//! ```
//!
//! The demo prints how many lines it wrote, how long it took and the
//! process's peak RSS, and checks the output file.

mod common;

use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{check, peak_rss_mib};
use reactor::cli::{App, Entry};
use reactor::kinds::{element, map, MapSource};
use reactor::{input, result, step, BoxError, Inputs, Reactor};
use tokio::io::AsyncBufReadExt;

/// The guide's `transform_data`: here, a line upper-cased with its length.
fn transform_data(line: &str) -> String {
    format!("{} ({} chars)", line.to_uppercase(), line.len())
}

/// The output file a run writes to: opened by `open_output`, written by
/// the map's sink, flushed by `write_output`. (One run at a time per
/// reactor built.)
type Output = Arc<Mutex<Option<BufWriter<File>>>>;

fn streaming_processor() -> Result<Reactor, BoxError> {
    let output: Output = Arc::default();
    let (opener, sink, closer) = (output.clone(), output.clone(), output);
    let reactor = Reactor::builder("StreamingProcessor")
        .input("file_path")
        .input("output_path")
        .add(
            step("open_output")
                .argument("output_path", input("output_path"))
                .run_sync(move |args, _| {
                    let path = args.get::<String>("output_path")?;
                    *opener.lock().expect("not poisoned") =
                        Some(BufWriter::new(File::create(path)?));
                    Ok(())
                }),
        )
        // The lines, read lazily as the map pulls them.
        .add(
            step("read_lines")
                .argument("file_path", input("file_path"))
                .run(|args, _| async move {
                    Ok::<_, BoxError>(lines_of(args.get::<String>("file_path")?).await?)
                }),
        )
        .add(
            map("process_file_stream", result("read_lines"))
                .batch_size(100)
                .strict_ordering(false) // improves throughput when order does not matter
                .steps([step("transform_line")
                    .argument("line", element("process_file_stream"))
                    .run_sync(|args, _| Ok(transform_data(args.get::<String>("line")?)))])
                .sink(move |transformed| {
                    let mut out = sink.lock().expect("not poisoned");
                    let out = out.as_mut().ok_or("the output is not open")?;
                    writeln!(out, "{}", transformed.get::<String>()?)?;
                    Ok(())
                })
                .into_step()?
                .wait_for("open_output"),
        )
        .add(
            step("write_output")
                .argument("processed_data", result("process_file_stream"))
                .run_sync(move |args, _| {
                    if let Some(mut out) = closer.lock().expect("not poisoned").take() {
                        out.flush()?;
                    }
                    Ok(*args.get::<u64>("processed_data")?)
                }),
        )
        .returns("write_output")
        .build()?;
    Ok(reactor)
}

/// The lines of `path`, as a stream read lazily.
async fn lines_of(path: &str) -> std::io::Result<MapSource> {
    let file = tokio::fs::File::open(path).await?;
    let lines = tokio::io::BufReader::new(file).lines();
    let stream = futures::stream::unfold(lines, |mut lines| async move {
        match lines.next_line().await {
            Ok(Some(line)) => Some((line, lines)),
            _ => None,
        }
    });
    Ok(MapSource::from_stream(stream))
}

#[tokio::main]
async fn main() -> ExitCode {
    let reactor = streaming_processor().expect("a valid reactor");
    App::new("streaming_processor")
        .about("A map streaming a file's lines through a transformation into another file")
        .reactor(
            Entry::new(reactor)
                .input::<String>("file_path")
                .input::<String>("output_path")
                .output::<u64>(),
        )
        .demo(demo)
        .main()
        .await
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let lines: u64 = if quick { 20_000 } else { 1_000_000 };
    let dir = std::env::temp_dir().join(format!("reactor-streaming-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (input_path, output_path): (PathBuf, PathBuf) =
        (dir.join("input.txt"), dir.join("output.txt"));
    let mut w = BufWriter::new(File::create(&input_path)?);
    for i in 0..lines {
        writeln!(w, "record {i}: the quick brown fox")?;
    }
    w.flush()?;
    drop(w);

    let reactor = streaming_processor()?;
    let started = Instant::now();
    let written = reactor
        .run(
            Inputs::new()
                .with("file_path", input_path.display().to_string())
                .with("output_path", output_path.display().to_string()),
        )
        .await?;
    let written = *written.get::<u64>()?;
    println!(
        "wrote {written} lines to {} in {:.2} s; peak RSS {:.1} MiB",
        output_path.display(),
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    let mut count = 0;
    for line in std::io::BufReader::new(File::open(&output_path)?).lines() {
        let line = line?;
        check(
            line.starts_with("RECORD ") && line.ends_with(" chars)"),
            &line,
        )?;
        count += 1;
    }
    std::fs::remove_dir_all(&dir)?;
    check(
        written == lines && count == lines,
        format!("{written} written, {count} in the file, of {lines}"),
    )
}
