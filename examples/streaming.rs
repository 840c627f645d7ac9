//! The performance guide's "Memory-Efficient Streaming" example, done so
//! that memory stays bounded by the batch size: a map pulls the lines of a
//! file lazily and streams its results into a sink that writes them out,
//! never collecting them.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example streaming              # makes a 1,000,000-line file first
//! cargo run --release --example streaming -- IN OUT    # your own files
//! ```
//!
//! It prints how many lines it wrote, how long it took, and the process's
//! peak RSS.

use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use reactor::kinds::{element, map, MapSource};
use reactor::{input, step, Inputs, Reactor};
use tokio::io::AsyncBufReadExt;

/// The guide's `transform_data`: here, a line upper-cased with its length.
fn transform_data(line: &str) -> String {
    format!("{} ({} chars)", line.to_uppercase(), line.len())
}

fn streaming_processor(
    output: Arc<Mutex<BufWriter<std::fs::File>>>,
) -> Result<Reactor, Box<dyn std::error::Error>> {
    let reactor = Reactor::builder("StreamingProcessor")
        .input("lines")
        .add(
            map("process_file_stream", input("lines"))
                .batch_size(1_000)
                .strict_ordering(false) // order does not matter here
                .steps([step("transform_line")
                    .argument("line", element("process_file_stream"))
                    .run_sync(|args, _| Ok(transform_data(args.get::<String>("line")?)))])
                .sink(move |transformed| {
                    let mut out = output.lock().expect("the writer is not poisoned");
                    writeln!(out, "{}", transformed.get::<String>()?)?;
                    Ok(())
                })
                .into_step()?,
        )
        .returns("process_file_stream")
        .build()?;
    Ok(reactor)
}

/// The lines of `path`, as a stream read lazily.
async fn lines_of(path: &std::path::Path) -> std::io::Result<MapSource> {
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

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::env::temp_dir().join(format!("reactor-streaming-{}", std::process::id()));
    let (input_path, output_path) = match args.as_slice() {
        [i, o] => (i.into(), o.into()),
        _ => {
            std::fs::create_dir_all(&dir)?;
            let input_path = dir.join("input.txt");
            let mut w = BufWriter::new(std::fs::File::create(&input_path)?);
            for i in 0..1_000_000 {
                writeln!(w, "record {i}: the quick brown fox")?;
            }
            w.flush()?;
            (input_path, dir.join("output.txt"))
        }
    };
    let output = Arc::new(Mutex::new(BufWriter::new(std::fs::File::create(
        &output_path,
    )?)));
    let reactor = streaming_processor(output.clone())?;
    let started = Instant::now();
    let written = reactor
        .run(Inputs::new().with("lines", lines_of(&input_path).await?))
        .await?;
    output.lock().expect("the writer is not poisoned").flush()?;
    println!(
        "wrote {} lines to {} in {:.2} s; peak RSS {:.1} MiB",
        written.get::<u64>()?,
        output_path.display(),
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    if args.is_empty() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
