//! Events: every lifecycle point of a run, delivered to
//! [`Middleware`](crate::Middleware).
//!
//! Each [`Event`] carries the run id, the reactor, the step (for step
//! events), the instant it happened and, for every `*Complete`/`*Error`
//! event, the duration of what finished. Middleware sees events
//! synchronously, on the task where they happen; with no middleware
//! attached, emitting costs one branch.

use std::time::{Duration, Instant};

use crate::argument::Arguments;
use crate::error::{Reason, RunError, StepError};
use crate::step::Backoff;
use crate::value::Value;

/// One lifecycle point of a run.
#[derive(Debug)]
pub struct Event<'a> {
    /// The run's id.
    pub run_id: &'a str,
    /// The reactor's name.
    pub reactor: &'a str,
    /// The run this run is nested in (a composed, recursed or grouped
    /// reactor's), if any.
    pub parent_run: Option<&'a str>,
    /// The pool the run takes its slots from.
    pub pool: Option<&'a crate::ConcurrencyPool>,
    /// The step, for step events.
    pub step: Option<&'a str>,
    /// When it happened.
    pub at: Instant,
    /// What happened.
    pub kind: EventKind<'a>,
}

/// What happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum EventKind<'a> {
    /// The run started (or resumed).
    RunStart {
        /// Whether this run resumes a halted one.
        resumed: bool,
    },
    /// The run succeeded.
    RunComplete {
        /// How long the run took.
        duration: Duration,
        /// The result.
        value: &'a Value,
    },
    /// The run failed (after its saga unwound).
    RunError {
        /// How long the run took.
        duration: Duration,
        /// Every error collected.
        error: &'a RunError,
    },
    /// The run halted.
    RunHalt {
        /// How long the run took.
        duration: Duration,
    },
    /// The adaptive limit of a run's awaiting steps
    /// ([`Concurrency::Auto`](crate::Concurrency::Auto)) changed.
    ConcurrencyLimit {
        /// How many awaiting steps may now be in flight.
        limit: usize,
    },
    /// A step attempt started.
    StepStart {
        /// The attempt, from 1.
        attempt: u32,
        /// The arguments it runs with.
        arguments: &'a Arguments,
        /// How long the step waited, ready, for a slot or its turn (zero
        /// when it started at once).
        queued: Duration,
    },
    /// A step attempt succeeded.
    StepComplete {
        /// The attempt, from 1.
        attempt: u32,
        /// How long `run` took.
        duration: Duration,
        /// The result.
        value: &'a Value,
    },
    /// A step attempt returned an error (or panicked).
    StepError {
        /// The attempt, from 1.
        attempt: u32,
        /// How long `run` took.
        duration: Duration,
        /// The error.
        error: &'a Reason,
    },
    /// A step asked to be retried (its `run`, a guard, or its
    /// compensation).
    StepRetry {
        /// The attempt, from 1.
        attempt: u32,
        /// Whether compensation asked (after a `step.run.error` event).
        compensated: bool,
        /// The retry reason, if any.
        reason: Option<&'a Reason>,
        /// The backoff before the next attempt.
        backoff: Backoff,
    },
    /// A step halted the reactor.
    StepHalt {
        /// The attempt, from 1.
        attempt: u32,
        /// How long `run` took.
        duration: Duration,
        /// The value it completed with.
        value: &'a Value,
    },
    /// A step's guards are about to be evaluated.
    GuardStart {
        /// The attempt, from 1.
        attempt: u32,
    },
    /// Every guard let the step run.
    GuardPass,
    /// A guard skipped the step.
    GuardSkip {
        /// The outcome used instead of running the step.
        outcome: &'a crate::step::Outcome,
    },
    /// A step still running when the run stopped waiting for it (after
    /// `halt_timeout`) was cancelled. A halted run runs it again on resume;
    /// a failed run undoes it as if it had completed.
    StepAbandoned,
    /// A step failed for good (after compensation and retries).
    StepFailed {
        /// The final error.
        error: &'a StepError,
    },
    /// Compensation started.
    CompensateStart {
        /// The attempt, from 1.
        attempt: u32,
        /// The error being compensated.
        error: &'a Reason,
    },
    /// Compensation recovered with a value.
    CompensateContinue {
        /// How long compensation took.
        duration: Duration,
        /// The value the step succeeds with.
        value: &'a Value,
    },
    /// Compensation accepted the failure.
    CompensateComplete {
        /// How long compensation took.
        duration: Duration,
    },
    /// Compensation asked for a retry.
    CompensateRetry {
        /// How long compensation took.
        duration: Duration,
        /// The retry reason, if any.
        reason: Option<&'a Reason>,
    },
    /// Compensation failed.
    CompensateError {
        /// How long compensation took.
        duration: Duration,
        /// The error.
        error: &'a Reason,
    },
    /// An undo attempt started.
    UndoStart {
        /// The undo attempt, from 1.
        attempt: u32,
    },
    /// An undo succeeded.
    UndoComplete {
        /// The undo attempt, from 1.
        attempt: u32,
        /// How long the attempt took.
        duration: Duration,
    },
    /// An undo asked to be retried.
    UndoRetry {
        /// The undo attempt, from 1.
        attempt: u32,
        /// How long the attempt took.
        duration: Duration,
        /// The retry reason, if any.
        reason: Option<&'a Reason>,
    },
    /// An undo failed for good.
    UndoError {
        /// The undo attempt, from 1.
        attempt: u32,
        /// The error.
        error: &'a StepError,
    },
}

impl EventKind<'_> {
    /// A short dotted name, such as `step.run.start`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RunStart { .. } => "run.start",
            EventKind::RunComplete { .. } => "run.complete",
            EventKind::RunError { .. } => "run.error",
            EventKind::RunHalt { .. } => "run.halt",
            EventKind::ConcurrencyLimit { .. } => "run.concurrency.limit",
            EventKind::StepStart { .. } => "step.run.start",
            EventKind::StepComplete { .. } => "step.run.complete",
            EventKind::StepError { .. } => "step.run.error",
            EventKind::StepRetry { .. } => "step.run.retry",
            EventKind::StepHalt { .. } => "step.run.halt",
            EventKind::StepAbandoned => "step.abandoned",
            EventKind::StepFailed { .. } => "step.failed",
            EventKind::GuardStart { .. } => "step.guard.start",
            EventKind::GuardPass => "step.guard.pass",
            EventKind::GuardSkip { .. } => "step.guard.skip",
            EventKind::CompensateStart { .. } => "step.compensate.start",
            EventKind::CompensateContinue { .. } => "step.compensate.continue",
            EventKind::CompensateComplete { .. } => "step.compensate.complete",
            EventKind::CompensateRetry { .. } => "step.compensate.retry",
            EventKind::CompensateError { .. } => "step.compensate.error",
            EventKind::UndoStart { .. } => "step.undo.start",
            EventKind::UndoComplete { .. } => "step.undo.complete",
            EventKind::UndoRetry { .. } => "step.undo.retry",
            EventKind::UndoError { .. } => "step.undo.error",
        }
    }
}
