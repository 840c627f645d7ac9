//! The step runner: one attempt of a step (run, then compensate on error),
//! and the bounded undo of a completed step.
//!
//! The runner decides nothing about retries or the saga: it reports what
//! happened as an [`Attempt`] and the coordinator acts on it. Every user
//! callback is guarded against panics; a panic becomes an error of the
//! phase it happened in.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;

use crate::argument::Arguments;
use crate::context::Context;
use crate::error::{panic_message, Phase, Reason, StepError, StepErrorKind};
use crate::event::EventKind;
use crate::step::{Backoff, Compensation, Outcome, Step, StepSpec, UndoOutcome};
use crate::value::Value;

/// How many times an undo is attempted before it fails.
pub(crate) const MAX_UNDO_ATTEMPTS: u32 = 5;

/// What one attempt of a step came to.
pub(crate) enum Attempt {
    /// Success (directly or by compensation), maybe emitting new steps.
    Completed {
        value: Value,
        emitted: Vec<StepSpec>,
    },
    /// Success that halts the reactor.
    Halted(Value),
    /// The step wants to run again.
    Retry {
        reason: Option<Reason>,
        backoff: Backoff,
    },
    /// The step failed for good in `phase`.
    Failed { phase: Phase, kind: StepErrorKind },
}

/// A panic inside a step's `run`, as a reason that compensation can see.
#[derive(Debug, thiserror::Error)]
#[error("the step panicked: {0}")]
pub struct StepPanicked(pub String);

fn failed_run(reason: Reason) -> Attempt {
    let kind = match reason.downcast_ref::<StepPanicked>() {
        Some(p) => StepErrorKind::Panicked(p.0.clone()),
        None => StepErrorKind::Failed(reason),
    };
    Attempt::Failed {
        phase: Phase::Run,
        kind,
    }
}

/// Calls a user callback and awaits its future, turning a panic in either
/// into the panic's message.
async fn guarded<F: std::future::Future>(make: impl FnOnce() -> F) -> Result<F::Output, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(make)) {
        Ok(fut) => AssertUnwindSafe(fut)
            .catch_unwind()
            .await
            .map_err(|p| panic_message(&*p)),
        Err(p) => Err(panic_message(&*p)),
    }
}

fn emit<'a>(ctx: &'a Context, kind: impl FnOnce() -> EventKind<'a>) {
    let run = &*ctx.run;
    run.events
        .emit(&run.run_id, &run.reactor, Some(ctx.step.name()), kind);
}

/// Runs one attempt of `step`.
pub(crate) async fn attempt(step: Arc<dyn Step>, args: Arguments, ctx: Context) -> Attempt {
    let attempt = ctx.current_try + 1;
    emit(&ctx, || EventKind::StepStart {
        attempt,
        arguments: &args,
    });
    let started = Instant::now();
    let outcome = guarded(|| step.run(args.clone(), ctx.clone()))
        .await
        .unwrap_or_else(|panic| Outcome::Error(Reason::new(StepPanicked(panic))));
    let duration = started.elapsed();
    match outcome {
        Outcome::Ok(value) => {
            emit(&ctx, || EventKind::StepComplete {
                attempt,
                duration,
                value: &value,
            });
            Attempt::Completed {
                value,
                emitted: Vec::new(),
            }
        }
        Outcome::OkWithSteps(value, emitted) => {
            emit(&ctx, || EventKind::StepComplete {
                attempt,
                duration,
                value: &value,
            });
            Attempt::Completed { value, emitted }
        }
        Outcome::Halt(value) => {
            emit(&ctx, || EventKind::StepHalt {
                attempt,
                duration,
                value: &value,
            });
            Attempt::Halted(value)
        }
        Outcome::Retry(reason) => {
            let backoff = backoff(&*step, reason.as_ref(), &args, &ctx);
            emit(&ctx, || EventKind::StepRetry {
                attempt,
                reason: reason.as_ref(),
                backoff,
            });
            Attempt::Retry { reason, backoff }
        }
        Outcome::Error(reason) => {
            emit(&ctx, || EventKind::StepError {
                attempt,
                duration,
                error: &reason,
            });
            if step.can_compensate() {
                compensate(&*step, reason, args, ctx).await
            } else {
                failed_run(reason)
            }
        }
    }
}

