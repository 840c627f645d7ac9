//! A command line for a user's binary: reactors are Rust code, so the
//! binary builds them and hands them to an [`App`], which parses the
//! arguments (`clap`) and runs one of:
//!
//! | command | does |
//! |---|---|
//! | `list` | names each reactor, its inputs and description |
//! | `describe NAME [--direction td\|lr\|bt\|rl] [--collapse] [--mermaid]` | its inputs, steps, their arguments and sources, and a Mermaid diagram |
//! | `run NAME [--input KEY=VALUE]... [--inputs FILE] [--format json\|yaml] [--progress] [--timeline] [--mermaid] [--concurrency N\|auto]` | runs it and prints the result |
//! | `demo [--quick]` | the program's own demonstration, if it has one (also what no command runs) |
//!
//! Inputs come from a JSON or YAML file (`--inputs f.json`, `f.yaml`, or
//! `-` for standard input in either), then from each `--input key=value`
//! (the value read as JSON, else taken as a string; a value that starts
//! like a JSON array or object must be valid JSON). An input declared with
//! [`Entry::input`] is converted to its type through `serde`; any other is
//! a `String`, `i64`, `f64`, `bool` or, for arrays and objects, a
//! `serde_json::Value`. Inputs nested deeper than 128 levels are refused.
//! The result is printed as JSON (or YAML) on standard output: through
//! [`Entry::output`]'s type when declared, else the standard types (and
//! lists and maps of them) as themselves; a result of any other type is an
//! error saying to declare it.
//!
//! `--progress` draws progress bars on standard error when it is a
//! terminal; `--timeline` and `--mermaid` print each step's start, end and
//! outcome, or the run-annotated diagram, on standard error when the run
//! ends (whether it succeeded or not).
//!
//! Exit codes: 0 on success (and when the reader of the output went away
//! before the end), 1 when the run fails or halts, the input is bad or the
//! binary's own code (a demo, [`Entry::configure`], a `Serialize` impl)
//! fails or panics, with a one-line `error: ...` on standard error naming
//! what; 2 for a malformed command line (clap's usage message).
//!
//! # Examples
//!
//! ```
//! use reactor::cli::{App, Entry};
//! use reactor::{input, step, Reactor};
//!
//! # #[tokio::main] async fn main() {
//! let greeter = Reactor::builder("greeter")
//!     .input("name")
//!     .add(step("greet").argument("name", input("name")).run_sync(|args, _| {
//!         Ok(format!("Hello, {}!", args.get::<String>("name")?))
//!     }))
//!     .returns("greet")
//!     .build()
//!     .unwrap();
//! let app = App::new("greetings").reactor(Entry::new(greeter).input::<String>("name"));
//! // A binary calls `app.main().await`; here, arguments are given directly.
//! let (mut out, mut err) = (Vec::new(), Vec::new());
//! let code = app.run(["greetings", "run", "greeter", "--input", "name=Ada"], &mut out, &mut err).await;
//! assert_eq!(code, 0);
//! assert_eq!(String::from_utf8(out).unwrap(), "\"Hello, Ada!\"\n");
//! # }
//! ```

mod describe;
mod progress;
mod values;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read as _, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::BoxError;
use crate::executor::RunRequest;
use crate::mermaid::{Direction, MermaidOptions};
use crate::pool::adaptive::Concurrency;
use crate::reactor::Reactor;
use crate::recording::Recording;
use values::{InputParser, OutputFn};

type Demo = Box<dyn FnOnce(bool) -> Pin<Box<dyn Future<Output = Result<(), BoxError>>>>>;
type Configure = Arc<dyn Fn(RunRequest) -> RunRequest + Send + Sync>;

/// A reactor offered on the command line, with how its inputs and result
/// cross it.
///
/// # Examples
///
/// ```
/// use reactor::cli::Entry;
/// use reactor::{input, step, Reactor};
///
/// let sum = Reactor::builder("sum")
///     .input("numbers")
///     .add(step("total").argument("n", input("numbers")).run_sync(|args, _| {
///         Ok(args.get::<Vec<u64>>("n")?.iter().sum::<u64>())
///     }))
///     .returns("total")
///     .build()
///     .unwrap();
/// let entry = Entry::new(sum)
///     .input::<Vec<u64>>("numbers")
///     .output::<u64>()
///     .configure(|run| run.max_concurrency(4));
/// # let _ = entry;
/// ```
pub struct Entry {
    reactor: Reactor,
    inputs: BTreeMap<String, InputParser>,
    output: Option<OutputFn>,
    configure: Option<Configure>,
}

