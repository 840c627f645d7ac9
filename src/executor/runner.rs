//! The step runner: one attempt of a step (run, then compensate on error),
//! and the bounded undo of a completed step.
//!
//! The runner decides nothing about retries or the saga: it reports what
//! happened as an [`Attempt`] and the coordinator acts on it. Every user
//! callback is guarded against panics; a panic becomes an error of the
//! phase it happened in.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{ready, Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tracing::Instrument;

use crate::argument::Arguments;
use crate::context::Context;
use crate::error::{panic_message, Phase, Reason, StepError, StepErrorKind};
use crate::event::EventKind;
use crate::pool::Permit;
use crate::step::{
    Backoff, Compensation, Guard, Outcome, Step, StepImp, StepSpec, SyncRunFn, UndoOutcome,
};
use crate::value::Value;

/// How many times an undo is attempted before it fails.
pub(crate) const MAX_UNDO_ATTEMPTS: u32 = 5;

/// What one attempt of a step came to.
pub(crate) enum Attempt {
    /// Success (directly or by compensation), maybe emitting new steps.
    Completed {
        value: Value,
        emitted: Vec<StepSpec>,
        /// What to keep on the undo stack instead of the value.
        undo: Option<Value>,
    },
    /// Success that halts the reactor.
    Halted(Value),
    /// A guard skipped the step with this value (never undone).
    Skipped(Value),
    /// The step wants to run again. The coordinator asks the step for its
    /// backoff; `from_compensation` when compensation asked (and announced
    /// it), so no run-retry event is due.
    Retry {
        reason: Option<Reason>,
        from_compensation: bool,
    },
    /// The step failed for good in `phase` (boxed: failures are rare and
    /// every attempt's report is moved through the task).
    Failed {
        phase: Phase,
        kind: Box<StepErrorKind>,
    },
}

impl Attempt {
    pub(crate) fn failed(phase: Phase, kind: StepErrorKind) -> Attempt {
        Attempt::Failed {
            phase,
            kind: Box::new(kind),
        }
    }
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
    Attempt::failed(Phase::Run, kind)
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

/// Emits a step event of `ctx`'s step, when any middleware listens.
pub(crate) fn emit<'a>(ctx: &'a Context, kind: impl FnOnce() -> EventKind<'a>) {
    if !ctx.events {
        return;
    }
    let run = &*ctx.run;
    run.events
        .emit(&run.run_id, &run.plan.name, Some(ctx.step_name()), kind);
}

/// The outcome of a step whose callback panicked.
fn panicked(payload: &(dyn std::any::Any + Send)) -> Outcome {
    Outcome::Error(Reason::new(StepPanicked(panic_message(payload))))
}

/// The time since `started`, when event timing is on.
fn since(started: Option<Instant>) -> Duration {
    started.map_or(Duration::ZERO, |s| s.elapsed())
}

/// How a step is called.
#[derive(Clone)]
pub(crate) enum Runner {
    /// A plain closure with nothing to compensate: called directly, which
    /// touches nothing but the closure itself.
    Plain(SyncRunFn),
    /// Any other step, through the [`Step`] trait.
    Step(StepImp),
}

/// One attempt of a step, as a future: a task of its own, or awaited by
/// the coordinator.
///
/// A step that answers at once ([`Step::run_now`]) with nothing to
/// compensate completes on the first poll without any further future, so
/// the task stays small (it is copied into and out of tokio's task cell).
/// Anything that must await (an async `run`, compensation, a `tracing`
/// span) continues in a boxed future.
pub(crate) struct StepTask {
    index: usize,
    /// The step, arguments and context, handed back in the report so that
    /// their reference counts are released on the coordinator's thread.
    held: Option<(Runner, Arguments, Context)>,
    span: Option<Box<tracing::Span>>,
    slow: Option<Pin<Box<dyn Future<Output = Attempt> + Send>>>,
    _permit: Option<Permit>,
    /// Where a boxed task leaves its report.
    report: Option<Report>,
}

