//! The command line (`reactor::cli`), driven in-process: each command, each
//! source of inputs, and a one-line error (exit code 1) for each kind of
//! bad input. `tests/guide_examples.rs` drives the examples' binaries.

#![cfg(feature = "cli")]

use reactor::cli::{App, Entry};
use reactor::kinds::{element, map};
use reactor::{input, result, step, Outcome, Reactor};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
struct Order {
    id: u64,
    qty: u32,
}

/// `orders`: a typed input (a list of orders) and a scale factor, mapped.
fn orders() -> Reactor {
    Reactor::builder("orders")
        .description("Totals each order")
        .input("orders")
        .input("factor")
        .add(
            map("totals", input("orders"))
                .items::<Order>()
                .steps([step("total")
                    .argument("order", element("totals"))
                    .argument("factor", input("factor"))
                    .run_sync(|a, _| {
                        let o = a.get::<Order>("order")?;
                        Ok(Order {
                            id: o.id,
                            qty: o.qty * *a.get::<u32>("factor")?,
                        })
                    })])
                .returns("total")
                .into_step()
                .unwrap()
                .argument("factor", input("factor")),
        )
        .returns("totals")
        .build()
        .unwrap()
}

/// `untyped`: echoes its inputs' types, as guessed from JSON.
fn untyped() -> Reactor {
    Reactor::builder("untyped")
        .input("a")
        .input("b")
        .add(
            step("types")
                .argument("a", input("a"))
                .argument("b", input("b"))
                .run_sync(|a, _| {
                    Ok(format!(
                        "{} {}",
                        a.value("a").unwrap().type_name(),
                        a.value("b").unwrap().type_name()
                    ))
                }),
        )
        .returns("types")
        .build()
        .unwrap()
}

/// `failing`: a step that fails, after one that completes.
fn failing() -> Reactor {
    Reactor::builder("failing")
        .add(step("fine").run_sync(|_, _| Ok(1_u8)))
        .add(step("boom").argument("x", result("fine")).run_sync(
            |_, _| -> Result<u8, reactor::BoxError> { Err("the warehouse is\non fire".into()) },
        ))
        .returns("boom")
        .build()
        .unwrap()
}

/// `halting`: a step that halts the run.
fn halting() -> Reactor {
    Reactor::builder("halting")
        .add(step("pause").run_sync(|_, _| Ok(Outcome::Halt(reactor::Value::new(0_u8)))))
        .returns("pause")
        .build()
        .unwrap()
}

fn app() -> App {
    App::new("shop")
        .about("A test command line")
        .reactor(
            Entry::new(orders())
                .input::<Vec<Order>>("orders")
                .input::<u32>("factor")
                .output::<Order>(),
        )
        .reactor(untyped())
        .reactor(failing())
        .reactor(halting())
}

struct Ran {
    code: u8,
    out: String,
    err: String,
}

async fn cli(args: &[&str]) -> Ran {
    cli_with(app(), args).await
}

