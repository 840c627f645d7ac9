//! One attempt of a step, and what it comes to: the rules of an attempt,
//! written once for every place an attempt can run.
//!
//! An attempt evaluates the step's guards (a skip stands for the outcome
//! it gives), emits the start event, runs the step (`run_now`, else
//! `run`), and turns the outcome into a [`Verdict`]: done (maybe adding
//! steps, maybe halting), retry, or failed, after compensation when the
//! step failed and can compensate. Every user callback is guarded: a panic
//! in `run` is an error of the step that compensation sees, a panic in a
//! guard or `compensate` fails the step, and a panic in middleware
//! ([`HookPanic`]) fails the run without changing what the step did.
//!
//! The attempt runs synchronously as far as it can ([`start`]) and
//! continues in a boxed future only when it must await. What the verdict
//! means for the run (retry counts, backoff, the undo stack, emitted
//! steps) is the coordinator's, in `coordinator::outcome`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tracing::Instrument;

use super::nesting::{self, Nesting};
use crate::argument::Arguments;
use crate::context::Context;
use crate::error::{panic_message, Phase, Reason, StepErrorKind};
use crate::event::EventKind;
use crate::middleware::HookPanic;
use crate::step::{Backoff, Compensation, Guard, Outcome, Runner, Step, SyncRunFn};
use crate::value::Value;

/// What an attempt came to (small: every attempt's verdict is moved
/// through a task's report).
pub(crate) enum Verdict {
    /// Success (directly, by compensation, or by a guard's skip); what few
    /// successes have besides their value is boxed.
    Done {
        value: Value,
        more: Option<Box<DoneMore>>,
    },
    /// The step asks to run again; the coordinator counts the retry and
    /// asks the step for its backoff.
    Retry {
        reason: Option<Reason>,
        /// Compensation asked for it.
        compensated: bool,
    },
    /// The step failed for good in `phase` (boxed: failures are rare, and
    /// every attempt's report is moved through a channel).
    Failed {
        phase: Phase,
        kind: Box<StepErrorKind>,
    },
}

/// The rarer parts of a success.
pub(crate) struct DoneMore {
    /// Steps to add to the run (a step named like this one replaces it).
    pub(crate) emitted: Vec<crate::step::StepSpec>,
    /// What the undo stack keeps for this step.
    pub(crate) undo: UndoWith,
    /// The step halts the run.
    pub(crate) halt: bool,
}

impl Verdict {
    #[inline]
    fn done(
        value: Value,
        emitted: Vec<crate::step::StepSpec>,
        undo: UndoWith,
        halt: bool,
    ) -> Verdict {
        let plain = emitted.is_empty() && matches!(undo, UndoWith::Value) && !halt;
        Verdict::Done {
            value,
            more: (!plain).then(|| {
                Box::new(DoneMore {
                    emitted,
                    undo,
                    halt,
                })
            }),
        }
    }
}

/// What a completed step keeps on the undo stack.
pub(crate) enum UndoWith {
    /// Its value.
    Value,
    /// A value of its choosing ([`Outcome::OkWithUndo`]).
    Token(Value),
    /// Nothing: a guard skipped the step, so there is nothing to undo.
    Nothing,
}

/// One attempt's verdict, and the first middleware panic seen on the way.
pub(crate) struct Attempt {
    pub(crate) verdict: Verdict,
    pub(crate) hook: Option<Box<HookPanic>>,
}

impl Attempt {
    /// The attempt's outcome, as its span records it.
    pub(crate) fn outcome(&self) -> &'static str {
        match &self.verdict {
            Verdict::Done { more: None, .. } => "ok",
            Verdict::Done { more: Some(m), .. } if m.halt => "halt",
            Verdict::Done { more: Some(m), .. } if matches!(m.undo, UndoWith::Nothing) => "skip",
            Verdict::Done { .. } => "ok",
            Verdict::Retry { .. } => "retry",
            Verdict::Failed { .. } => "error",
        }
    }

    pub(crate) fn failed(phase: Phase, kind: StepErrorKind) -> Attempt {
        Attempt {
            verdict: Verdict::Failed {
                phase,
                kind: Box::new(kind),
            },
            hook: None,
        }
    }
}

/// A panic inside a step's `run`, as a reason that compensation can see.
#[derive(Debug, thiserror::Error)]
#[error("the step panicked: {0}")]
pub struct StepPanicked(pub String);

/// An attempt that has to await.
pub(crate) type SlowAttempt = Pin<Box<dyn Future<Output = Attempt> + Send>>;