/// What a [`StepTask`] reports: the step, the attempt and its arguments
/// (kept for retries and undo).
pub(crate) struct Report {
    pub(crate) index: usize,
    pub(crate) attempt: Attempt,
    pub(crate) args: Arguments,
    pub(crate) ctx: Context,
    /// Dropped by the coordinator (see [`StepTask`]).
    pub(crate) _runner: Option<Runner>,
}

impl StepTask {
    /// `span` is the run's span, when step spans are wanted.
    pub(crate) fn new(
        index: usize,
        step: Runner,
        args: Arguments,
        ctx: Context,
        span: Option<&tracing::Span>,
        permit: Option<Permit>,
    ) -> StepTask {
        let span = span.map(|parent| Box::new(step_span(parent, &ctx)));
        StepTask {
            index,
            held: Some((step, args, ctx)),
            span,
            slow: None,
            _permit: permit,
            report: None,
        }
    }

    fn start(&mut self) -> Result<Attempt, SlowAttempt> {
        let (step, args, ctx) = self.held.as_ref().expect("a task runs once");
        start_attempt(step, args, ctx, self.span.take().map(|s| *s))
    }
}

/// Runs a plain closure step (it cannot compensate, and never awaits).
pub(crate) fn run_plain(run: &SyncRunFn, args: &Arguments, ctx: &Context) -> Attempt {
    let started = begin(args, ctx);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(args, ctx)))
        .unwrap_or_else(|panic| panicked(&*panic));
    match settle(false, outcome, ctx, started) {
        Settled::Done(attempt) => attempt,
        Settled::Compensate(_) => unreachable!("plain steps cannot compensate"),
    }
}

/// The `tracing` span of one attempt.
pub(crate) fn step_span(parent: &tracing::Span, ctx: &Context) -> tracing::Span {
    tracing::debug_span!(
        parent: parent,
        "reactor.step",
        step = %ctx.step_name(),
        attempt = ctx.current_try + 1
    )
}

/// Runs an attempt up to its first await: the attempt, when it needed none,
/// or the (boxed) future to continue with. Clones nothing on the way to an
/// answer from [`Step::run_now`].
pub(crate) fn start_attempt(
    runner: &Runner,
    args: &Arguments,
    ctx: &Context,
    span: Option<tracing::Span>,
) -> Result<Attempt, SlowAttempt> {
    let step = match runner {
        Runner::Plain(run) if span.is_none() => return Ok(run_plain(run, args, ctx)),
        Runner::Plain(run) => {
            let (run, args, ctx) = (run.clone(), args.clone(), ctx.clone());
            let fut = async move { run_plain(&run, &args, &ctx) };
            let span = span.expect("matched above");
            return Err(Box::pin(fut.instrument(span)));
        }
        Runner::Step(step) => step,
    };
    if let Some(attempt) = guard(args, ctx) {
        return Ok(attempt);
    }
    if let Some(span) = span {
        let fut = attempt_awaiting(step.clone(), args.clone(), ctx.clone());
        return Err(Box::pin(fut.instrument(span)));
    }
    let started = begin(args, ctx);
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| step.run_now(args, ctx))) {
        Ok(Some(outcome)) => outcome,
        Ok(None) => {
            let (step, args, ctx) = (step.clone(), args.clone(), ctx.clone());
            return Err(Box::pin(async move {
                let outcome = run_awaiting(&*step, &args, &ctx).await;
                settle_awaiting(&*step, outcome, args, ctx, started).await
            }));
        }
        Err(panic) => panicked(&*panic),
    };
    match settle(step.can_compensate(), outcome, ctx, started) {
        Settled::Done(attempt) => Ok(attempt),
        Settled::Compensate(reason) => {
            let (step, args, ctx) = (step.clone(), args.clone(), ctx.clone());
            Err(Box::pin(async move {
                compensate(&*step, reason, args, ctx).await
            }))
        }
    }
}

