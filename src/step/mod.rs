//! Steps: the [`Step`] trait, what a step returns, and [`StepSpec`], the
//! definition of a step inside a reactor (name, arguments, options).
//!
//! A step is written either as a type implementing [`Step`] (for reusable
//! steps with compensation, undo and backoff) or with closures on a
//! [`StepSpec`] (`step("x").run(|args, ctx| async move { ... })`).
//! Defining [`Step::compensate`] or [`Step::undo`] is enough for the engine
//! to call it. [`Step::can_compensate`] and [`Step::can_undo`] only let a
//! step say it has nothing to do there: a step that cannot undo is never
//! kept on the undo stack, which frees its result sooner.

mod closure;
mod spec;

use std::time::Duration;

use async_trait::async_trait;

pub(crate) use closure::SyncRunFn;
pub use closure::{IntoOutcome, IntoUndoOutcome};

/// How a step is called.
#[derive(Clone)]
pub(crate) enum Runner {
    /// A plain closure with nothing to compensate: called directly, which
    /// touches nothing but the closure itself.
    Plain(SyncRunFn),
    /// Any other step, through the [`Step`] trait.
    Step(StepImp),
}
#[cfg(test)]
pub(crate) use spec::StepDef;
pub(crate) use spec::StepImp;
#[cfg(feature = "cli")]
pub(crate) use spec::DEFAULT_MAX_RETRIES;
pub(crate) use spec::{gathered_codec, Shape, SwitchEmit};
pub use spec::{step, Guard, StepSpec};

use crate::argument::Arguments;
use crate::context::Context;
use crate::error::{BoxError, Reason};
use crate::value::Value;

/// What a step's `run` returns.
pub enum Outcome {
    /// Success with a value.
    Ok(Value),
    /// Success, adding steps to the running reactor. A step with the same
    /// name as the current step replaces it: its dependents wait for the
    /// replacement, which can read the current value as `result(own name)`.
    OkWithSteps(Value, Vec<StepSpec>),
    /// Success with a value, keeping `undo` (instead of the value) on the
    /// undo stack: [`Step::undo`] receives it. For steps whose undo needs
    /// more than their result, such as a composed reactor's whole run.
    OkWithUndo {
        /// The step's result.
        value: Value,
        /// What `undo` will receive.
        undo: Value,
    },
    /// Failure; `compensate` is consulted if the step can compensate.
    Error(Reason),
    /// Run the step again (counts towards `max_retries`), with an optional reason.
    Retry(Option<Reason>),
    /// Complete with this value and halt the reactor.
    Halt(Value),
}

impl Outcome {
    /// Success with `value`.
    pub fn ok<T: Send + Sync + 'static>(value: T) -> Outcome {
        Outcome::Ok(Value::new(value))
    }

    /// Failure with `error`.
    pub fn error(error: impl Into<BoxError>) -> Outcome {
        Outcome::Error(Reason::from(error.into()))
    }

    /// Success that adds `steps` to the running reactor.
    pub fn with_steps<T: Send + Sync + 'static>(value: T, steps: Vec<StepSpec>) -> Outcome {
        Outcome::OkWithSteps(Value::new(value), steps)
    }
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok(v) => f.debug_tuple("Ok").field(v).finish(),
            Outcome::OkWithUndo { value, .. } => f.debug_tuple("OkWithUndo").field(value).finish(),
            Outcome::OkWithSteps(v, s) => f
                .debug_tuple("OkWithSteps")
                .field(v)
                .field(&s.iter().map(StepSpec::name).collect::<Vec<_>>())
                .finish(),
            Outcome::Error(e) => f.debug_tuple("Error").field(e).finish(),
            Outcome::Retry(r) => f.debug_tuple("Retry").field(r).finish(),
            Outcome::Halt(v) => f.debug_tuple("Halt").field(v).finish(),
        }
    }
}

