//! [`Recording`]: a middleware that keeps what happened to each step of a
//! run (when it started and ended, how it ended, how long it ran), for a
//! run-annotated diagram ([`Reactor::to_mermaid_run`](crate::Reactor::to_mermaid_run))
//! or a timeline ([`Recording::timeline`]).
//!
//! Steps are recorded by name, for the run it is attached to and every run
//! nested in it (a map's elements, a composed reactor): a nested step run
//! once per element is one record that counts its outcomes.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::event::{Event, EventKind};
use crate::middleware::Middleware;

/// How a recorded step ended (for a step run several times, the most
/// telling of its outcomes: failed, then undone, halted, abandoned, done,
/// skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StepState {
    /// Started, and had not ended when the run ended.
    Running,
    /// Completed (and was not undone).
    Done,
    /// Failed for good.
    Failed,
    /// Completed, then undone by the saga.
    Undone,
    /// A guard skipped it.
    Skipped,
    /// It halted the run.
    Halted,
    /// It was cancelled, still running, when the run stopped waiting.
    Abandoned,
    /// It never ran.
    NeverRan,
}

impl StepState {
    /// A lower-case word for the state, such as `done` or `never ran`.
    pub fn label(self) -> &'static str {
        match self {
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Failed => "failed",
            StepState::Undone => "undone",
            StepState::Skipped => "skipped",
            StepState::Halted => "halted",
            StepState::Abandoned => "abandoned",
            StepState::NeverRan => "never ran",
        }
    }
}

/// What happened to one step (by name), over every time it ran.
#[derive(Clone, Debug, Default)]
pub struct StepRecord {
    /// Attempts started (retries included).
    pub attempts: u32,
    /// Times it completed and stayed completed.
    pub done: u32,
    /// Times it failed for good.
    pub failed: u32,
    /// Times it was undone after completing.
    pub undone: u32,
    /// Times a guard skipped it.
    pub skipped: u32,
    /// Times it halted the run.
    pub halted: u32,
    /// Times it was abandoned.
    pub abandoned: u32,
    /// The time its attempts spent running, summed.
    pub busy: Duration,
    /// When its first attempt started, after the run started.
    pub first_start: Option<Duration>,
    /// When its last attempt ended, after the run started.
    pub last_end: Option<Duration>,
}

impl StepRecord {
    /// The most telling of its outcomes (see [`StepState`]).
    pub fn state(&self) -> StepState {
        if self.failed > 0 {
            StepState::Failed
        } else if self.undone > 0 {
            StepState::Undone
        } else if self.halted > 0 {
            StepState::Halted
        } else if self.abandoned > 0 {
            StepState::Abandoned
        } else if self.done > 0 {
            StepState::Done
        } else if self.skipped > 0 {
            StepState::Skipped
        } else if self.attempts > 0 {
            StepState::Running
        } else {
            StepState::NeverRan
        }
    }

    /// How many times it ended at all.
    pub fn ended(&self) -> u32 {
        self.done + self.failed + self.undone + self.skipped + self.halted + self.abandoned
    }
}

#[derive(Default)]
struct Inner {
    started: Option<Instant>,
    root_run: Option<String>,
    ended: Option<(Duration, &'static str)>,
    order: Vec<String>,
    steps: FxHashMap<String, StepRecord>,
}

impl Inner {
    fn since_start(&self, at: Instant) -> Duration {
        self.started
            .map(|s| at.saturating_duration_since(s))
            .unwrap_or_default()
    }

    fn step(&mut self, name: &str) -> &mut StepRecord {
        if !self.steps.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.steps.entry(name.to_string()).or_default()
    }
}

/// A middleware recording each step's outcome and timing. Cheap to clone
/// (clones share the record); attach it to one run.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use reactor::{input, step, Inputs, Reactor, Recording, StepState};
///
/// # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
/// let reactor = Reactor::builder("double")
///     .input("x")
///     .add(step("twice").argument("x", input("x")).run_sync(|a, _| Ok(a.get::<i64>("x")? * 2)))
///     .returns("twice")
///     .build()?;
/// let recording = Recording::new();
/// reactor.run(Inputs::new().with("x", 2_i64)).middleware(Arc::new(recording.clone())).await?;
/// assert_eq!(recording.step("twice").unwrap().state(), StepState::Done);
/// assert!(recording.timeline().contains("twice"));
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Recording {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("steps", &self.lock().order.len())
            .finish()
    }
}

