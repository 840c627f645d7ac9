//! The performance guide's `AdaptiveBackoffStep` ("Backoff Strategies for
//! External Services: Adaptive Backoff for Complex Scenarios"): a step whose
//! retry delay depends on how the service it calls is doing overall.
//!
//! The guide keeps the error counts in a GenServer; here they are a
//! [`ServiceHealth`] shared by `Arc` between every copy of the step and
//! every run. Each call records a success or an error; `backoff` reads the
//! error rate and picks a tier:
//!
//! | error rate | delay |
//! |---|---|
//! | > 0.5 | 10 s |
//! | > 0.2 | 5 s |
//! | > 0.1 | 2 s |
//! | otherwise | 500 ms |
//!
//! plus up to 1 s of jitter, all multiplied by the run's `time_scale`
//! (1.0 is real time). The guide counts from `window_start` and never
//! resets; here the rate is over the last 50 calls, so that it follows the
//! service as it gets worse (or better).
//!
//! The demo calls a simulated service (whether a call fails is a seeded
//! hash of call and try) in phases of rising failure rate, 0% then 5%,
//! 15%, 40% and 70%, through one reactor and one shared health record. It
//! prints the error rate and the delays chosen in each phase and checks
//! what the seeded failures fix, whatever the machine's speed: the healthy
//! phase never backed off, each failure was backed off from once, each
//! delay is the tier of the rate its decision read (plus jitter), and the
//! tier of each phase's own error rate (its errors over its attempts, the
//! same in every run) rises phase after phase up to the 10 s tier. The
//! rates the decisions read depend on how the concurrent calls and their
//! retries interleave, so their mean tier per phase is printed, not
//! checked. `--quick` runs at 1/1000 of real time (10 s is 10 ms), the
//! full demo at 1/20 (about 10 s in all).
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example adaptive_backoff_step                     # the demo
//! cargo run --release --example adaptive_backoff_step -- demo --quick     # a short demo
//! cargo run --release --example adaptive_backoff_step -- list
//! cargo run --release --example adaptive_backoff_step -- describe adaptive_backoff
//! cargo run --release --example adaptive_backoff_step -- run adaptive_backoff \
//!     --input calls=40 --input failure_rate=0.3 --input time_scale=0.01
//! ```
//!
//! `adaptive_backoff(calls, failure_rate, time_scale)` makes `calls` calls
//! (at most 1,000,000) to a service failing `failure_rate` of the time (a
//! number from 0 to 1) and prints how many attempts they took, the final
//! error rate and every delay chosen; `time_scale` must be a number from 0
//! to 1,000.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{check, draw, Jitter};
use reactor::kinds::{element, map};
use reactor::{
    async_trait, input, result, step, Arguments, Backoff, BoxError, Compensation, Context, Inputs,
    Outcome, Reactor, Reason, Step, StepSpec, Value,
};
use serde::Serialize;

/// How many recent calls the error rate is over.
const WINDOW: usize = 50;
/// The most jitter added, in milliseconds.
const JITTER_MAX_MS: u64 = 1_000;
/// The seed of the simulated service's failures.
const SEED: u64 = 0xada9_7195;
/// The most calls one run makes (its call ids are collected in memory).
const MAX_CALLS: u64 = 1_000_000;
/// The largest `time_scale` (at which the 10 s tier waits about 3 hours).
const MAX_TIME_SCALE: f64 = 1_000.0;

/// `ms` real-time milliseconds at `time_scale` (a delay too long for a
/// `Duration` is the longest one; a negative or NaN scale, none).
fn scaled(ms: u64, time_scale: f64) -> Duration {
    Duration::try_from_secs_f64((ms as f64 / 1_000.0 * time_scale).max(0.0))
        .unwrap_or(Duration::MAX)
}

/// The guide's tiers: the delay for an error rate, in milliseconds.
fn base_delay_ms(error_rate: f64) -> u64 {
    if error_rate > 0.5 {
        10_000 // High error rate: long delays.
    } else if error_rate > 0.2 {
        5_000 // Moderate error rate: medium delays.
    } else if error_rate > 0.1 {
        2_000 // Low error rate: short delays.
    } else {
        500 // Very low error rate: minimal delays.
    }
}

/// One backoff decision, kept to show (and check) what the step chose.
#[derive(Clone, Copy, Debug)]
struct Decision {
    /// The error rate `backoff` read.
    error_rate: f64,
    /// The tier it picked, in real-time milliseconds.
    base_ms: u64,
    /// The delay it asked for: `(base + jitter) * time_scale`.
    delay: Duration,
    /// The run's time scale.
    time_scale: f64,
}