impl Entry {
    /// Offers `reactor`; its inputs' types are guessed from their JSON
    /// until declared.
    pub fn new(reactor: Reactor) -> Entry {
        Entry {
            reactor,
            inputs: BTreeMap::new(),
            output: None,
            configure: None,
        }
    }

    /// Reads the input `name` as a `T`: the given JSON or YAML is
    /// deserialized into it, and a value of another shape is an error
    /// naming the input and the type.
    pub fn input<T: DeserializeOwned + Send + Sync + 'static>(mut self, name: &str) -> Entry {
        self.inputs
            .insert(name.to_string(), values::typed_input::<T>());
        self
    }

    /// Prints a result of type `T` through its `Serialize`, alone or inside
    /// a map step's collected outputs (a list of values).
    pub fn output<T: Serialize + 'static>(mut self) -> Entry {
        self.output = Some(values::typed_output::<T>());
        self
    }

    /// Sets options on each run (concurrency, pool, middleware, ...).
    pub fn configure(
        mut self,
        f: impl Fn(RunRequest) -> RunRequest + Send + Sync + 'static,
    ) -> Entry {
        self.configure = Some(Arc::new(f));
        self
    }
}

impl From<Reactor> for Entry {
    fn from(reactor: Reactor) -> Entry {
        Entry::new(reactor)
    }
}

