//! Telemetry: metrics, `tracing` spans, and handlers attached to events.
//!
//! Three ways to watch runs, all ready-made:
//!
//! - [`Metrics`], a middleware recording through the [`metrics`](::metrics) crate's
//!   facade, so any exporter works (Prometheus, StatsD, OpenTelemetry...);
//! - `tracing` spans, always there: attach a subscriber (with
//!   `tracing-opentelemetry` for OpenTelemetry traces);
//! - [`Handlers`], a middleware calling functions attached to named events
//!   with their measurements and metadata: the guide's
//!   `:telemetry.attach_many` pattern.
//!
//! # Events
//!
//! [`TelemetryEvent::name`] is one of these; a `*.stop` event has a
//! duration and a status.
//!
//! | name | status of `*.stop` |
//! |---|---|
//! | `reactor.run.start`, `reactor.run.stop` | `ok`, `error`, `halt` |
//! | `reactor.step.run.start`, `reactor.step.run.stop` | `ok`, `error`, `halt`, `retry` |
//! | `reactor.step.guard.start`, `reactor.step.guard.stop` | `ok` (it runs), `skip` |
//! | `reactor.step.compensate.start`, `reactor.step.compensate.stop` | `ok` (continued), `fail`, `retry`, `error` |
//! | `reactor.step.undo.start`, `reactor.step.undo.stop` | `ok`, `retry`, `error` |
//! | `reactor.step.retry` | (a retry was decided, with its backoff) |
//! | `reactor.step.failed` | (the step failed for good) |
//! | `reactor.step.abandoned` | (cancelled after the halt timeout) |
//! | `reactor.run.concurrency_limit` | (the adaptive limit changed: [`EventKind::ConcurrencyLimit`]) |
//!
//! # Metrics
//!
//! Names follow Prometheus' conventions (units in the name, `_total` for
//! counters). Every metric has the label `reactor` (the reactor's name)
//! but the pool gauges, which have `pool`.
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `reactor_runs_started_total` | counter | `reactor` | runs started or resumed |
//! | `reactor_runs_total` | counter | `reactor`, `outcome` (`completed`, `failed`, `halted`) | runs ended |
//! | `reactor_run_duration_seconds` | histogram | `reactor`, `outcome` | how long runs took |
//! | `reactor_steps_total` | counter | `reactor`, `step`, `outcome` (`completed`, `failed`, `halted`, `retried`, `skipped`) | step attempts ended |
//! | `reactor_step_duration_seconds` | histogram | `reactor`, `step`, `outcome` | how long `run` took, per attempt |
//! | `reactor_step_retries_total` | counter | `reactor`, `step` | retries decided (by `run`, a guard or compensation) |
//! | `reactor_compensations_total` | counter | `reactor`, `step`, `outcome` (`continued`, `failed`, `retried`, `error`) | compensations |
//! | `reactor_undos_total` | counter | `reactor`, `step`, `outcome` (`done`, `retried`, `error`) | undo attempts |
//! | `reactor_step_queued_seconds` | histogram | `reactor` | how long a ready step waited for a slot or its turn |
//! | `reactor_pool_slots_in_use` | gauge | `pool` | slots taken, for [named](crate::ConcurrencyPool::named) pools |
//! | `reactor_concurrency_limit` | gauge | `reactor` | the adaptive limit of awaiting steps ([`Concurrency::Auto`](crate::Concurrency::Auto)) |
//! | `reactor_pool_slots` | gauge | `pool` | the pool's size |
//!
//! Durable runs' journals record these whether or not the middleware is
//! installed (through the same facade: nothing without a recorder):
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `reactor_journal_batch_records` | histogram | `store` (`sqlite`, `postgres`) | records a store's writer committed in one transaction |
//! | `reactor_journal_commit_seconds` | histogram | `store` | how long that transaction took |
//! | `reactor_journal_fenced_total` | counter | | journal writes refused because the run was taken up elsewhere |
//! | `reactor_runs_recovered_total` | counter | | runs [`Runtime::recover`](crate::durable::Runtime::recover) took up |
//!
//! # Spans
//!
//! Every run has an `INFO` span `reactor.run` with the fields `reactor`,
//! `run_id` and `outcome` (`completed`, `failed`, `halted`). A run nested
//! in a step ([`RunRequest::within`](crate::RunRequest::within): compose,
//! recurse, group, around) is its outer run's child; a resumed run's span
//! follows from the halted run's. When `DEBUG` is enabled, every step
//! attempt has a span `reactor.step`, a child of its run's, with the fields
//! `reactor`, `run_id`, `step`, `attempt` (from 1) and `outcome` (`ok`,
//! `error`, `halt`, `retry`, `skip`, `continued`). `tracing-opentelemetry`
//! turns these into OpenTelemetry traces (`tests/telemetry.rs` exports
//! them through the SDK).

mod handlers;
mod metrics;

use std::time::{Duration, SystemTime};

pub use handlers::Handlers;
pub use metrics::Metrics;

use crate::event::{Event, EventKind};