/// The recent calls: `true` is an error.
struct Window {
    recent: VecDeque<bool>,
    errors: usize,
}

/// The GenServer's state: successes and errors of the recent calls to the
/// service, shared by every step calling it.
struct ServiceHealth {
    window: Mutex<Window>,
    decisions: Mutex<Vec<Decision>>,
}

impl ServiceHealth {
    fn new() -> ServiceHealth {
        ServiceHealth {
            window: Mutex::new(Window {
                recent: VecDeque::with_capacity(WINDOW),
                errors: 0,
            }),
            decisions: Mutex::new(Vec::new()),
        }
    }

    fn record(&self, error: bool) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if w.recent.len() == WINDOW && w.recent.pop_front() == Some(true) {
            w.errors -= 1;
        }
        w.recent.push_back(error);
        w.errors += usize::from(error);
    }

    /// `handle_cast(:record_success)`.
    fn record_success(&self) {
        self.record(false);
    }

    /// `handle_cast(:record_error)`.
    fn record_error(&self) {
        self.record(true);
    }

    /// `handle_call(:get_error_rate)`: errors over calls, 0.0 before any.
    fn error_rate(&self) -> f64 {
        let w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if w.recent.is_empty() {
            0.0
        } else {
            w.errors as f64 / w.recent.len() as f64
        }
    }

    fn decided(&self, decision: Decision) {
        self.decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(decision);
    }

    fn decisions(&self) -> Vec<Decision> {
        self.decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the service failed call {call} (try {attempt})")]
struct ServiceError {
    call: u64,
    attempt: u32,
}

/// The guide's `call_external_service`, simulated: call `call` fails on
/// try `attempt` when a seeded hash of both falls under `failure_rate`.
fn call_external_service(call: u64, attempt: u32, failure_rate: f64) -> Result<u64, ServiceError> {
    if draw(SEED, call, attempt) < failure_rate {
        Err(ServiceError { call, attempt })
    } else {
        Ok(call)
    }
}

/// `AdaptiveBackoffStep`: arguments `call` (u64), `failure_rate` and
/// `time_scale` (f64); returns how many attempts the call took.
#[derive(Clone)]
struct AdaptiveBackoffStep {
    health: Arc<ServiceHealth>,
    jitter: Arc<Jitter>,
}

impl AdaptiveBackoffStep {
    fn new(health: Arc<ServiceHealth>) -> AdaptiveBackoffStep {
        AdaptiveBackoffStep {
            health,
            jitter: Arc::new(Jitter::new()),
        }
    }
}

#[async_trait]
impl Step for AdaptiveBackoffStep {
    async fn run(&self, args: Arguments, ctx: Context) -> Outcome {
        let (call, failure_rate) = match (args.get::<u64>("call"), args.get::<f64>("failure_rate"))
        {
            (Ok(c), Ok(f)) => (*c, *f),
            (Err(e), _) | (_, Err(e)) => return Outcome::error(e),
        };
        match call_external_service(call, ctx.current_try(), failure_rate) {
            Ok(_) => {
                self.health.record_success();
                Outcome::ok(ctx.current_try() + 1)
            }
            Err(e) => {
                self.health.record_error();
                Outcome::Error(Reason::new(e))
            }
        }
    }

    async fn compensate(&self, _error: Reason, _args: Arguments, _ctx: Context) -> Compensation {
        Compensation::Retry(None)
    }

    /// A call to read from the service changes nothing: nothing to undo.
    fn can_undo(&self) -> bool {
        false
    }

    fn backoff(&self, _reason: Option<&Reason>, args: &Arguments, _ctx: &Context) -> Backoff {
        let time_scale = args.get::<f64>("time_scale").map_or(1.0, |s| s.max(0.0));
        let error_rate = self.health.error_rate();
        let base_ms = base_delay_ms(error_rate);
        // Jitter keeps retrying callers from all coming back at once.
        let jitter_ms = self.jitter.uniform(JITTER_MAX_MS);
        let delay = scaled(base_ms + jitter_ms, time_scale);
        self.health.decided(Decision {
            error_rate,
            base_ms,
            delay,
            time_scale,
        });
        Backoff::After(delay)
    }
}

/// What a run of `adaptive_backoff` did.
#[derive(Debug, Serialize)]
struct Summary {
    calls: u64,
    attempts: u64,
    retries: u64,
    /// The error rate over the last calls when the run ended.
    error_rate: f64,
    /// Every delay chosen, in milliseconds.
    delays_ms: Vec<f64>,
}

/// `adaptive_backoff(calls, failure_rate, time_scale)`: a map makes the
/// calls through `AdaptiveBackoffStep`, then `summary` tallies them.
fn adaptive_reactor(health: Arc<ServiceHealth>) -> Result<Reactor, BoxError> {
    let service = AdaptiveBackoffStep::new(health.clone());
    let reactor = Reactor::builder("adaptive_backoff")
        .description("calls a flakey service, backing off by its recent error rate")
        .input("calls")
        .input("failure_rate")
        .input("time_scale")
        .add(
            step("call_ids")
                .argument("calls", input("calls"))
                .argument("failure_rate", input("failure_rate"))
                .argument("time_scale", input("time_scale"))
                .run_sync(|args, _| {
                    // The inputs are checked here, before any call.
                    let calls = *args.get::<u64>("calls")?;
                    if calls > MAX_CALLS {
                        Err(format!("calls = {calls}: at most {MAX_CALLS}"))?;
                    }
                    let failure_rate = *args.get::<f64>("failure_rate")?;
                    if !(0.0..=1.0).contains(&failure_rate) {
                        Err(format!(
                            "failure_rate = {failure_rate:?}: a number from 0 to 1"
                        ))?;
                    }
                    let time_scale = *args.get::<f64>("time_scale")?;
                    if !(0.0..=MAX_TIME_SCALE).contains(&time_scale) {
                        Err(format!(
                            "time_scale = {time_scale:?}: a number from 0 to {MAX_TIME_SCALE}"
                        ))?;
                    }
                    Ok((0..calls).collect::<Vec<u64>>())
                }),
        )
        .add(
            map("call_service", result("call_ids"))
                .items::<u64>()
                .steps([StepSpec::new("service", service)
                    .argument("call", element("call_service"))
                    .argument("failure_rate", input("failure_rate"))
                    .argument("time_scale", input("time_scale"))
                    .max_retries(40)
                    .description("AdaptiveBackoffStep")])
                .into_step()?
                .argument("failure_rate", input("failure_rate"))
                .argument("time_scale", input("time_scale")),
        )
        .add(
            step("summary")
                .argument("attempts", result("call_service"))
                .run_sync(move |args, _| {
                    let attempts = args.get::<Vec<Value>>("attempts")?;
                    let calls = attempts.len() as u64;
                    let mut total = 0_u64;
                    for a in attempts {
                        total += u64::from(*a.get::<u32>()?);
                    }
                    Ok(Summary {
                        calls,
                        attempts: total,
                        retries: total - calls,
                        error_rate: health.error_rate(),
                        delays_ms: health
                            .decisions()
                            .iter()
                            .map(|d| (d.delay.as_secs_f64() * 1e4).round() / 10.0)
                            .collect(),
                    })
                }),
        )
        .returns("summary")
        .build()?;
    Ok(reactor)
}

/// The mean of `values`, 0 for none.
fn mean_of(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = values.len();
    if n == 0 {
        0.0
    } else {
        values.sum::<f64>() / n as f64
    }
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let time_scale = if quick { 0.001 } else { 0.05 };
    println!("Tiers by error rate (real time, before jitter):");
    for rate in [0.0, 0.05, 0.15, 0.3, 0.6] {
        println!("  {rate:>4.2} -> {:>5} ms", base_delay_ms(rate));
    }
    check(
        base_delay_ms(0.05) < base_delay_ms(0.15)
            && base_delay_ms(0.15) < base_delay_ms(0.3)
            && base_delay_ms(0.3) < base_delay_ms(0.6),
        "the tiers do not rise with the error rate",
    )?;

    let health = Arc::new(ServiceHealth::new());
    let reactor = adaptive_reactor(health.clone())?;
    let phases = [0.0, 0.05, 0.15, 0.4, 0.7];
    let calls = 60_u64;
    println!(
        "\nPhases of {calls} calls sharing one health record, max_concurrency 10\n(tiers in real time, delays at {}x real time):",
        time_scale
    );
    println!(
        "  {:>8} {:>9} {:>11} {:>10} {:>21} {:>10} {:>12} {:>9}",
        "failures",
        "attempts",
        "error rate",
        "decisions",
        "tiers 0.5/2/5/10 s",
        "mean tier",
        "mean delay",
        "time"
    );
    // (failure rate, the tier of the phase's own error rate, the mean tier
    // of its decisions)
    let mut phase_tiers = Vec::new();
    let mut seen = 0;
    for (phase, failure_rate) in phases.into_iter().enumerate() {
        let started = Instant::now();
        // The same calls each phase: a call fails where its draw falls
        // under the phase's rate, so worse phases fail a superset.
        let out = reactor
            .run(
                Inputs::new()
                    .with("calls", calls)
                    .with("failure_rate", failure_rate)
                    .with("time_scale", time_scale),
            )
            .max_concurrency(10)
            .await?;
        let elapsed = started.elapsed();
        let summary = out.get::<Summary>()?;
        let all = health.decisions();
        let decisions = &all[seen..];
        seen = all.len();
        let mut tiers = [0_usize; 4];
        for d in decisions {
            let i = match d.base_ms {
                500 => 0,
                2_000 => 1,
                5_000 => 2,
                _ => 3,
            };
            tiers[i] += 1;
            // The delay is the tier of the rate seen, plus 1..=1000 ms, scaled.
            let low = scaled(d.base_ms + 1, d.time_scale);
            let high = scaled(d.base_ms + JITTER_MAX_MS, d.time_scale);
            check(
                d.base_ms == base_delay_ms(d.error_rate) && d.delay >= low && d.delay <= high,
                format!("a decision does not follow the tiers: {d:?}"),
            )?;
        }
        // The tier is what the error rate decides; the delay adds jitter.
        let mean_tier = mean_of(decisions.iter().map(|d| d.base_ms as f64));
        let mean = mean_of(decisions.iter().map(|d| d.delay.as_secs_f64()));
        // Every failed try was retried, so the phase's errors are its
        // retries: a rate fixed by the seeded draws, whatever the order.
        let phase_rate = summary.retries as f64 / summary.attempts.max(1) as f64;
        let phase_tier = base_delay_ms(phase_rate);
        println!(
            "  {:>7.0}% {:>9} {:>11.2} {:>10} {:>21} {:>7.0} ms {:>9.2} ms {:>6.0} ms",
            failure_rate * 100.0,
            summary.attempts,
            phase_rate,
            decisions.len(),
            format!("{}/{}/{}/{}", tiers[0], tiers[1], tiers[2], tiers[3]),
            mean_tier,
            mean * 1e3,
            elapsed.as_secs_f64() * 1e3
        );
        check(
            summary.calls == calls,
            format!("phase {phase} completed {} of {calls} calls", summary.calls),
        )?;
        check(
            decisions.len() as u64 == summary.retries,
            format!(
                "phase {phase} made {} backoff decisions for {} retries",
                decisions.len(),
                summary.retries
            ),
        )?;
        if failure_rate == 0.0 {
            check(
                decisions.is_empty(),
                "a healthy service was backed off from",
            )?;
        } else {
            check(
                !decisions.is_empty(),
                format!("phase {phase} never retried"),
            )?;
            phase_tiers.push((failure_rate, phase_tier, mean_tier));
        }
    }
    println!(
        "(error rate: the phase's errors over its attempts; the decisions read the rate of the\nlast {WINDOW} calls, which depends on how the concurrent calls interleave)"
    );
    check(
        phase_tiers.windows(2).all(|w| w[0].1 < w[1].1),
        format!("the tier of the error rate did not rise with the failure rate: {phase_tiers:?}"),
    )?;
    check(
        phase_tiers
            .last()
            .is_some_and(|(_, tier, _)| *tier == base_delay_ms(1.0)),
        format!("the 70% phase's error rate is not in the 10 s tier: {phase_tiers:?}"),
    )?;
    println!("The tier rose with the error rate. All checks passed.");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let reactor = match adaptive_reactor(Arc::new(ServiceHealth::new())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    reactor::cli::App::new("adaptive_backoff_step")
        .about("The performance guide's AdaptiveBackoffStep: retry delays chosen by the service's recent error rate")
        .reactor(
            reactor::cli::Entry::new(reactor)
                .input::<u64>("calls")
                .input::<f64>("failure_rate")
                .input::<f64>("time_scale")
                .output::<Summary>()
                .configure(|run| run.max_concurrency(10)),
        )
        .demo(demo)
        .main()
        .await
}