/// A command line over a set of reactors (see the [module](self) for its
/// commands).
///
/// # Examples
///
/// A binary's whole `main`:
///
/// ```no_run
/// use reactor::cli::{App, Entry};
/// use reactor::{input, step, Reactor};
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     let double = Reactor::builder("double")
///         .input("n")
///         .add(step("twice").argument("n", input("n")).run_sync(|a, _| Ok(a.get::<i64>("n")? * 2)))
///         .returns("twice")
///         .build()
///         .expect("a valid reactor");
///     App::new("numbers")
///         .about("Doubles numbers")
///         .reactor(Entry::new(double).input::<i64>("n"))
///         // What `numbers` with no command (or `numbers demo`) runs.
///         .demo(|quick| async move {
///             println!("a {} demo", if quick { "short" } else { "full" });
///             Ok(())
///         })
///         .main()
///         .await
/// }
/// ```
pub struct App {
    name: String,
    about: Option<String>,
    entries: Vec<Entry>,
    demo: Option<Demo>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field(
                "reactors",
                &self
                    .entries
                    .iter()
                    .map(|e| e.reactor.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Lists the reactors, their inputs and descriptions.
    List,
    /// Shows a reactor's inputs, steps and their arguments, and a Mermaid diagram.
    Describe {
        /// The reactor.
        name: String,
        /// Which way the diagram flows.
        #[arg(long, value_enum, default_value_t = Flow::Td)]
        direction: Flow,
        /// Draws nested kinds (map, compose, switch, ...) as single nodes.
        #[arg(long)]
        collapse: bool,
        /// Prints only the Mermaid diagram.
        #[arg(long)]
        mermaid: bool,
    },
    /// Runs a reactor and prints its result.
    Run {
        /// The reactor.
        name: String,
        /// An input, as KEY=VALUE (VALUE read as JSON, else as a string).
        #[arg(long = "input", short = 'i', value_name = "KEY=VALUE")]
        input: Vec<String>,
        /// A JSON or YAML file of inputs (`-` reads standard input).
        #[arg(long = "inputs", value_name = "FILE")]
        inputs: Option<PathBuf>,
        /// How the result is printed.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// Shows progress bars (steps, map elements) on a terminal.
        #[arg(long)]
        progress: bool,
        /// Prints each step's start, end and outcome when the run ends.
        #[arg(long)]
        timeline: bool,
        /// Prints the run-annotated Mermaid diagram when the run ends.
        #[arg(long)]
        mermaid: bool,
        /// How many steps run at once: a limit (at least 1), or `auto` for
        /// an adaptive limit of awaiting steps.
        #[arg(long, alias = "max-concurrency", value_name = "N|auto", value_parser = parse_concurrency)]
        concurrency: Option<Concurrency>,
    },
    /// Runs the program's demonstration.
    Demo {
        /// A short run (what CI runs).
        #[arg(long)]
        quick: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Flow {
    Td,
    Lr,
    Bt,
    Rl,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Yaml,
}

/// A one-line error for the user (empty: exit quietly, with success).
struct Failure(String);

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // Whoever read the output stopped reading: nothing to report.
            Failure(String::new())
        } else {
            Failure(format!("writing the output: {e}"))
        }
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Failure {
        Failure(e.to_string())
    }
}

impl From<serde_yaml_ng::Error> for Failure {
    fn from(e: serde_yaml_ng::Error) -> Failure {
        Failure(e.to_string())
    }
}

impl App {
    /// A command line named `name` (shown in its help), with no reactors.
    pub fn new(name: impl Into<String>) -> App {
        App {
            name: name.into(),
            about: None,
            entries: Vec::new(),
            demo: None,
        }
    }

    /// What the program does, for its help.
    pub fn about(mut self, text: impl Into<String>) -> App {
        self.about = Some(text.into());
        self
    }

    /// Offers a reactor (a [`Reactor`], or an [`Entry`] declaring its
    /// inputs' and result's types).
    pub fn reactor(mut self, entry: impl Into<Entry>) -> App {
        self.entries.push(entry.into());
        self
    }

    /// The program's demonstration: what `demo` (and no command at all)
    /// runs; it is given whether `--quick` was asked for.
    pub fn demo<F, Fut>(mut self, demo: F) -> App
    where
        F: FnOnce(bool) -> Fut + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        self.demo = Some(Box::new(move |quick| Box::pin(demo(quick))));
        self
    }

    /// Runs the command line of this process (`std::env::args`), printing
    /// to standard output and error: a binary's `main` returns this.
    pub async fn main(self) -> ExitCode {
        let code = self
            .run(
                std::env::args_os(),
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
            .await;
        ExitCode::from(code)
    }

    /// Runs the command line `args` (the program's name first), writing
    /// results to `out` and errors to `err`; returns the exit code.
    pub async fn run<I, S>(self, args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        let mut command = <Cli as clap::CommandFactory>::command().name(self.name.clone());
        if let Some(about) = &self.about {
            command = command.about(about.clone());
        }
        let parsed = command
            .clone()
            .try_get_matches_from(args)
            .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
        let cli = match parsed {
            Ok(cli) => cli,
            Err(e) => {
                let text = e.render().to_string();
                let _ = if e.use_stderr() {
                    err.write_all(text.as_bytes())
                } else {
                    out.write_all(text.as_bytes())
                };
                return e.exit_code().clamp(0, 255) as u8;
            }
        };
        let result = match cli.command {
            None if self.demo.is_none() => {
                write!(out, "{}", command.render_help()).map_err(Failure::from)
            }
            None => self.run_demo(false).await,
            Some(Command::Demo { quick }) => self.run_demo(quick).await,
            Some(Command::List) => self.list(out),
            Some(Command::Describe {
                name,
                direction,
                collapse,
                mermaid,
            }) => self.describe(&name, direction, collapse, mermaid, out),
            Some(Command::Run {
                name,
                input,
                inputs,
                format,
                progress,
                timeline,
                mermaid,
                concurrency,
            }) => {
                let how = RunHow {
                    format,
                    progress,
                    timeline,
                    mermaid,
                    concurrency,
                };
                self.run_one(&name, inputs, &input, how, out, err).await
            }
        };
        match result {
            Ok(()) => 0,
            Err(Failure(text)) if text.is_empty() => 0,
            Err(Failure(text)) => {
                let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let _ = writeln!(err, "error: {line}");
                1
            }
        }
    }

    async fn run_demo(self, quick: bool) -> Result<(), Failure> {
        let demo = self
            .demo
            .ok_or_else(|| Failure(format!("`{}` has no demo", self.name)))?;
        // A panicking demo is reported like a failing one.
        match crate::executor::attempt::guarded(|| demo(quick)).await {
            Ok(result) => result.map_err(|e| Failure(format!("demo failed: {e}"))),
            Err(panic) => Err(Failure(format!("demo panicked: {panic}"))),
        }
    }

    fn entry(&self, name: &str) -> Result<&Entry, Failure> {
        let mut named = self.entries.iter().filter(|e| e.reactor.name() == name);
        if let (Some(_), Some(_)) = (named.next(), named.next()) {
            return Err(Failure(format!(
                "`{}` offers two reactors named `{name}`",
                self.name
            )));
        }
        self.entries
            .iter()
            .find(|e| e.reactor.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.entries.iter().map(|e| e.reactor.name()).collect();
                Failure(format!(
                    "unknown reactor `{name}` (known: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            })
    }

    fn list(&self, out: &mut dyn Write) -> Result<(), Failure> {
        for e in &self.entries {
            let r = &e.reactor;
            let inputs: Vec<&str> = r.input_names().collect();
            write!(out, "{}({})", r.name(), inputs.join(", "))?;
            if let Some(text) = r.description() {
                write!(out, "  {text}")?;
            }
            writeln!(out)?;
        }
        Ok(())
    }

    fn describe(
        &self,
        name: &str,
        flow: Flow,
        collapse: bool,
        mermaid_only: bool,
        out: &mut dyn Write,
    ) -> Result<(), Failure> {
        let reactor = &self.entry(name)?.reactor;
        let options = MermaidOptions::new()
            .direction(direction(flow))
            .expand(!collapse);
        let diagram = reactor.to_mermaid(&options);
        if mermaid_only {
            writeln!(out, "{diagram}")?;
        } else {
            write!(
                out,
                "{}\nmermaid:\n{diagram}\n",
                describe::describe(reactor)
            )?;
        }
        Ok(())
    }

    async fn run_one(
        &self,
        name: &str,
        file: Option<PathBuf>,
        pairs: &[String],
        how: RunHow,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<(), Failure> {
        let entry = self.entry(name)?;
        let reactor = &entry.reactor;
        let given = values::gather(file.as_deref(), pairs, || {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map(|_| text)
        })
        .map_err(Failure)?;
        let inputs = values::inputs_for(reactor, &entry.inputs, given).map_err(Failure)?;
        let mut request = reactor.run(inputs);
        if let Some(configure) = &entry.configure {
            request = guarded("configuring the run", || configure(request))?;
        }
        if let Some(c) = how.concurrency {
            request = request.concurrency(c);
        }
        let recording = (how.timeline || how.mermaid).then(Recording::new);
        if let Some(r) = &recording {
            request = request.middleware(Arc::new(r.clone()));
        }
        let bars = how
            .progress
            .then(|| Arc::new(progress::Progress::new(reactor)));
        if let Some(bars) = &bars {
            request = request.middleware(bars.clone());
        }
        let result = request.await;
        if let Some(bars) = &bars {
            bars.finish();
        }
        if let Some(r) = &recording {
            if how.timeline {
                write!(err, "{}", r.timeline())?;
            }
            if how.mermaid {
                writeln!(
                    err,
                    "{}",
                    reactor.to_mermaid_run(r, &MermaidOptions::default())
                )?;
            }
        }
        let value = result.map_err(|e| Failure(format!("reactor `{name}`: {e}")))?;
        let json = guarded("printing the result", || match &entry.output {
            Some(convert) => convert(&value),
            None => values::to_json(&value),
        })?
        .map_err(|e| Failure(format!("reactor `{name}` returned {e}")))?;
        match how.format {
            Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?,
            Format::Yaml => write!(out, "{}", serde_yaml_ng::to_string(&json)?)?,
        }
        Ok(())
    }
}

/// How `run` runs and reports.
struct RunHow {
    format: Format,
    progress: bool,
    timeline: bool,
    mermaid: bool,
    concurrency: Option<Concurrency>,
}

/// `--concurrency`: `auto`, or a limit of at least 1.
fn parse_concurrency(text: &str) -> Result<Concurrency, String> {
    if text.eq_ignore_ascii_case("auto") {
        return Ok(Concurrency::Auto);
    }
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(Concurrency::Limit(n)),
        _ => Err(format!(
            "expected `auto` or a number of at least 1, got `{text}`"
        )),
    }
}

/// Runs user code `f` of the command line (a configure closure, a
/// `Serialize` impl), its panic an error of `what`.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, Failure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        Failure(format!(
            "{what} panicked: {}",
            crate::error::panic_message(panic.as_ref())
        ))
    })
}

fn direction(flow: Flow) -> Direction {
    match flow {
        Flow::Td => Direction::TopDown,
        Flow::Lr => Direction::LeftRight,
        Flow::Bt => Direction::BottomUp,
        Flow::Rl => Direction::RightLeft,
    }
}