/// One telemetry event: a name, measurements and metadata.
#[derive(Debug)]
pub struct TelemetryEvent<'a> {
    /// The event's name (see the [module docs](self)).
    pub name: &'static str,
    /// When it happened, and how long what it ends took.
    pub measurements: Measurements,
    /// What it is about.
    pub metadata: Metadata<'a>,
}

/// A telemetry event's measurements.
#[derive(Clone, Copy, Debug)]
pub struct Measurements {
    /// When the event happened (wall clock).
    pub system_time: SystemTime,
    /// For `*.stop` events: how long what it ends took.
    pub duration: Option<Duration>,
}

/// A telemetry event's metadata.
#[derive(Clone, Copy, Debug)]
pub struct Metadata<'a> {
    /// The run's id.
    pub run_id: &'a str,
    /// The reactor's name.
    pub reactor: &'a str,
    /// The run this run is nested in, if any.
    pub parent_run: Option<&'a str>,
    /// The step, for step events.
    pub step: Option<&'a str>,
    /// The attempt (from 1), for step events that have one.
    pub attempt: Option<u32>,
    /// The status of a `*.stop` event.
    pub status: Option<&'static str>,
    /// The engine's event, with everything else it carries.
    pub event: &'a Event<'a>,
}

impl<'a> TelemetryEvent<'a> {
    /// The telemetry event of an engine event, if it has one (guard passes
    /// and the like are stops of a start).
    pub fn of(event: &'a Event<'a>) -> TelemetryEvent<'a> {
        let (name, status, duration, attempt) = describe(&event.kind);
        TelemetryEvent {
            name,
            measurements: Measurements {
                system_time: SystemTime::now(),
                duration,
            },
            metadata: Metadata {
                run_id: event.run_id,
                reactor: event.reactor,
                parent_run: event.parent_run,
                step: event.step,
                attempt,
                status,
                event,
            },
        }
    }
}

/// An event's telemetry name, status, duration and attempt.
fn describe(
    kind: &EventKind<'_>,
) -> (
    &'static str,
    Option<&'static str>,
    Option<Duration>,
    Option<u32>,
) {
    use EventKind as K;
    match *kind {
        K::RunStart { .. } => ("reactor.run.start", None, None, None),
        K::RunComplete { duration, .. } => ("reactor.run.stop", Some("ok"), Some(duration), None),
        K::RunError { duration, .. } => ("reactor.run.stop", Some("error"), Some(duration), None),
        K::RunHalt { duration } => ("reactor.run.stop", Some("halt"), Some(duration), None),
        K::StepStart { attempt, .. } => ("reactor.step.run.start", None, None, Some(attempt)),
        K::StepComplete {
            attempt, duration, ..
        } => (
            "reactor.step.run.stop",
            Some("ok"),
            Some(duration),
            Some(attempt),
        ),
        K::StepError {
            attempt, duration, ..
        } => (
            "reactor.step.run.stop",
            Some("error"),
            Some(duration),
            Some(attempt),
        ),
        K::StepHalt {
            attempt, duration, ..
        } => (
            "reactor.step.run.stop",
            Some("halt"),
            Some(duration),
            Some(attempt),
        ),
        K::StepRetry { attempt, .. } => ("reactor.step.retry", Some("retry"), None, Some(attempt)),
        K::GuardStart { attempt } => ("reactor.step.guard.start", None, None, Some(attempt)),
        K::GuardPass => ("reactor.step.guard.stop", Some("ok"), None, None),
        K::GuardSkip { .. } => ("reactor.step.guard.stop", Some("skip"), None, None),
        K::CompensateStart { attempt, .. } => {
            ("reactor.step.compensate.start", None, None, Some(attempt))
        }
        K::CompensateContinue { duration, .. } => (
            "reactor.step.compensate.stop",
            Some("ok"),
            Some(duration),
            None,
        ),
        K::CompensateComplete { duration } => (
            "reactor.step.compensate.stop",
            Some("fail"),
            Some(duration),
            None,
        ),
        K::CompensateRetry { duration, .. } => (
            "reactor.step.compensate.stop",
            Some("retry"),
            Some(duration),
            None,
        ),
        K::CompensateError { duration, .. } => (
            "reactor.step.compensate.stop",
            Some("error"),
            Some(duration),
            None,
        ),
        K::UndoStart { attempt } => ("reactor.step.undo.start", None, None, Some(attempt)),
        K::UndoComplete { attempt, duration } => (
            "reactor.step.undo.stop",
            Some("ok"),
            Some(duration),
            Some(attempt),
        ),
        K::UndoRetry {
            attempt, duration, ..
        } => (
            "reactor.step.undo.stop",
            Some("retry"),
            Some(duration),
            Some(attempt),
        ),
        K::UndoError { attempt, .. } => {
            ("reactor.step.undo.stop", Some("error"), None, Some(attempt))
        }
        K::StepFailed { error } => (
            "reactor.step.failed",
            Some("error"),
            None,
            Some(error.attempt),
        ),
        K::StepAbandoned => ("reactor.step.abandoned", None, None, None),
        K::ConcurrencyLimit { .. } => ("reactor.run.concurrency_limit", None, None, None),
    }
}