async fn compensate(step: &dyn Step, reason: Reason, args: Arguments, ctx: Context) -> Attempt {
    let attempt = ctx.current_try + 1;
    emit(&ctx, || EventKind::CompensateStart {
        attempt,
        error: &reason,
    });
    let started = Instant::now();
    let decision = guarded(|| step.compensate(reason.clone(), args.clone(), ctx.clone()))
        .await
        .unwrap_or_else(|panic| {
            Compensation::Error(Reason::msg(format!("compensate panicked: {panic}")))
        });
    let duration = started.elapsed();
    match decision {
        Compensation::Continue(value) => {
            emit(&ctx, || EventKind::CompensateContinue {
                duration,
                value: &value,
            });
            Attempt::Completed {
                value,
                emitted: Vec::new(),
            }
        }
        Compensation::Fail => {
            emit(&ctx, || EventKind::CompensateComplete { duration });
            failed_run(reason)
        }
        Compensation::Retry(new_reason) => {
            emit(&ctx, || EventKind::CompensateRetry {
                duration,
                reason: new_reason.as_ref(),
            });
            let reason = new_reason.unwrap_or(reason);
            let backoff = backoff(step, Some(&reason), &args, &ctx);
            Attempt::Retry {
                reason: Some(reason),
                backoff,
            }
        }
        Compensation::Error(error) => {
            emit(&ctx, || EventKind::CompensateError {
                duration,
                error: &error,
            });
            Attempt::Failed {
                phase: Phase::Compensate,
                kind: StepErrorKind::Compensate(error),
            }
        }
    }
}

fn backoff(step: &dyn Step, reason: Option<&Reason>, args: &Arguments, ctx: &Context) -> Backoff {
    match std::panic::catch_unwind(AssertUnwindSafe(|| step.backoff(reason, args, ctx))) {
        Ok(Backoff::After(d)) if d.is_zero() => Backoff::Now,
        Ok(b) => b,
        Err(_) => Backoff::Now,
    }
}

/// Undoes a completed step, trying at most [`MAX_UNDO_ATTEMPTS`] times.
pub(crate) async fn undo(
    step: Arc<dyn Step>,
    value: Value,
    args: Arguments,
    ctx: Context,
) -> Result<(), StepError> {
    let failure = |attempt, kind| StepError {
        step: ctx.step_name().to_string(),
        phase: Phase::Undo,
        attempt,
        kind,
    };
    for attempt in 1..=MAX_UNDO_ATTEMPTS {
        emit(&ctx, || EventKind::UndoStart { attempt });
        let started = Instant::now();
        let outcome = guarded(|| step.undo(value.clone(), args.clone(), ctx.clone()))
            .await
            .unwrap_or_else(|panic| {
                UndoOutcome::Error(Reason::msg(format!("undo panicked: {panic}")))
            });
        let duration = started.elapsed();
        match outcome {
            UndoOutcome::Done => {
                emit(&ctx, || EventKind::UndoComplete { attempt, duration });
                return Ok(());
            }
            UndoOutcome::Retry(reason) => {
                emit(&ctx, || EventKind::UndoRetry {
                    attempt,
                    duration,
                    reason: reason.as_ref(),
                });
            }
            UndoOutcome::Error(reason) => {
                let error = failure(attempt, StepErrorKind::Undo(reason));
                emit(&ctx, || EventKind::UndoError {
                    attempt,
                    error: &error,
                });
                return Err(error);
            }
        }
    }
    let error = failure(
        MAX_UNDO_ATTEMPTS,
        StepErrorKind::UndoRetriesExceeded {
            attempts: MAX_UNDO_ATTEMPTS,
        },
    );
    emit(&ctx, || EventKind::UndoError {
        attempt: MAX_UNDO_ATTEMPTS,
        error: &error,
    });
    Err(error)
}
