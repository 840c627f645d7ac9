//! The performance guide's `BackoffBenchmark` ("Backoff Strategies for
//! External Services: Backoff Impact on Throughput"): a `FlakeyAPI` step that
//! fails 30% of the time, called for 100 items by a map at
//! `max_concurrency(10)`, once retrying at once (`Backoff::Now`, the guide's
//! `NoBackoffAPI`) and once after a fixed 100 ms (`FixedBackoffAPI`).
//!
//! Whether a call fails is drawn from a seeded hash of (seed, item, try),
//! so both strategies meet exactly the same failures and make the same
//! number of attempts: the only difference between them is the time spent
//! waiting. A step backing off holds no concurrency slot, so the other
//! items keep running meanwhile; the fixed backoff still costs at least
//! the longest chain of retries times 100 ms. The demo prints the time and
//! attempts of each strategy and checks what does not depend on the
//! machine's speed: both completed all 100 items with the same attempts,
//! the fixed backoff scheduled more delay in all, and each of its runs took
//! at least its longest chain of delays. It prints, but does not compare,
//! the wall times of the two strategies: on a loaded machine scheduling
//! noise can outweigh the delays. The full demo repeats each strategy 5 times, like
//! the guide's Benchee run; `--quick` runs each once with the delay scaled
//! down to 10 ms.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example backoff_benchmark                   # the demo
//! cargo run --release --example backoff_benchmark -- demo --quick   # a short demo
//! cargo run --release --example backoff_benchmark -- list
//! cargo run --release --example backoff_benchmark -- describe fixed_backoff
//! cargo run --release --example backoff_benchmark -- run fixed_backoff --input 'items=[1,2,3,4,5,6,7,8,9,10]'
//! ```
//!
//! `no_backoff(items)` and `fixed_backoff(items)` take a JSON array of
//! numbers and print a tally: items, attempts, retries, and the most
//! attempts one item needed.

mod common;

use std::time::{Duration, Instant};

use common::{check, draw};
use reactor::kinds::{element, map};
use reactor::{
    async_trait, input, result, step, Arguments, Backoff, BoxError, Compensation, Context, Inputs,
    Outcome, Reactor, Reason, Step, StepSpec, Value,
};
use serde::Serialize;

/// The guide's failure rate.
const FAILURE_RATE: f64 = 0.3;
/// The seed of the failures.
const SEED: u64 = 0x5eed_0fba_c0ff;
/// The guide's fixed delay.
const FIXED_DELAY: Duration = Duration::from_millis(100);
/// The guide's concurrency limit.
const MAX_CONCURRENCY: usize = 10;
/// How many items the guide calls the API for.
const ITEMS: u64 = 100;

#[derive(Debug, thiserror::Error)]
#[error("transient_failure (item {item}, try {attempt})")]
struct TransientFailure {
    item: u64,
    attempt: u32,
}

/// `FlakeyAPI`, with the backoff strategy of `NoBackoffAPI` or
/// `FixedBackoffAPI`: fails `FAILURE_RATE` of its calls; on success,
/// returns how many attempts the item took.
#[derive(Clone)]
struct FlakeyApi {
    seed: u64,
    failure_rate: f64,
    backoff: Backoff,
}

#[async_trait]
impl Step for FlakeyApi {
    async fn run(&self, args: Arguments, ctx: Context) -> Outcome {
        let item = match args.get::<u64>("item") {
            Ok(item) => *item,
            Err(e) => return Outcome::error(e),
        };
        let attempt = ctx.current_try();
        if draw(self.seed, item, attempt) < self.failure_rate {
            Outcome::Error(Reason::new(TransientFailure { item, attempt }))
        } else {
            Outcome::ok(attempt + 1)
        }
    }

    /// Every failure is worth a retry.
    async fn compensate(&self, _error: Reason, _args: Arguments, _ctx: Context) -> Compensation {
        Compensation::Retry(None)
    }

    /// A call changes nothing: nothing to undo.
    fn can_undo(&self) -> bool {
        false
    }

    fn backoff(&self, _reason: Option<&Reason>, _args: &Arguments, _ctx: &Context) -> Backoff {
        self.backoff
    }
}

/// What a run did, for all its items.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Tally {
    /// Items that succeeded.
    items: u64,
    /// Calls made, retries included.
    attempts: u64,
    /// `attempts - items`.
    retries: u64,
    /// The most attempts one item needed.
    max_attempts: u32,
}

/// The guide's `build_reactor(strategy, data)`: a map calls the API for
/// each of `items`, then `tally` counts the attempts.
fn build_reactor(name: &str, backoff: Backoff, seed: u64) -> Result<Reactor, BoxError> {
    let api = FlakeyApi {
        seed,
        failure_rate: FAILURE_RATE,
        backoff,
    };
    let reactor = Reactor::builder(name)
        .description(match backoff {
            Backoff::Now => "calls a 30%-flakey API for each item, retrying at once".to_string(),
            Backoff::After(d) => format!(
                "calls a 30%-flakey API for each item, retrying after {} ms",
                d.as_millis()
            ),
        })
        .input("items")
        .add(
            map("call_api", input("items"))
                .items::<u64>()
                .steps([StepSpec::new("flakey_api", api)
                    .argument("item", element("call_api"))
                    .description("FlakeyAPI")])
                .into_step()?,
        )
        .add(
            step("tally")
                .argument("calls", result("call_api"))
                .run_sync(|args, _| {
                    let calls = args.get::<Vec<Value>>("calls")?;
                    let mut tally = Tally {
                        items: 0,
                        attempts: 0,
                        retries: 0,
                        max_attempts: 0,
                    };
                    for call in calls {
                        let attempts = *call.get::<u32>()?;
                        tally.items += 1;
                        tally.attempts += u64::from(attempts);
                        tally.max_attempts = tally.max_attempts.max(attempts);
                    }
                    tally.retries = tally.attempts - tally.items;
                    Ok(tally)
                }),
        )
        .returns("tally")
        .build()?;
    Ok(reactor)
}