/// An attempt run as far as it goes without awaiting.
pub(crate) enum Started {
    Now(Attempt),
    Later(SlowAttempt),
}

/// Starts an attempt of `runner`: runs it synchronously up to its first
/// await. `span` (when step spans are on) covers the whole attempt; an
/// attempt that awaits continues inside `nesting()`.
pub(crate) fn start(
    runner: &Runner,
    args: &Arguments,
    ctx: &Context,
    span: Option<tracing::Span>,
    nesting: impl FnOnce() -> Nesting,
) -> Started {
    let Some(span) = span else {
        return begin(runner, args, ctx, None, nesting);
    };
    // The span records the attempt's outcome when it ends.
    match begin(runner, args, ctx, Some(span.clone()), nesting) {
        Started::Now(attempt) => {
            span.record("outcome", attempt.outcome());
            Started::Now(attempt)
        }
        Started::Later(fut) => Started::Later(Box::pin(async move {
            let attempt = fut.await;
            span.record("outcome", attempt.outcome());
            attempt
        })),
    }
}

fn begin(
    runner: &Runner,
    args: &Arguments,
    ctx: &Context,
    span: Option<tracing::Span>,
    nesting: impl FnOnce() -> Nesting,
) -> Started {
    let entered = span.as_ref().map(tracing::Span::enter);
    let step = match runner {
        Runner::Plain(run) => return Started::Now(run_plain(run, args, ctx)),
        Runner::Step(step) => step,
    };
    let mut state = State::new(ctx);
    if let Some(outcome) = state.guards(args, ctx) {
        return Started::Now(state.skipped(outcome));
    }
    if !state.begin(args, ctx) {
        return Started::Now(state.hook_failed());
    }
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| step.run_now(args, ctx))) {
        Ok(Some(outcome)) => outcome,
        Ok(None) => {
            let (step, args, ctx) = (step.clone(), args.clone(), ctx.clone());
            let nesting = nesting();
            drop(entered);
            // One future, moved into its box once; the rare compensation
            // is boxed apart so that it does not make every attempt larger.
            let fut = async move {
                nesting::scope(nesting, async move {
                    let outcome = run_awaiting(&*step, &args, &ctx).await;
                    match state.settle(step.can_compensate(), outcome, &ctx) {
                        Ok(v) => state.finish(v),
                        Err(reason) => Box::pin(state.compensate(&*step, reason, args, ctx)).await,
                    }
                })
                .await
            };
            return Started::Later(match span {
                Some(span) => Box::pin(fut.instrument(span)),
                None => Box::pin(fut),
            });
        }
        Err(panic) => panicked(&*panic),
    };
    match state.settle(step.can_compensate(), outcome, ctx) {
        Ok(verdict) => Started::Now(state.finish(verdict)),
        Err(reason) => {
            let (step, args, ctx) = (step.clone(), args.clone(), ctx.clone());
            let fut = async move { state.compensate(&*step, reason, args, ctx).await };
            drop(entered);
            Started::Later(later(fut, span, nesting))
        }
    }
}

fn later(
    fut: impl Future<Output = Attempt> + Send + 'static,
    span: Option<tracing::Span>,
    nesting: impl FnOnce() -> Nesting,
) -> SlowAttempt {
    let fut = nesting::scope(nesting(), fut);
    match span {
        Some(span) => Box::pin(fut.instrument(span)),
        None => Box::pin(fut),
    }
}

/// An attempt of a plain closure step (no guard, no compensation, never
/// awaits): the same rules, with nothing to box.
#[inline]
pub(crate) fn run_plain(run: &SyncRunFn, args: &Arguments, ctx: &Context) -> Attempt {
    let mut state = State::new(ctx);
    if !state.begin(args, ctx) {
        return state.hook_failed();
    }
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(args, ctx)))
        .unwrap_or_else(|panic| panicked(&*panic));
    match state.settle(false, outcome, ctx) {
        Ok(verdict) => state.finish(verdict),
        Err(_) => unreachable!("plain steps cannot compensate"),
    }
}

/// The `tracing` span of one attempt.
pub(crate) fn step_span(parent: &tracing::Span, ctx: &Context) -> tracing::Span {
    tracing::debug_span!(
        parent: parent,
        "reactor.step",
        reactor = %ctx.reactor_name(),
        run_id = %ctx.run_id(),
        step = %ctx.step_name(),
        attempt = ctx.current_try + 1,
        outcome = tracing::field::Empty,
    )
}

