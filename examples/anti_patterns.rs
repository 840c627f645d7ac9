//! The fixes for the performance guide's two anti-patterns, one reactor
//! each (plus the guide's "BETTER" polling step):
//!
//! - **Blocking async steps**: instead of a step waiting inside itself for
//!   a resource (holding a concurrency slot while it waits), `ExplicitDependency`
//!   models the dependency: `prepare_resource` makes it ready and
//!   `process_data` takes its result as an argument.
//! - **Polling an external service**: `PollExternalService`'s
//!   `wait_for_external_service` checks once; when the service is not
//!   ready, it returns successfully with *itself* re-emitted (the guide's
//!   `{:ok, nil, [current_step]}`), so the check runs again without
//!   holding a slot in between; its dependents wait for the final check.
//! - **Excessive dependencies**: `IndependentSteps` has three steps that do
//!   not depend on each other (so they run at once) and one that combines
//!   them, instead of an artificial chain.
//!
//! ```text
//! cargo run --release --example anti_patterns
//! cargo run --release --example anti_patterns -- run PollExternalService --input ready_after=5 --timeline
//! ```

mod common;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{check, InFlight};
use reactor::cli::{App, Entry};
use reactor::{input, result, step, BoxError, Inputs, Outcome, Reactor};

/// A prepared resource: what `process_data` needs to be ready.
#[derive(Clone, Debug)]
struct Resource {
    multiplier: u64,
}

/// The good pattern: the resource is a step, and the step using it says so.
fn explicit_dependency(latency: Duration) -> Result<Reactor, reactor::Error> {
    Reactor::builder("ExplicitDependency")
        .input("data")
        .add(step("prepare_resource").run(move |_, _| async move {
            tokio::time::sleep(latency).await; // setup_resource()
            Ok(Resource { multiplier: 3 })
        }))
        .add(
            step("process_data")
                .argument("resource_ready", result("prepare_resource"))
                .argument("data", input("data"))
                .run_sync(|args, _| {
                    // No waiting here: the dependency made sure it is ready.
                    let multiplier = args.get::<Resource>("resource_ready")?.multiplier;
                    let processed = args
                        .get::<Vec<u64>>("data")?
                        .iter()
                        .map(|&d| {
                            d.checked_mul(multiplier).ok_or_else(|| {
                                format!("data value {d} times {multiplier} overflows a u64")
                            })
                        })
                        .collect::<Result<Vec<u64>, String>>()?;
                    Ok(processed)
                }),
        )
        .returns("process_data")
        .build()
}

/// The better pattern for an external resource: a step that re-emits
/// itself until the service answers. `checks` counts the checks made.
fn poll_external_service(checks: Arc<AtomicU32>) -> Result<Reactor, reactor::Error> {
    Reactor::builder("PollExternalService")
        .input("ready_after")
        .add(
            step("wait_for_external_service")
                .argument("ready_after", input("ready_after"))
                .run(move |args, ctx| {
                    let checks = checks.clone();
                    async move {
                        let ready_after = *args.get::<u32>("ready_after")?;
                        // check_external_service(): ready after some checks.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        let made = checks.fetch_add(1, Ordering::SeqCst) + 1;
                        if made >= ready_after {
                            Ok::<_, BoxError>(Outcome::ok(format!(
                                "service ready after {made} checks"
                            )))
                        } else {
                            // Not ready: emit the current step again.
                            Ok(Outcome::with_steps((), vec![ctx.current_step()]))
                        }
                    }
                }),
        )
        .add(
            step("use_service")
                .argument("status", result("wait_for_external_service"))
                .run_sync(|args, _| {
                    Ok(format!(
                        "used the service ({})",
                        args.get::<String>("status")?
                    ))
                }),
        )
        .returns("use_service")
        .build()
}

/// Independent steps run in parallel; only the combining step depends on them.
fn independent_steps(gauge: &InFlight, latency: Duration) -> Result<Reactor, reactor::Error> {
    let mut builder = Reactor::builder("IndependentSteps");
    for (i, name) in ["step1", "step2", "step3"].into_iter().enumerate() {
        let gauge = gauge.clone();
        builder.add(step(name).run(move |_, _| {
            let flying = gauge.enter();
            async move {
                tokio::time::sleep(latency).await;
                drop(flying);
                Ok(format!("data{}", i + 1))
            }
        }));
    }
    builder
        .add(
            step("combine_results")
                .argument("data1", result("step1"))
                .argument("data2", result("step2"))
                .argument("data3", result("step3"))
                .run_sync(|args, _| {
                    let parts: Result<Vec<&String>, _> = ["data1", "data2", "data3"]
                        .iter()
                        .map(|n| args.get::<String>(n))
                        .collect();
                    Ok(parts?
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join("+"))
                }),
        )
        .returns("combine_results")
        .build()
}

#[tokio::main]
async fn main() -> ExitCode {
    let ms = Duration::from_millis(20);
    App::new("anti_patterns")
        .about("The guide's anti-pattern fixes: explicit dependencies, polling by re-emitting, independent steps")
        .reactor(Entry::new(explicit_dependency(ms).expect("valid")).input::<Vec<u64>>("data").output::<Vec<u64>>())
        .reactor(Entry::new(poll_external_service(Arc::default()).expect("valid")).input::<u32>("ready_after"))
        .reactor(independent_steps(&InFlight::default(), ms).expect("valid"))
        .demo(demo)
        .main()
        .await
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let latency = Duration::from_millis(if quick { 5 } else { 50 });

    let out = explicit_dependency(latency)?
        .run(Inputs::new().with("data", vec![1_u64, 2, 3]))
        .await?;
    println!("ExplicitDependency: {:?}", out.get::<Vec<u64>>()?);
    check(
        *out.get::<Vec<u64>>()? == [3, 6, 9],
        "the resource was used",
    )?;

    let checks = Arc::new(AtomicU32::new(0));
    let out = poll_external_service(checks.clone())?
        .run(Inputs::new().with("ready_after", 4_u32))
        .await?;
    println!("PollExternalService: {}", out.get::<String>()?);
    check(
        *out.get::<String>()? == "used the service (service ready after 4 checks)",
        out.get::<String>()?,
    )?;
    check(
        checks.load(Ordering::SeqCst) == 4,
        "four checks, then no more",
    )?;

    let gauge = InFlight::default();
    let out = independent_steps(&gauge, latency)?
        .run(Inputs::new())
        .max_concurrency(4)
        .await?;
    println!(
        "IndependentSteps: {} ({} of 3 steps ran at once)",
        out.get::<String>()?,
        gauge.peak()
    );
    check(
        *out.get::<String>()? == "data1+data2+data3",
        out.get::<String>()?,
    )
}