fn entry(reactor: Reactor) -> reactor::cli::Entry {
    reactor::cli::Entry::new(reactor)
        .input::<Vec<u64>>("items")
        .output::<Tally>()
        .configure(|run| run.max_concurrency(MAX_CONCURRENCY))
}

/// One strategy's runs.
struct Measured {
    name: &'static str,
    delay: Duration,
    times: Vec<Duration>,
    tallies: Vec<Tally>,
}

impl Measured {
    fn mean_time(&self) -> Duration {
        self.times.iter().sum::<Duration>() / self.times.len().max(1) as u32
    }

    /// The backoff delays of a run on average: every retry waited `delay`.
    fn waited(&self) -> Duration {
        self.delay.mul_f64(self.mean(|t| t.retries))
    }

    fn mean(&self, f: impl Fn(&Tally) -> u64) -> f64 {
        self.tallies.iter().map(f).sum::<u64>() as f64 / self.tallies.len().max(1) as f64
    }
}

/// Runs `reactor` once per round over that round's 100 items.
async fn measure(
    name: &'static str,
    delay: Duration,
    reactor: &Reactor,
    rounds: u64,
) -> Result<Measured, BoxError> {
    let mut m = Measured {
        name,
        delay,
        times: Vec::new(),
        tallies: Vec::new(),
    };
    for round in 0..rounds {
        let items: Vec<u64> = (round * ITEMS + 1..=(round + 1) * ITEMS).collect();
        let started = Instant::now();
        let out = reactor
            .run(Inputs::new().with("items", items))
            .max_concurrency(MAX_CONCURRENCY)
            .await?;
        m.times.push(started.elapsed());
        m.tallies.push(out.get::<Tally>()?.clone());
    }
    Ok(m)
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let (delay, rounds) = if quick {
        (FIXED_DELAY / 10, 1)
    } else {
        (FIXED_DELAY, 5)
    };
    println!(
        "FlakeyAPI: {} items, {:.0}% failures, max_concurrency {MAX_CONCURRENCY}, {rounds} run(s) per strategy",
        ITEMS,
        FAILURE_RATE * 100.0
    );
    let no_backoff = build_reactor("no_backoff", Backoff::Now, SEED)?;
    let fixed_backoff = build_reactor("fixed_backoff", Backoff::After(delay), SEED)?;
    let results = [
        measure("no_backoff", Duration::ZERO, &no_backoff, rounds).await?,
        measure("fixed_backoff", delay, &fixed_backoff, rounds).await?,
    ];

    println!(
        "\n{:<14} {:>8} {:>12} {:>6} {:>9} {:>8} {:>12} {:>10}",
        "strategy", "delay", "mean time", "items", "attempts", "retries", "backoffs", "items/s"
    );
    for m in &results {
        let mean = m.mean_time();
        println!(
            "{:<14} {:>5} ms {:>9.2} ms {:>6.0} {:>9.1} {:>8.1} {:>9.0} ms {:>10.0}",
            m.name,
            m.delay.as_millis(),
            mean.as_secs_f64() * 1e3,
            m.mean(|t| t.items),
            m.mean(|t| t.attempts),
            m.mean(|t| t.retries),
            m.waited().as_secs_f64() * 1e3,
            ITEMS as f64 / mean.as_secs_f64()
        );
    }
    let [now, fixed] = &results;
    println!(
        "\nfixed_backoff took {:.1}x the time of no_backoff here, for the same {} attempts per run: the\ndifference is the waiting (the backoffs add up to more than the run took: items wait\nconcurrently). Wall times are printed, not checked: they depend on the machine's load.",
        fixed.mean_time().as_secs_f64() / now.mean_time().as_secs_f64().max(1e-9),
        fixed.mean(|t| t.attempts)
    );

    for m in &results {
        for (round, t) in m.tallies.iter().enumerate() {
            check(
                t.items == ITEMS,
                format!(
                    "{} run {round} completed {} of {ITEMS} items",
                    m.name, t.items
                ),
            )?;
            check(
                t.retries > 0,
                format!("{} run {round} never retried", m.name),
            )?;
        }
    }
    check(
        now.tallies == fixed.tallies,
        format!(
            "the strategies met different failures: {:?} vs {:?}",
            now.tallies, fixed.tallies
        ),
    )?;
    for (round, (time, tally)) in fixed.times.iter().zip(&fixed.tallies).enumerate() {
        // The item with the most retries waited `delay` before each.
        // A lower bound only: a loaded machine can only make it slower.
        let floor = delay.saturating_mul(tally.max_attempts.saturating_sub(1));
        check(
            *time >= floor,
            format!(
                "fixed_backoff run {round} took {time:?}, less than its longest chain of delays {floor:?}"
            ),
        )?;
    }
    check(
        fixed.waited() > now.waited(),
        format!(
            "fixed_backoff waited {:?}, no more than no_backoff ({:?})",
            fixed.waited(),
            now.waited()
        ),
    )?;
    println!("All checks passed.");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let reactors = build_reactor("no_backoff", Backoff::Now, SEED).and_then(|now| {
        Ok((
            now,
            build_reactor("fixed_backoff", Backoff::After(FIXED_DELAY), SEED)?,
        ))
    });
    let (now, fixed) = match reactors {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    reactor::cli::App::new("backoff_benchmark")
        .about("The performance guide's BackoffBenchmark: a 30%-flakey API retried at once or after a fixed 100 ms")
        .reactor(entry(now))
        .reactor(entry(fixed))
        .demo(demo)
        .main()
        .await
}