/// What `compensate` decides after `run` failed.
#[derive(Debug)]
pub enum Compensation {
    /// Recovered: the step succeeds with this value.
    Continue(Value),
    /// Accept the failure: the step fails with the original error.
    Fail,
    /// Run the step again (counts towards `max_retries`), with an optional
    /// reason that replaces the original error if retries run out.
    Retry(Option<Reason>),
    /// Compensation itself failed.
    Error(Reason),
}

/// What `undo` returns.
#[derive(Debug)]
pub enum UndoOutcome {
    /// Undone.
    Done,
    /// Try the undo again (at most 5 attempts in all).
    Retry(Option<Reason>),
    /// The undo failed; the remaining undos still run.
    Error(Reason),
}

/// When to retry a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// Retry at once.
    Now,
    /// Retry after this delay; other steps keep running meanwhile.
    After(Duration),
}

impl Backoff {
    /// A delay of `ms` milliseconds; 0 means now.
    pub fn millis(ms: u64) -> Backoff {
        if ms == 0 {
            Backoff::Now
        } else {
            Backoff::After(Duration::from_millis(ms))
        }
    }
}

/// A unit of work in a reactor.
///
/// Only [`Step::run`] is required. Define [`Step::compensate`] to handle a
/// failed run, [`Step::undo`] to undo a completed one when the saga
/// unwinds, [`Step::backoff`] to delay retries: defining the method is
/// enough. A step that does not undo may say so with [`Step::can_undo`],
/// so that its result is not kept for an undo that does nothing.
///
/// # Examples
///
/// ```
/// use reactor::{async_trait, Arguments, Context, Outcome, Step, UndoOutcome, Value};
///
/// struct Reserve;
///
/// #[async_trait]
/// impl Step for Reserve {
///     async fn run(&self, args: Arguments, _ctx: Context) -> Outcome {
///         match args.get::<u32>("seats") {
///             Ok(n) => Outcome::ok(*n),
///             Err(e) => Outcome::error(e),
///         }
///     }
///     async fn undo(&self, _value: Value, _args: Arguments, _ctx: Context) -> UndoOutcome {
///         UndoOutcome::Done
///     }
/// }
/// ```
#[async_trait]
pub trait Step: Send + Sync + 'static {
    /// Runs the step.
    async fn run(&self, args: Arguments, ctx: Context) -> Outcome;

    /// Runs the step at once, without awaiting, if it can. The executor
    /// calls this first and awaits [`Step::run`] only when it returns
    /// `None` (the default). Closure steps made with
    /// [`StepSpec::run_sync`] answer here, which saves a boxed future.
    fn run_now(&self, _args: &Arguments, _ctx: &Context) -> Option<Outcome> {
        None
    }

    /// Whether [`Step::compensate`] should be called when `run` fails
    /// (default: yes; the default `compensate` accepts the failure). Return
    /// `false` only to skip the compensation events of a step that does
    /// not compensate.
    fn can_compensate(&self) -> bool {
        true
    }

    /// Decides what to do about a failed `run`.
    async fn compensate(&self, _error: Reason, _args: Arguments, _ctx: Context) -> Compensation {
        Compensation::Fail
    }

    /// Whether the step is kept on the undo stack, to have [`Step::undo`]
    /// called when the saga unwinds (default: yes; the default `undo` does
    /// nothing). Return `false` from a step that does not undo, so that its
    /// result is not kept for it.
    fn can_undo(&self) -> bool {
        true
    }

    /// Undoes a successful run whose result was `value`.
    async fn undo(&self, _value: Value, _args: Arguments, _ctx: Context) -> UndoOutcome {
        UndoOutcome::Done
    }

    /// How long to wait before a retry; `reason` is the unwrapped error or
    /// retry reason, if any.
    fn backoff(&self, _reason: Option<&Reason>, _args: &Arguments, _ctx: &Context) -> Backoff {
        Backoff::Now
    }
}