/// Asks `step` how long to wait before retrying; a panic is the step's
/// failure (a [`StepPanicked`] reason naming `backoff`).
pub(crate) fn backoff(
    step: &dyn Step,
    reason: Option<&Reason>,
    args: &Arguments,
    ctx: &Context,
) -> Result<Backoff, Reason> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| step.backoff(reason, args, ctx))) {
        Ok(Backoff::After(d)) if d.is_zero() => Ok(Backoff::Now),
        Ok(b) => Ok(b),
        Err(p) => Err(Reason::new(StepPanicked(format!(
            "backoff: {}",
            panic_message(&*p)
        )))),
    }
}

/// Calls a user callback and awaits its future, turning a panic in either
/// into the panic's message.
pub(crate) async fn guarded<F: Future>(make: impl FnOnce() -> F) -> Result<F::Output, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(make)) {
        Ok(fut) => AssertUnwindSafe(fut)
            .catch_unwind()
            .await
            .map_err(|p| panic_message(&*p)),
        Err(p) => Err(panic_message(&*p)),
    }
}

/// The outcome of a step whose `run` panicked.
fn panicked(payload: &(dyn std::any::Any + Send)) -> Outcome {
    Outcome::Error(Reason::new(StepPanicked(panic_message(payload))))
}

async fn run_awaiting(step: &dyn Step, args: &Arguments, ctx: &Context) -> Outcome {
    guarded(|| step.run(args.clone(), ctx.clone()))
        .await
        .unwrap_or_else(|panic| Outcome::Error(Reason::new(StepPanicked(panic))))
}

/// The failure of a step whose `run` gave `reason`.
fn failed_run(reason: Reason) -> Verdict {
    let kind = match reason.downcast_ref::<StepPanicked>() {
        Some(p) => StepErrorKind::Panicked(p.0.clone()),
        None => StepErrorKind::Failed(reason),
    };
    Verdict::Failed {
        phase: Phase::Run,
        kind: Box::new(kind),
    }
}

/// What an outcome means, before any compensation: the verdict, or the
/// reason to compensate (`compensate` says whether the step may). A
/// skipped step's outcome keeps nothing for undo and is not compensated.
#[inline]
fn verdict(outcome: Outcome, compensate: bool, skipped: bool) -> Result<Verdict, Reason> {
    let undo = |token: Option<Value>| match (skipped, token) {
        (true, _) => UndoWith::Nothing,
        (false, Some(t)) => UndoWith::Token(t),
        (false, None) => UndoWith::Value,
    };
    let done = Verdict::done;
    Ok(match outcome {
        Outcome::Ok(value) => done(value, Vec::new(), undo(None), false),
        Outcome::OkWithSteps(value, steps) => done(value, steps, undo(None), false),
        Outcome::OkWithUndo { value, undo: token } => {
            done(value, Vec::new(), undo(Some(token)), false)
        }
        Outcome::Halt(value) => done(value, Vec::new(), undo(None), true),
        Outcome::Retry(reason) => Verdict::Retry {
            reason,
            compensated: false,
        },
        Outcome::Error(reason) if compensate && !skipped => return Err(reason),
        Outcome::Error(reason) => failed_run(reason),
    })
}

/// The events and timing of one attempt.
struct State {
    /// The attempt, from 1.
    attempt: u32,
    started: Option<Instant>,
    hook: Option<Box<HookPanic>>,
}

impl State {
    #[inline]
    fn new(ctx: &Context) -> State {
        State {
            attempt: ctx.current_try + 1,
            started: None,
            hook: None,
        }
    }

