//! [`Metrics`]: runs and steps recorded through the `metrics` facade.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::event::{Event, EventKind};
use crate::middleware::Middleware;

/// A middleware recording every run, step, retry, compensation and undo
/// through the [`metrics`] crate (see [`crate::telemetry`] for the names
/// and labels). Install any exporter as the global recorder.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use reactor::telemetry::Metrics;
/// use reactor::{step, Inputs, Reactor};
///
/// # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
/// let reactor = Reactor::builder("monitored")
///     .add(step("slow_operation").run_sync(|_, _| Ok(42)))
///     .returns("slow_operation")
///     .middleware(Metrics::new())
///     .build()?;
/// reactor.run(Inputs::new()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Metrics;

impl Metrics {
    /// The middleware.
    pub fn new() -> Metrics {
        Metrics
    }
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Middleware for Metrics {
    fn on_event(&self, event: &Event<'_>) {
        let reactor = event.reactor.to_string();
        let step = || event.step.unwrap_or_default().to_string();
        let steps = |outcome: &'static str, duration: Option<Duration>| {
            counter!("reactor_steps_total", "reactor" => reactor.clone(), "step" => step(), "outcome" => outcome)
                .increment(1);
            if let Some(d) = duration {
                histogram!("reactor_step_duration_seconds", "reactor" => reactor.clone(), "step" => step(), "outcome" => outcome)
                    .record(seconds(d));
            }
        };
        let run_ended = |outcome: &'static str, d: Duration| {
            counter!("reactor_runs_total", "reactor" => reactor.clone(), "outcome" => outcome)
                .increment(1);
            histogram!("reactor_run_duration_seconds", "reactor" => reactor.clone(), "outcome" => outcome)
                .record(seconds(d));
        };
        match &event.kind {
            EventKind::RunStart { .. } => {
                counter!("reactor_runs_started_total", "reactor" => reactor.clone()).increment(1);
            }
            EventKind::RunComplete { duration, .. } => run_ended("completed", *duration),
            EventKind::RunError { duration, .. } => run_ended("failed", *duration),
            EventKind::RunHalt { duration } => run_ended("halted", *duration),
            EventKind::StepStart { queued, .. } => {
                histogram!("reactor_step_queued_seconds", "reactor" => reactor.clone())
                    .record(seconds(*queued));
                self.pool(event);
            }
            EventKind::StepComplete { duration, .. } => {
                steps("completed", Some(*duration));
                self.pool(event);
            }
            EventKind::StepError { duration, .. } => {
                steps("failed", Some(*duration));
                self.pool(event);
            }
            EventKind::StepHalt { duration, .. } => {
                steps("halted", Some(*duration));
                self.pool(event);
            }
            EventKind::StepRetry { compensated, .. } => {
                counter!("reactor_step_retries_total", "reactor" => reactor.clone(), "step" => step())
                    .increment(1);
                if !compensated {
                    steps("retried", None);
                }
            }
            EventKind::GuardSkip { .. } => steps("skipped", None),
            EventKind::CompensateContinue { .. } => {
                self.compensation(&reactor, step(), "continued")
            }
            EventKind::CompensateComplete { .. } => self.compensation(&reactor, step(), "failed"),
            EventKind::CompensateRetry { .. } => self.compensation(&reactor, step(), "retried"),
            EventKind::CompensateError { .. } => self.compensation(&reactor, step(), "error"),
            EventKind::UndoComplete { .. } => self.undo(&reactor, step(), "done"),
            EventKind::UndoRetry { .. } => self.undo(&reactor, step(), "retried"),
            EventKind::UndoError { .. } => self.undo(&reactor, step(), "error"),
            EventKind::ConcurrencyLimit { limit } => {
                gauge!("reactor_concurrency_limit", "reactor" => reactor.clone())
                    .set(*limit as f64);
            }
            _ => {}
        }
    }
}

impl Metrics {
    fn compensation(&self, reactor: &str, step: String, outcome: &'static str) {
        counter!("reactor_compensations_total", "reactor" => reactor.to_string(), "step" => step, "outcome" => outcome)
            .increment(1);
    }

    fn undo(&self, reactor: &str, step: String, outcome: &'static str) {
        counter!("reactor_undos_total", "reactor" => reactor.to_string(), "step" => step, "outcome" => outcome)
            .increment(1);
    }

    /// The slots in use of a named pool.
    fn pool(&self, event: &Event<'_>) {
        let Some(pool) = event.pool else { return };
        let Some(name) = pool.name() else { return };
        let in_use = pool.limit().saturating_sub(pool.available());
        gauge!("reactor_pool_slots_in_use", "pool" => name.to_string()).set(in_use as f64);
        gauge!("reactor_pool_slots", "pool" => name.to_string()).set(pool.limit() as f64);
    }
}