pub(crate) type SlowAttempt = Pin<Box<dyn Future<Output = Attempt> + Send>>;

/// A [`StepTask`] as a spawned task: boxed, and handing back its box with
/// the report inside. Tokio copies a task's future and output in and out of
/// its cell several times; a pointer each way keeps that cheap.
pub(crate) struct BoxedTask(Option<Box<StepTask>>);

impl BoxedTask {
    pub(crate) fn new(task: StepTask) -> BoxedTask {
        BoxedTask(Some(Box::new(task)))
    }
}

/// What a spawned task hands back.
pub(crate) enum Finished {
    /// One step's attempt (its box, with the report inside).
    One(Box<StepTask>),
    /// A chunk of plain steps.
    Chunk(Box<ChunkTask>),
}

impl Finished {
    /// The attempts made, and the chunk's steps it left unrun (with their
    /// arguments).
    pub(crate) fn into_reports(self) -> (Vec<Report>, Vec<(usize, Arguments)>) {
        match self {
            Finished::One(mut task) => {
                let report = task
                    .report
                    .take()
                    .expect("a finished task holds its report");
                (vec![report], Vec::new())
            }
            Finished::Chunk(chunk) => {
                let chunk = *chunk;
                let unrun = chunk
                    .items
                    .into_iter()
                    .map(|(i, _, args, _)| (i, args))
                    .collect();
                (chunk.reports, unrun)
            }
        }
    }
}

/// Several ready plain steps run one after another in one task, holding
/// one concurrency slot: for fan-outs of cheap closures, one task (and one
/// report) per step would cost more than the steps.
///
/// The chunk stops early, leaving the rest unrun for the coordinator to
/// start again, once it has run for [`CHUNK_TIME`], so a chunk of slow
/// closures does not hold a worker much longer than one of them would.
pub(crate) struct ChunkTask {
    /// The steps still to run, last first.
    items: Vec<(usize, SyncRunFn, Arguments, Context)>,
    reports: Vec<Report>,
    _permit: Permit,
}

/// The most steps a chunk takes.
pub(crate) const MAX_CHUNK: usize = 32;
/// How long a chunk runs before it hands its remaining steps back.
const CHUNK_TIME: Duration = Duration::from_micros(200);

impl ChunkTask {
    /// `items` in the order to run them.
    pub(crate) fn new(
        mut items: Vec<(usize, SyncRunFn, Arguments, Context)>,
        permit: Permit,
    ) -> ChunkTask {
        items.reverse();
        let reports = Vec::with_capacity(items.len());
        ChunkTask {
            items,
            reports,
            _permit: permit,
        }
    }

    /// Runs the steps (no step awaits).
    pub(crate) fn run(mut self: Box<Self>) -> Finished {
        let started = Instant::now();
        let mut ran = 0;
        while let Some((index, run, args, ctx)) = self.items.pop() {
            let attempt = run_plain(&run, &args, &ctx);
            self.reports.push(Report {
                index,
                attempt,
                args,
                ctx,
                _runner: None,
            });
            ran += 1;
            // A clock read every few steps keeps the check cheap.
            if ran % 4 == 0 && !self.items.is_empty() && started.elapsed() >= CHUNK_TIME {
                break;
            }
        }
        Finished::Chunk(self)
    }
}

impl Future for BoxedTask {
    type Output = Finished;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Finished> {
        let task = self.0.as_mut().expect("polled after completion");
        // User code is guarded inside; this guard keeps an engine bug from
        // losing a report (and so hanging the run).
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(&mut **task).poll(cx)));
        let report = match polled {
            Ok(poll) => ready!(poll),
            Err(panic) => {
                let (runner, args, ctx) = task.held.take().expect("a task reports once");
                Report {
                    index: task.index,
                    attempt: Attempt::failed(
                        Phase::Run,
                        StepErrorKind::Panicked(panic_message(&*panic)),
                    ),
                    args,
                    ctx,
                    _runner: Some(runner),
                }
            }
        };
        let mut task = self.0.take().expect("checked above");
        task.report = Some(report);
        Poll::Ready(Finished::One(task))
    }
}