impl Recording {
    /// An empty recording.
    pub fn new() -> Recording {
        Recording::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while recording leaves counts, never broken invariants.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The record of the step named `name`, if it did anything.
    pub fn step(&self, name: &str) -> Option<StepRecord> {
        self.lock().steps.get(name).cloned()
    }

    /// Every recorded step, in the order each first did something.
    pub fn steps(&self) -> Vec<(String, StepRecord)> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .map(|n| (n.clone(), inner.steps[n].clone()))
            .collect()
    }

    /// How long the run took and how it ended (`completed`, `failed`,
    /// `halted`), once it ended.
    pub fn run_end(&self) -> Option<(Duration, &'static str)> {
        self.lock().ended
    }

    /// Each step's start, end and outcome as a text timeline, one line per
    /// step in the order they started, with a bar showing when it ran.
    pub fn timeline(&self) -> String {
        const WIDTH: usize = 30;
        let inner = self.lock();
        let total = inner
            .ended
            .map(|(d, _)| d)
            .into_iter()
            .chain(inner.steps.values().filter_map(|s| s.last_end))
            .max()
            .unwrap_or_default()
            .max(Duration::from_nanos(1));
        let mut rows: Vec<(&String, &StepRecord)> =
            inner.order.iter().map(|n| (n, &inner.steps[n])).collect();
        rows.sort_by_key(|(_, r)| r.first_start.unwrap_or(Duration::MAX));
        let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(4).max(4);
        let mut out = format!(
            "{:width$}  {:>10}  {:>10}  {:9}  {}\n",
            "step", "start", "end", "outcome", "timeline"
        );
        let at = |d: Duration| (d.as_secs_f64() / total.as_secs_f64() * WIDTH as f64) as usize;
        for (name, r) in rows {
            let (start, end) = (r.first_start.unwrap_or_default(), r.last_end);
            let from = at(start).min(WIDTH - 1);
            let to = at(end.unwrap_or(total)).clamp(from + 1, WIDTH);
            let bar: String = (0..WIDTH)
                .map(|i| if (from..to).contains(&i) { '#' } else { '.' })
                .collect();
            let mut state = r.state().label().to_string();
            if r.ended() > 1 {
                let _ = write!(state, " x{}", r.ended());
            }
            let _ = writeln!(
                out,
                "{name:width$}  {:>10}  {:>10}  {state:9}  |{bar}|",
                format!("{start:.1?}"),
                end.map(|e| format!("{e:.1?}"))
                    .unwrap_or_else(|| "-".into()),
            );
        }
        if let Some((d, how)) = inner.ended {
            let _ = writeln!(out, "run {how} after {d:.1?}");
        }
        out
    }
}

impl Middleware for Recording {
    fn on_event(&self, event: &Event<'_>) {
        let mut inner = self.lock();
        if inner.started.is_none() {
            inner.started = Some(event.at);
        }
        let at = inner.since_start(event.at);
        let root = inner
            .root_run
            .get_or_insert_with(|| event.run_id.to_string());
        let is_root = *root == event.run_id;
        let Some(name) = event.step else {
            if is_root {
                match event.kind {
                    EventKind::RunComplete { duration, .. } => {
                        inner.ended = Some((duration, "completed"))
                    }
                    EventKind::RunError { duration, .. } => {
                        inner.ended = Some((duration, "failed"))
                    }
                    EventKind::RunHalt { duration } => inner.ended = Some((duration, "halted")),
                    _ => {}
                }
            }
            return;
        };
        let step = inner.step(name);
        let ended = |step: &mut StepRecord, ran: Duration| {
            step.busy += ran;
            step.last_end = Some(step.last_end.map_or(at, |e| e.max(at)));
        };
        match event.kind {
            EventKind::StepStart { .. } => {
                step.attempts += 1;
                step.first_start.get_or_insert(at);
            }
            EventKind::StepComplete { duration, .. } => {
                step.done += 1;
                ended(step, duration);
            }
            EventKind::StepError { duration, .. } => ended(step, duration),
            EventKind::StepHalt { duration, .. } => {
                step.halted += 1;
                ended(step, duration);
            }
            EventKind::CompensateContinue { .. } => step.done += 1,
            EventKind::GuardSkip { .. } => {
                step.skipped += 1;
                step.first_start.get_or_insert(at);
                ended(step, Duration::ZERO);
            }
            EventKind::StepFailed { .. } => step.failed += 1,
            EventKind::StepAbandoned => {
                step.abandoned += 1;
                ended(step, Duration::ZERO);
            }
            EventKind::UndoComplete { .. } => {
                step.undone += 1;
                step.done = step.done.saturating_sub(1);
            }
            _ => {}
        }
    }
}
