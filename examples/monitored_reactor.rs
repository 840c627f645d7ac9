//! The performance guide's `MonitoredReactor`: telemetry on a reactor, and
//! handlers attached to its events (the guide's `:telemetry.attach_many`)
//! logging how long the run and each step took.
//!
//! The reactor carries two telemetry middlewares: [`Metrics`] (through the
//! `metrics` facade, for any exporter) and [`Handlers`], to which the demo
//! attaches one function for `reactor.run.start`/`stop` and
//! `reactor.step.run.start`/`stop`, logging through `tracing`. The demo
//! checks each event arrived with its measurements and metadata.
//!
//! ```text
//! cargo run --release --example monitored_reactor
//! RUST_LOG=debug cargo run --release --example monitored_reactor -- run MonitoredReactor --input data=12
//! ```

mod common;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::check;
use reactor::cli::{App, Entry};
use reactor::telemetry::{Handlers, Metrics};
use reactor::{input, step, BoxError, Inputs, Reactor};

/// The guide's `expensive_operation`: here, a simulated slow call
/// squaring `data` (an error, naming it, if the square overflows a `u64`).
async fn expensive_operation(data: u64, latency: Duration) -> Result<u64, String> {
    tokio::time::sleep(latency).await;
    data.checked_mul(data)
        .ok_or_else(|| format!("data = {data}: its square overflows a u64"))
}

fn monitored_reactor(
    telemetry: Arc<Handlers>,
    latency: Duration,
) -> Result<Reactor, reactor::Error> {
    Reactor::builder("MonitoredReactor")
        .middleware(Metrics::new())
        .middleware_arc(telemetry)
        .input("data")
        .add(step("slow_operation").argument("data", input("data")).run(
            move |args, _| async move {
                Ok::<_, BoxError>(expensive_operation(*args.get::<u64>("data")?, latency).await?)
            },
        ))
        .returns("slow_operation")
        .build()
}

/// The guide's handler: logs the run's and each step's duration, and
/// remembers each event's name and subject for the demo's check.
fn attach_performance_handler(telemetry: &Handlers, seen: Arc<Mutex<Vec<String>>>) {
    telemetry.attach_many(
        "reactor-performance",
        &[
            "reactor.run.start",
            "reactor.run.stop",
            "reactor.step.run.start",
            "reactor.step.run.stop",
        ],
        move |event| {
            let meta = &event.metadata;
            match (event.name, event.measurements.duration) {
                ("reactor.run.stop", Some(took)) => {
                    tracing::info!(
                        "Reactor {} completed in {}ms",
                        meta.reactor,
                        took.as_millis()
                    );
                }
                ("reactor.step.run.stop", Some(took)) => {
                    let step_name = meta.step.unwrap_or("?");
                    tracing::debug!("Step {step_name} completed in {}ms", took.as_millis());
                }
                _ => {}
            }
            let subject = meta.step.unwrap_or(meta.reactor);
            let timed = if event.measurements.duration.is_some() {
                " (timed)"
            } else {
                ""
            };
            seen.lock()
                .expect("not poisoned")
                .push(format!("{} {subject}{timed}", event.name));
        },
    );
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("monitored_reactor=debug")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a terminal, not in a file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let telemetry = Arc::new(Handlers::new());
    attach_performance_handler(&telemetry, Arc::default());
    let reactor =
        monitored_reactor(telemetry, Duration::from_millis(100)).expect("a valid reactor");
    App::new("monitored_reactor")
        .about("Telemetry handlers logging the run's and its steps' durations")
        .reactor(Entry::new(reactor).input::<u64>("data").output::<u64>())
        .demo(demo)
        .main()
        .await
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let telemetry = Arc::new(Handlers::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    attach_performance_handler(&telemetry, seen.clone());
    let latency = Duration::from_millis(if quick { 5 } else { 100 });
    let reactor = monitored_reactor(telemetry, latency)?;
    let out = reactor.run(Inputs::new().with("data", 12_u64)).await?;
    check(*out.get::<u64>()? == 144, format!("{out:?}"))?;
    let seen = seen.lock().expect("not poisoned").clone();
    for line in &seen {
        println!("{line}");
    }
    check(
        seen == [
            "reactor.run.start MonitoredReactor",
            "reactor.step.run.start slow_operation",
            "reactor.step.run.stop slow_operation (timed)",
            "reactor.run.stop MonitoredReactor (timed)",
        ],
        "the handler saw each event once, in order, stops with durations",
    )
}