impl Future for StepTask {
    type Output = Report;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Report> {
        let this = &mut *self;
        let attempt = match &mut this.slow {
            Some(fut) => ready!(fut.as_mut().poll(cx)),
            None => match this.start() {
                Ok(attempt) => attempt,
                Err(mut fut) => match fut.as_mut().poll(cx) {
                    Poll::Ready(attempt) => attempt,
                    Poll::Pending => {
                        this.slow = Some(fut);
                        return Poll::Pending;
                    }
                },
            },
        };
        let (runner, args, ctx) = this.held.take().expect("a task reports once");
        Poll::Ready(Report {
            index: this.index,
            attempt,
            args,
            ctx,
            _runner: Some(runner),
        })
    }
}

/// A whole attempt through futures (used inside a span).
async fn attempt_awaiting(step: StepImp, args: Arguments, ctx: Context) -> Attempt {
    let step = step.get();
    if let Some(attempt) = guard(&args, &ctx) {
        return attempt;
    }
    let started = begin(&args, &ctx);
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| step.run_now(&args, &ctx))) {
        Ok(Some(outcome)) => outcome,
        Ok(None) => run_awaiting(step, &args, &ctx).await,
        Err(panic) => panicked(&*panic),
    };
    settle_awaiting(step, outcome, args, ctx, started).await
}

async fn settle_awaiting(
    step: &dyn Step,
    outcome: Outcome,
    args: Arguments,
    ctx: Context,
    started: Option<Instant>,
) -> Attempt {
    match settle(step.can_compensate(), outcome, &ctx, started) {
        Settled::Done(attempt) => attempt,
        Settled::Compensate(reason) => compensate(step, reason, args, ctx).await,
    }
}

/// Evaluates the step's guards: the attempt, if one skipped the step.
fn guard(args: &Arguments, ctx: &Context) -> Option<Attempt> {
    let guards = &ctx.spec().def().extras().guards;
    if guards.is_empty() {
        return None;
    }
    let attempt = ctx.current_try + 1;
    emit(ctx, || EventKind::GuardStart { attempt });
    for g in guards {
        let decision =
            std::panic::catch_unwind(AssertUnwindSafe(|| g(args, ctx))).unwrap_or_else(|panic| {
                Guard::Skip(Outcome::Error(Reason::msg(format!(
                    "the guard panicked: {}",
                    panic_message(&*panic)
                ))))
            });
        if let Guard::Skip(outcome) = decision {
            emit(ctx, || EventKind::GuardSkip { outcome: &outcome });
            return Some(match outcome {
                Outcome::Ok(value)
                | Outcome::OkWithSteps(value, _)
                | Outcome::OkWithUndo { value, .. }
                | Outcome::Halt(value) => Attempt::Skipped(value),
                Outcome::Error(reason) => {
                    Attempt::failed(Phase::Run, StepErrorKind::Failed(reason))
                }
                Outcome::Retry(reason) => Attempt::Retry {
                    reason,
                    from_compensation: false,
                },
            });
        }
    }
    emit(ctx, || EventKind::GuardPass);
    None
}

/// Emits the start event; returns the start time when events are timed
/// (two clock reads a step: only when someone listens).
fn begin(args: &Arguments, ctx: &Context) -> Option<Instant> {
    emit(ctx, || EventKind::StepStart {
        attempt: ctx.current_try + 1,
        arguments: args,
    });
    ctx.events.then(Instant::now)
}

async fn run_awaiting(step: &dyn Step, args: &Arguments, ctx: &Context) -> Outcome {
    guarded(|| step.run(args.clone(), ctx.clone()))
        .await
        .unwrap_or_else(|panic| Outcome::Error(Reason::new(StepPanicked(panic))))
}

