//! Every example of the performance guide, as the program in `examples/`
//! named after it, driven through its binary: each demo runs in quick mode
//! and checks its own output (exit code 0), each reactor it offers is
//! listed and described, and every diagram parses with the real Mermaid
//! parser.
//!
//! The binaries are the ones `cargo test` builds beside the tests
//! (`target/<profile>/examples/`).

#![cfg(feature = "cli")]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The examples, one per code example of the guide.
const EXAMPLES: &[&str] = &[
    "data_processor",
    "concurrency_starting_points",
    "shared_pools",
    "batch_processing_reactor",
    "memory_aware_processors",
    "streaming_processor",
    "optimal_workload_reactor",
    "cpu_intensive_processor",
    "memory_efficient_reactor",
    "monitored_reactor",
    "smart_api_step",
    "backoff_benchmark",
    "adaptive_backoff_step",
    "reactor_benchmarks",
    "anti_patterns",
    "dedicated_pools",
];

/// The example's binary, built by `cargo test` (or `cargo build --examples`).
fn binary(name: &str) -> PathBuf {
    // This test runs from target/<profile>/deps/.
    let exe = std::env::current_exe().expect("the test's path");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds the examples (or run `cargo build --examples`)",
        path.display()
    );
    path
}

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(binary(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running example {name}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `name`'s demo in quick mode; it checks its own output.
fn demo(name: &str) {
    let out = run(name, &["demo", "--quick"]);
    assert!(
        out.status.success(),
        "{name} demo --quick failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

macro_rules! demos {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            demo(stringify!($name));
        }
    )*};
}

demos!(
    data_processor,
    concurrency_starting_points,
    shared_pools,
    batch_processing_reactor,
    memory_aware_processors,
    streaming_processor,
    optimal_workload_reactor,
    cpu_intensive_processor,
    memory_efficient_reactor,
    monitored_reactor,
    smart_api_step,
    backoff_benchmark,
    adaptive_backoff_step,
    reactor_benchmarks,
    anti_patterns,
    dedicated_pools,
);

/// The reactors an example offers, from its `list`.
fn reactors(name: &str) -> Vec<String> {
    let out = run(name, &["list"]);
    assert!(out.status.success(), "{name} list: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| l.split('(').next().unwrap_or(l).to_string())
        .collect()
}

#[test]
fn every_example_describes_its_reactors_and_their_diagrams_parse() {
    let mut diagrams = Vec::new();
    for name in EXAMPLES {
        let listed = reactors(name);
        assert!(!listed.is_empty(), "{name} offers no reactor");
        for reactor in listed {
            let out = run(name, &["describe", &reactor]);
            assert!(
                out.status.success(),
                "{name} describe {reactor}: {}",
                text(&out.stderr)
            );
            let described = text(&out.stdout);
            assert!(
                described.starts_with(&format!("reactor {reactor}\n")),
                "{described}"
            );
            let diagram = described
                .split_once("mermaid:\n")
                .map(|(_, d)| d.to_string())
                .unwrap_or_else(|| panic!("{name} describe {reactor}: no diagram"));
            diagrams.push((format!("{name}-{reactor}"), diagram));
            let collapsed = run(
                name,
                &[
                    "describe",
                    &reactor,
                    "--mermaid",
                    "--collapse",
                    "--direction",
                    "lr",
                ],
            );
            diagrams.push((
                format!("{name}-{reactor}-collapsed"),
                text(&collapsed.stdout),
            ));
        }
    }
    common::mermaid::assert_parses("guide-examples", &diagrams);
}

#[test]
fn the_binary_runs_a_reactor_and_reports_bad_input_in_one_line() {
    let out = run(
        "data_processor",
        &[
            "run",
            "DataProcessor",
            "--input",
            "user_ids=[2]",
            "--timeline",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(json[0]["theme"], "dark");
    assert!(
        text(&out.stderr).contains("combine_data"),
        "the timeline: {}",
        text(&out.stderr)
    );

    for (args, named) in [
        (&["run", "Nope"][..], "unknown reactor `Nope`"),
        (&["run", "DataProcessor"][..], "missing input `user_ids`"),
        (
            &["run", "DataProcessor", "-i", "user_ids=[\"x\"]"][..],
            "expected Vec<u64>",
        ),
        (
            &["run", "DataProcessor", "--inputs", "-"][..],
            "standard input: malformed JSON",
        ),
    ] {
        let out = Command::new(binary("data_processor"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                // Only `--inputs -` reads it: the others may have exited
                // (closing the pipe) before this is written.
                let _ = child.stdin.take().expect("stdin").write_all(b"{ nope: [");
                child.wait_with_output()
            })
            .expect("run data_processor");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(named),
            "{args:?}: {err}"
        );
    }
}

/// The README's main job: the durable checkout, killed with SIGKILL while
/// orders are under way, then started again, finishes every order, and
/// the shop's ledger agrees with the journal.
#[test]
fn the_checkout_finishes_its_orders_after_kill_9() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("reactor-checkout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.to_str().expect("a UTF-8 temp dir");
    let args = [
        "--data",
        data,
        "--orders",
        "1000",
        "--concurrency",
        "20",
        "--courier-ms",
        "50",
    ];
    let mut child = Command::new(binary("checkout"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the checkout");
    let stdout = child.stdout.take().expect("stdout");
    let mut finished = 0;
    for line in std::io::BufReader::new(stdout).lines() {
        if line.expect("a line").starts_with("order-") {
            finished += 1;
            if finished == 10 {
                break;
            }
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let out = run("checkout", &args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("took up") && stdout.contains("(0 could not be)"),
        "the orders under way were taken up: {stdout}"
    );
    assert!(stdout.contains("1000 orders in"), "{stdout}");
    assert!(stdout.contains("the shop's ledger agrees"), "{stdout}");
    let charges = std::fs::read_to_string(dir.join("shop.log"))
        .expect("the shop's ledger")
        .lines()
        .filter(|l| l.starts_with("charge "))
        .count();
    assert_eq!(charges, 1000, "one charge per order");
    let _ = std::fs::remove_dir_all(&dir);
}
