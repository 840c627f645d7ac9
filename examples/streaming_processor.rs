//! The performance guide's `StreamingProcessor`, done so that memory stays
//! bounded by the batch size: a map pulls the lines of `file_path` lazily
//! (100 in flight, in any order) and streams each transformed line into
//! `output_path` through a sink, never collecting them; `write_output`
//! flushes the file and returns how many lines it holds.
//!
//! A file that cannot be read fails the run: `read_lines` opens it (a
//! missing file or a directory fails there), and a read error part-way
//! (invalid UTF-8, say) ends the stream with that error as its last
//! element, which `transform_line` turns into the step's error, so the map
//! and the run fail (naming the line) instead of writing fewer lines.
//! `open_output` refuses an `output_path` that is `file_path` itself
//! (before creating it, which would empty the input).
//!
//! ```text
//! cargo run --release --example streaming_processor      # makes a 1,000,000-line file first
//! cargo run --release --example streaming_processor -- run StreamingProcessor \
//!     --input file_path=IN.txt --input output_path=OUT.txt --progress
//! ```
//!
//! The demo prints how many lines it wrote, how long it took and the
//! process's peak RSS, and checks the output file; then that a directory,
//! a file with invalid UTF-8 and an output path naming the input each fail
//! the run (the input left intact).

mod common;

use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
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
                .argument("file_path", input("file_path"))
                .argument("output_path", input("output_path"))
                .run_sync(move |args, _| {
                    let input_path = args.get::<String>("file_path")?;
                    let path = args.get::<String>("output_path")?;
                    // Creating the output would empty the input.
                    if same_file(Path::new(input_path), Path::new(path)) {
                        Err(format!(
                            "output_path {path:?} is the input file {input_path:?}: choose another path"
                        ))?;
                    }
                    let file = File::create(path)
                        .map_err(|e| format!("cannot create output_path {path:?}: {e}"))?;
                    *opener.lock().expect("not poisoned") = Some(BufWriter::new(file));
                    Ok(())
                }),
        )
        // The lines, read lazily as the map pulls them.
        .add(
            step("read_lines")
                .argument("file_path", input("file_path"))
                .run(|args, _| async move { lines_of(args.get::<String>("file_path")?).await }),
        )
        .add(
            map("process_file_stream", result("read_lines"))
                .batch_size(100)
                .strict_ordering(false) // improves throughput when order does not matter
                .steps([step("transform_line")
                    .argument("line", element("process_file_stream"))
                    .run_sync(|args, _| match args.get::<Line>("line")? {
                        Ok(line) => Ok(transform_data(line)),
                        // The stream's last element: why reading stopped.
                        Err(e) => Err(e.clone().into()),
                    })])
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

/// A line of the input, or why it could not be read (the stream's last).
type Line = Result<String, String>;

/// The lines of `path`, as a stream read lazily: a read error is the
/// stream's last element (the map's step turns it into an error).
async fn lines_of(path: &str) -> Result<MapSource, BoxError> {
    let cannot = |e: std::io::Error| format!("cannot read file_path {path:?}: {e}");
    let file = tokio::fs::File::open(path).await.map_err(cannot)?;
    // Opening a directory succeeds on some systems: refuse it here, at once.
    if file.metadata().await.map_err(cannot)?.is_dir() {
        Err(format!("file_path {path:?} is a directory"))?;
    }
    let lines = tokio::io::BufReader::new(file).lines();
    let path = path.to_string();
    let stream = futures::stream::unfold(Some((lines, 1_u64)), move |state| {
        let path = path.clone();
        async move {
            let (mut lines, number) = state?;
            match lines.next_line().await {
                Ok(Some(line)) => Some((Ok(line), Some((lines, number + 1)))),
                Ok(None) => None,
                // Stop after the error: no more lines from this file.
                Err(e) => Some((Err(format!("reading {path:?}, line {number}: {e}")), None)),
            }
        }
    });
    Ok(MapSource::from_stream(stream))
}

/// Whether `a` and `b` name the same existing file (by canonical path, and
/// on Unix by device and inode, which also catches hard links).
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false; // One does not exist (yet): not the same file.
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if (ma.dev(), ma.ino()) == (mb.dev(), mb.ino()) {
            return true;
        }
    }
    let _ = (ma, mb);
    matches!(
        (std::fs::canonicalize(a), std::fs::canonicalize(b)),
        (Ok(ca), Ok(cb)) if ca == cb
    )
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
    check(
        written == lines && count == lines,
        format!("{written} written, {count} in the file, of {lines}"),
    )?;

    // What cannot be read fails the run, rather than writing fewer lines.
    let bad_utf8 = dir.join("bad.txt");
    std::fs::write(&bad_utf8, b"fine\nalso fine\nnot \xff utf-8\nnever read\n")?;
    let failures = [
        ("a directory", dir.clone(), dir.join("out-dir.txt")),
        ("invalid UTF-8", bad_utf8.clone(), dir.join("out-bad.txt")),
        (
            "the output path naming the input",
            input_path.clone(),
            dir.join(".").join("input.txt"),
        ),
    ];
    for (what, file_path, output_path) in failures {
        let run = reactor
            .run(
                Inputs::new()
                    .with("file_path", file_path.display().to_string())
                    .with("output_path", output_path.display().to_string()),
            )
            .await;
        match run {
            Ok(out) => Err(format!("{what}: the run succeeded with {out:?}"))?,
            Err(e) => println!("{what}: the run failed: {e}"),
        }
    }
    let intact = std::io::BufReader::new(File::open(&input_path)?)
        .lines()
        .count() as u64;
    std::fs::remove_dir_all(&dir)?;
    check(
        intact == lines,
        format!("the input has {intact} lines left of {lines}"),
    )
}