    /// Emits an event of the step, keeping the first middleware panic.
    #[inline]
    fn emit<'a>(&mut self, ctx: &'a Context, kind: impl FnOnce() -> EventKind<'a>) {
        if !ctx.events {
            return;
        }
        if let Err(panic) = ctx.emit(kind) {
            self.hook.get_or_insert(Box::new(panic));
        }
    }

    #[inline]
    fn since(&self) -> Duration {
        self.started.map_or(Duration::ZERO, |s| s.elapsed())
    }

    #[inline]
    fn finish(self, verdict: Verdict) -> Attempt {
        Attempt {
            verdict,
            hook: self.hook,
        }
    }

    /// Evaluates the guards: the outcome to use, if one skipped the step.
    fn guards(&mut self, args: &Arguments, ctx: &Context) -> Option<Outcome> {
        let guards = &ctx.spec().def().extras().guards;
        if guards.is_empty() {
            return None;
        }
        let attempt = self.attempt;
        self.emit(ctx, || EventKind::GuardStart { attempt });
        for g in guards {
            let decision = std::panic::catch_unwind(AssertUnwindSafe(|| g(args, ctx)))
                .unwrap_or_else(|panic| {
                    Guard::Skip(Outcome::Error(Reason::msg(format!(
                        "the guard panicked: {}",
                        panic_message(&*panic)
                    ))))
                });
            if let Guard::Skip(outcome) = decision {
                self.emit(ctx, || EventKind::GuardSkip { outcome: &outcome });
                return Some(outcome);
            }
        }
        self.emit(ctx, || EventKind::GuardPass);
        None
    }

    /// A step a guard skipped: its outcome, as if `run` had returned it,
    /// except that it is neither compensated nor undone.
    fn skipped(self, outcome: Outcome) -> Attempt {
        match verdict(outcome, false, true) {
            Ok(v) => self.finish(v),
            Err(_) => unreachable!("a skipped step is not compensated"),
        }
    }

    /// Emits the start event; `false` if middleware panicked on it (the
    /// step then does not run).
    #[inline]
    fn begin(&mut self, args: &Arguments, ctx: &Context) -> bool {
        let attempt = self.attempt;
        self.emit(ctx, || EventKind::StepStart {
            attempt,
            arguments: args,
            queued: std::time::Duration::from_micros(u64::from(ctx.queued_us)),
        });
        if ctx.events {
            self.started = Some(Instant::now());
        }
        self.hook.is_none()
    }

    fn hook_failed(self) -> Attempt {
        let panic = self.hook.as_ref().expect("a hook panicked");
        Attempt {
            verdict: Verdict::Failed {
                phase: Phase::Middleware,
                kind: Box::new(StepErrorKind::Middleware(panic.to_string())),
            },
            hook: None,
        }
    }

    /// Emits the event of `outcome` and makes it a verdict, or gives the
    /// reason to compensate.
    #[inline]
    fn settle(
        &mut self,
        can_compensate: bool,
        outcome: Outcome,
        ctx: &Context,
    ) -> Result<Verdict, Reason> {
        let attempt = self.attempt;
        let duration = self.since();
        match &outcome {
            Outcome::Ok(value)
            | Outcome::OkWithSteps(value, _)
            | Outcome::OkWithUndo { value, .. } => self.emit(ctx, || EventKind::StepComplete {
                attempt,
                duration,
                value,
            }),
            Outcome::Halt(value) => self.emit(ctx, || EventKind::StepHalt {
                attempt,
                duration,
                value,
            }),
            Outcome::Error(error) => self.emit(ctx, || EventKind::StepError {
                attempt,
                duration,
                error,
            }),
            Outcome::Retry(_) => {}
        }
        verdict(outcome, can_compensate, false)
    }

    async fn compensate(
        mut self,
        step: &dyn Step,
        reason: Reason,
        args: Arguments,
        ctx: Context,
    ) -> Attempt {
        let attempt = self.attempt;
        self.emit(&ctx, || EventKind::CompensateStart {
            attempt,
            error: &reason,
        });
        let started = ctx.events.then(Instant::now);
        let decision = guarded(|| step.compensate(reason.clone(), args.clone(), ctx.clone()))
            .await
            .unwrap_or_else(|panic| {
                Compensation::Error(Reason::msg(format!("compensate panicked: {panic}")))
            });
        let duration = started.map_or(Duration::ZERO, |s| s.elapsed());
        let verdict = match decision {
            Compensation::Continue(value) => {
                self.emit(&ctx, || EventKind::CompensateContinue {
                    duration,
                    value: &value,
                });
                Verdict::done(value, Vec::new(), UndoWith::Value, false)
            }
            Compensation::Fail => {
                self.emit(&ctx, || EventKind::CompensateComplete { duration });
                failed_run(reason)
            }
            Compensation::Retry(new_reason) => {
                self.emit(&ctx, || EventKind::CompensateRetry {
                    duration,
                    reason: new_reason.as_ref(),
                });
                Verdict::Retry {
                    reason: Some(new_reason.unwrap_or(reason)),
                    compensated: true,
                }
            }
            Compensation::Error(error) => {
                self.emit(&ctx, || EventKind::CompensateError {
                    duration,
                    error: &error,
                });
                Verdict::Failed {
                    phase: Phase::Compensate,
                    kind: Box::new(StepErrorKind::Compensate(error)),
                }
            }
        };
        self.finish(verdict)
    }
}