async fn cli_with(app: App, args: &[&str]) -> Ran {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("shop").chain(args.iter().copied());
    let code = app.run(argv, &mut out, &mut err).await;
    Ran {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

/// A failure's one-line error, starting with `error:` and naming `what`.
fn assert_error(ran: &Ran, what: &str) {
    assert_eq!(ran.code, 1, "exit code; stderr: {}", ran.err);
    assert!(ran.out.is_empty(), "nothing on stdout: {}", ran.out);
    let lines: Vec<&str> = ran.err.lines().collect();
    let last = lines.last().copied().unwrap_or_default();
    assert!(last.starts_with("error: "), "{}", ran.err);
    assert!(last.contains(what), "`{what}` not named in: {last}");
}

fn temp_file(name: &str, text: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::new(name, text)
}

mod tempfile_path {
    /// A file in the temporary directory, removed when dropped.
    pub struct TempPath(pub std::path::PathBuf);

    impl TempPath {
        pub fn new(name: &str, text: &str) -> TempPath {
            let path =
                std::env::temp_dir().join(format!("reactor-cli-{}-{name}", std::process::id()));
            std::fs::write(&path, text).unwrap();
            TempPath(path)
        }
        pub fn arg(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[tokio::test]
async fn list_names_each_reactor_with_its_inputs() {
    let ran = cli(&["list"]).await;
    assert_eq!(ran.code, 0);
    assert_eq!(
        ran.out,
        "orders(orders, factor)  Totals each order\nuntyped(a, b)\nfailing()\nhalting()\n"
    );
}

#[tokio::test]
async fn describe_shows_steps_arguments_and_a_diagram() {
    let ran = cli(&["describe", "orders"]).await;
    assert_eq!(ran.code, 0, "{}", ran.err);
    for part in [
        "reactor orders",
        "inputs: orders, factor",
        "returns: totals",
        "totals (map, batch_size 100)",
        "source <- input(orders)",
        "order <- element(totals)",
        "mermaid:\nflowchart TD",
    ] {
        assert!(
            ran.out.contains(part),
            "`{part}` missing from:\n{}",
            ran.out
        );
    }
    let only = cli(&[
        "describe",
        "orders",
        "--mermaid",
        "--direction",
        "lr",
        "--collapse",
    ])
    .await;
    assert!(only.out.starts_with("flowchart LR"), "{}", only.out);
    assert!(!only.out.contains("subgraph"), "collapsed: {}", only.out);
}

#[tokio::test]
async fn run_takes_inputs_as_pairs_and_prints_json() {
    let ran = cli(&[
        "run",
        "orders",
        "--input",
        r#"orders=[{"id":1,"qty":2}]"#,
        "-i",
        "factor=3",
    ])
    .await;
    assert_eq!(ran.code, 0, "{}", ran.err);
    let json: serde_json::Value = serde_json::from_str(&ran.out).unwrap();
    assert_eq!(json, serde_json::json!([{"id": 1, "qty": 6}]));
}

#[tokio::test]
async fn run_takes_inputs_from_json_and_yaml_files_and_prints_yaml() {
    let json = temp_file(
        "in.json",
        r#"{"orders": [{"id": 7, "qty": 1}], "factor": 2}"#,
    );
    let ran = cli(&["run", "orders", "--inputs", json.arg()]).await;
    assert_eq!(ran.code, 0, "{}", ran.err);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ran.out).unwrap()[0]["qty"],
        2
    );

    let yaml = temp_file("in.yaml", "orders:\n  - id: 7\n    qty: 5\nfactor: 1\n");
    // A pair given on the command line overrides the file's.
    let ran = cli(&[
        "run",
        "orders",
        "--inputs",
        yaml.arg(),
        "--input",
        "factor=10",
        "--format",
        "yaml",
    ])
    .await;
    assert_eq!(ran.code, 0, "{}", ran.err);
    assert_eq!(ran.out, "- id: 7\n  qty: 50\n");
}

#[tokio::test]
async fn undeclared_inputs_are_guessed_from_their_json() {
    let ran = cli(&["run", "untyped", "-i", "a=12", "-i", "b=hello"]).await;
    assert_eq!(
        ran.out.trim(),
        "\"i64 alloc::string::String\"",
        "{}",
        ran.err
    );
    let ran = cli(&["run", "untyped", "-i", "a=1.5", "-i", "b=[true]"]).await;
    assert_eq!(
        ran.out.trim(),
        "\"f64 serde_json::value::Value\"",
        "{}",
        ran.err
    );
}

#[tokio::test]
async fn bad_input_gets_a_one_line_error_naming_it() {
    assert_error(
        &cli(&["run", "nope"]).await,
        "unknown reactor `nope` (known: orders, untyped, failing, halting)",
    );
    assert_error(&cli(&["describe", "nope"]).await, "unknown reactor `nope`");
    assert_error(
        &cli(&["run", "orders", "-i", "factor=1"]).await,
        "missing input `orders`",
    );
    assert_error(
        &cli(&["run", "orders", "-i", "orders=[]", "-i", "factor=-1"]).await,
        "input `factor` of reactor `orders`: expected u32, got a number",
    );
    assert_error(
        &cli(&[
            "run",
            "orders",
            "-i",
            r#"orders=[{"id":1}]"#,
            "-i",
            "factor=1",
        ])
        .await,
        "expected Vec<Order>, got an array (missing field `qty`",
    );
    assert_error(
        &cli(&["run", "untyped", "-i", "a=1", "-i", "b=2", "-i", "c=3"]).await,
        "unknown input `c`",
    );
    assert_error(
        &cli(&["run", "untyped", "-i", "a"]).await,
        "--input `a`: expected KEY=VALUE",
    );

    let bad_json = temp_file("bad.json", "{\"orders\": [1,");
    assert_error(
        &cli(&["run", "orders", "--inputs", bad_json.arg()]).await,
        "malformed JSON",
    );
    let bad_yaml = temp_file("bad.yaml", "orders: [1, 2\nfactor: : :\n");
    assert_error(
        &cli(&["run", "orders", "--inputs", bad_yaml.arg()]).await,
        "malformed YAML",
    );
    let list = temp_file("list.yaml", "- 1\n- 2\n");
    assert_error(
        &cli(&["run", "orders", "--inputs", list.arg()]).await,
        "expected a mapping of input names to values",
    );
    assert_error(
        &cli(&["run", "orders", "--inputs", "/nonexistent/in.json"]).await,
        "/nonexistent/in.json",
    );
    let txt = temp_file("in.txt", "{}");
    assert_error(
        &cli(&["run", "orders", "--inputs", txt.arg()]).await,
        "expected a .json, .yaml or .yml file",
    );
}

#[tokio::test]
async fn a_failed_or_halted_run_is_a_one_line_error() {
    let ran = cli(&["run", "failing", "--timeline"]).await;
    assert_error(&ran, "reactor `failing`");
    assert!(ran.err.contains("the warehouse is on fire"), "{}", ran.err);
    // The timeline is printed whether the run succeeded or not.
    assert!(
        ran.err.contains("boom") && ran.err.contains("failed"),
        "{}",
        ran.err
    );

    assert_error(&cli(&["run", "halting"]).await, "halted");
}

#[tokio::test]
async fn timeline_progress_and_mermaid_report_on_stderr() {
    let ran = cli(&[
        "run",
        "orders",
        "-i",
        r#"orders=[{"id":1,"qty":1},{"id":2,"qty":2}]"#,
        "-i",
        "factor=1",
        "--timeline",
        "--progress",
        "--mermaid",
        "--concurrency",
        "auto",
    ])
    .await;
    assert_eq!(ran.code, 0, "{}", ran.err);
    assert!(
        serde_json::from_str::<serde_json::Value>(&ran.out).is_ok(),
        "stdout is only the result"
    );
    assert!(
        ran.err.contains("step") && ran.err.contains("totals") && ran.err.contains("run completed"),
        "{}",
        ran.err
    );
    assert!(
        ran.err.contains("flowchart TD") && ran.err.contains("classDef"),
        "{}",
        ran.err
    );
}

#[tokio::test]
async fn help_usage_errors_and_the_demo() {
    let help = cli(&["--help"]).await;
    assert_eq!(help.code, 0);
    assert!(
        help.out.contains("A test command line") && help.out.contains("describe"),
        "{}",
        help.out
    );
    // No command and no demo: the help.
    assert!(cli(&[]).await.out.contains("Usage: shop"));
    let usage = cli(&["frobnicate"]).await;
    assert_eq!(usage.code, 2);
    assert!(usage.err.contains("frobnicate"), "{}", usage.err);

    let quick = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = quick.clone();
    let with_demo = app().demo(move |q| async move {
        *seen.lock().unwrap() = Some(q);
        Ok(())
    });
    assert_eq!(cli_with(with_demo, &["demo", "--quick"]).await.code, 0);
    assert_eq!(*quick.lock().unwrap(), Some(true));
    let failing_demo = app().demo(|_| async { Err("wrong total".into()) });
    assert_error(
        &cli_with(failing_demo, &[]).await,
        "demo failed: wrong total",
    );
    assert_error(&cli(&["demo"]).await, "`shop` has no demo");
    let panicking_demo = app().demo(|_| async { panic!("no such file") });
    assert_error(
        &cli_with(panicking_demo, &["demo"]).await,
        "demo panicked: no such file",
    );
}

#[tokio::test]
async fn a_panicking_step_is_an_error_not_a_crash() {
    let panics = Reactor::builder("panics")
        .add(step("oops").run_sync(|_, _| -> Result<u8, reactor::BoxError> { panic!("bad luck") }))
        .returns("oops")
        .build()
        .unwrap();
    let ran = cli_with(App::new("shop").reactor(panics), &["run", "panics"]).await;
    assert_error(&ran, "bad luck");
}

/// A `Serialize` that panics.
#[derive(Clone)]
struct Explosive;

impl Serialize for Explosive {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("serialize boom")
    }
}

fn returning<T: Send + Sync + Clone + 'static>(name: &str, value: T) -> Reactor {
    Reactor::builder(name)
        .add(step("give").run_sync(move |_, _| Ok(value.clone())))
        .returns("give")
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_binarys_own_code_failing_is_a_one_line_error() {
    let explosive = Entry::new(returning("explosive", Explosive)).output::<Explosive>();
    let ran = cli_with(App::new("shop").reactor(explosive), &["run", "explosive"]).await;
    assert_error(&ran, "printing the result panicked: serialize boom");

    let configure = Entry::new(returning("c", 1_u8)).configure(|_| panic!("configure boom"));
    let ran = cli_with(App::new("shop").reactor(configure), &["run", "c"]).await;
    assert_error(&ran, "configuring the run panicked: configure boom");
}

#[tokio::test]
async fn a_result_without_a_json_form_is_an_error_not_a_placeholder() {
    #[derive(Clone)]
    struct Opaque;
    let ran = cli_with(
        App::new("shop").reactor(returning("o", Opaque)),
        &["run", "o"],
    )
    .await;
    assert_error(
        &ran,
        "reactor `o` returned a `Opaque`, which has no JSON form here (declare it with Entry::output",
    );
    let keyed = std::collections::BTreeMap::from([((1_u8, 2_u8), 3_u8)]);
    let entry =
        Entry::new(returning("k", keyed)).output::<std::collections::BTreeMap<(u8, u8), u8>>();
    let ran = cli_with(App::new("shop").reactor(entry), &["run", "k"]).await;
    assert_error(&ran, "JSON cannot hold");
    let wide = cli_with(
        App::new("shop").reactor(returning("w", u128::MAX)),
        &["run", "w"],
    )
    .await;
    assert_eq!(wide.out.trim(), format!("\"{}\"", u128::MAX));
}

#[tokio::test]
async fn mistakes_in_the_binarys_declarations_are_named() {
    let app = App::new("shop").reactor(untyped()).reactor(untyped());
    assert_error(
        &cli_with(app, &["run", "untyped"]).await,
        "`shop` offers two reactors named `untyped`",
    );
    let app = App::new("shop").reactor(Entry::new(untyped()).input::<u8>("c"));
    let ran = cli_with(app, &["run", "untyped", "-i", "a=1", "-i", "b=2"]).await;
    assert_error(
        &ran,
        "declares input `c`, which reactor `untyped` does not have",
    );
    // `untyped` run with its inputs and `extra`.
    let untyped_with = |extra: &'static [&'static str]| async move {
        let mut args = vec!["run", "untyped", "-i", "a=1", "-i", "b=2"];
        args.extend_from_slice(extra);
        cli(&args).await
    };
    let ran = untyped_with(&["--max-concurrency", "0"]).await;
    assert_eq!(ran.code, 2, "clap refuses it: {}", ran.err);
    let ran = untyped_with(&["--concurrency", "some"]).await;
    assert_eq!(ran.code, 2, "clap refuses it: {}", ran.err);
    assert!(
        ran.err.contains("expected `auto` or a number"),
        "{}",
        ran.err
    );
    let ran = untyped_with(&["--max-concurrency", "3"]).await;
    assert_eq!(ran.code, 0, "the old name still works: {}", ran.err);
}

/// A writer whose reader has gone away.
struct ClosedPipe;

impl std::io::Write for ClosedPipe {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_closed_pipe_ends_quietly() {
    let mut err = Vec::new();
    let args = ["shop", "describe", "orders"];
    let code = app().run(args, &mut ClosedPipe, &mut err).await;
    assert_eq!((code, err.as_slice()), (0, &b""[..]));
}