/// What an outcome comes to before any compensation.
enum Settled {
    Done(Attempt),
    Compensate(Reason),
}

fn settle(
    can_compensate: bool,
    outcome: Outcome,
    ctx: &Context,
    started: Option<Instant>,
) -> Settled {
    let attempt = ctx.current_try + 1;
    let done = match outcome {
        Outcome::Ok(value) => {
            emit(ctx, || EventKind::StepComplete {
                attempt,
                duration: since(started),
                value: &value,
            });
            Attempt::Completed {
                value,
                emitted: Vec::new(),
                undo: None,
            }
        }
        Outcome::OkWithSteps(value, emitted) => {
            emit(ctx, || EventKind::StepComplete {
                attempt,
                duration: since(started),
                value: &value,
            });
            Attempt::Completed {
                value,
                emitted,
                undo: None,
            }
        }
        Outcome::OkWithUndo { value, undo } => {
            emit(ctx, || EventKind::StepComplete {
                attempt,
                duration: since(started),
                value: &value,
            });
            Attempt::Completed {
                value,
                emitted: Vec::new(),
                undo: Some(undo),
            }
        }
        Outcome::Halt(value) => {
            emit(ctx, || EventKind::StepHalt {
                attempt,
                duration: since(started),
                value: &value,
            });
            Attempt::Halted(value)
        }
        Outcome::Retry(reason) => Attempt::Retry {
            reason,
            from_compensation: false,
        },
        Outcome::Error(reason) => {
            emit(ctx, || EventKind::StepError {
                attempt,
                duration: since(started),
                error: &reason,
            });
            if can_compensate {
                return Settled::Compensate(reason);
            }
            failed_run(reason)
        }
    };
    Settled::Done(done)
}

async fn compensate(step: &dyn Step, reason: Reason, args: Arguments, ctx: Context) -> Attempt {
    let attempt = ctx.current_try + 1;
    emit(&ctx, || EventKind::CompensateStart {
        attempt,
        error: &reason,
    });
    let started = ctx.events.then(Instant::now);
    let decision = guarded(|| step.compensate(reason.clone(), args.clone(), ctx.clone()))
        .await
        .unwrap_or_else(|panic| {
            Compensation::Error(Reason::msg(format!("compensate panicked: {panic}")))
        });
    let duration = since(started);
    match decision {
        Compensation::Continue(value) => {
            emit(&ctx, || EventKind::CompensateContinue {
                duration,
                value: &value,
            });
            Attempt::Completed {
                value,
                emitted: Vec::new(),
                undo: None,
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
            Attempt::Retry {
                reason: Some(new_reason.unwrap_or(reason)),
                from_compensation: true,
            }
        }
        Compensation::Error(error) => {
            emit(&ctx, || EventKind::CompensateError {
                duration,
                error: &error,
            });
            Attempt::failed(Phase::Compensate, StepErrorKind::Compensate(error))
        }
    }
}

/// Asks `step` how long to wait before retrying (a panic means now).
pub(crate) fn backoff(
    step: &dyn Step,
    reason: Option<&Reason>,
    args: &Arguments,
    ctx: &Context,
) -> Backoff {
    match std::panic::catch_unwind(AssertUnwindSafe(|| step.backoff(reason, args, ctx))) {
        Ok(Backoff::After(d)) if d.is_zero() => Backoff::Now,
        Ok(b) => b,
        Err(_) => Backoff::Now,
    }
}

/// Undoes a completed step, trying at most [`MAX_UNDO_ATTEMPTS`] times.
pub(crate) async fn undo(
    step: StepImp,
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
        let started = ctx.events.then(Instant::now);
        let outcome = guarded(|| step.undo(value.clone(), args.clone(), ctx.clone()))
            .await
            .unwrap_or_else(|panic| {
                UndoOutcome::Error(Reason::msg(format!("undo panicked: {panic}")))
            });
        let duration = since(started);
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
