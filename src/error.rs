//! Errors: what went wrong, where, and how severe it is.
//!
//! Building, planning and starting a run fail with an [`Error`] naming the
//! step, argument or input concerned. A run whose saga unwound fails with
//! [`Error::Run`], a [`RunError`] that reports **every** [`StepError`]
//! collected: the failure itself, failures of steps that were still running,
//! and every undo that failed. Each error has an [`ErrorClass`], grouped as the
//! original Reactor groups them.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::executor::HaltedRun;

/// A boxed error, as steps return it.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The class of an error, from least to most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ErrorClass {
    /// The reactor or its run request is not valid (no return, wrong state).
    Validation,
    /// An error that is not one of the engine's own.
    Unknown,
    /// A step, its arguments or its input are invalid or failed.
    Invalid,
    /// The engine itself failed (planning emitted steps, a missing result).
    Internal,
}

/// The reason a step gave for failing or retrying: a shared, cloneable error.
///
/// # Examples
///
/// ```
/// use reactor::Reason;
///
/// #[derive(Debug)]
/// struct RateLimited;
/// impl std::fmt::Display for RateLimited {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("429") }
/// }
/// impl std::error::Error for RateLimited {}
///
/// let r = Reason::new(RateLimited);
/// assert!(r.downcast_ref::<RateLimited>().is_some());
/// assert_eq!(Reason::msg("boom").to_string(), "boom");
/// ```
#[derive(Clone)]
pub struct Reason(Arc<dyn StdError + Send + Sync + 'static>);

impl Reason {
    /// Wraps an error.
    pub fn new<E: StdError + Send + Sync + 'static>(error: E) -> Reason {
        Reason(Arc::new(error))
    }

    /// A reason made of a message alone.
    pub fn msg(message: impl Into<String>) -> Reason {
        Reason::from(BoxError::from(message.into()))
    }

    /// The underlying error, if it is an `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref::<E>()
    }

    /// The underlying error.
    pub fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0
    }
}

impl From<BoxError> for Reason {
    fn from(e: BoxError) -> Self {
        Reason(Arc::from(e))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl StdError for Reason {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Errors of building, planning, starting and running a reactor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The reactor has no steps.
    #[error("reactor `{reactor}` contains no steps")]
    NoSteps {
        /// The reactor's name.
        reactor: String,
    },
    /// No return step was named.
    #[error("reactor `{reactor}` has no return step: name one with `Builder::returns`")]
    MissingReturn {
        /// The reactor's name.
        reactor: String,
    },
    /// The return step does not exist.
    #[error("return value `{step}` does not correspond with an existing step")]
    UnknownReturn {
        /// The name given to `returns`.
        step: String,
    },
    /// Two steps (or two inputs) share a name.
    #[error("reactor contains duplicate {what}: there are {count} {what} named `{name}`")]
    Duplicate {
        /// `steps` or `inputs`.
        what: &'static str,
        /// The shared name.
        name: String,
        /// How many share it.
        count: usize,
    },
    /// An argument reads an input the reactor does not declare.
    #[error("step `{step}` argument `{argument}` reads input `{input}`, which the reactor does not declare")]
    UnknownInput {
        /// The consuming step.
        step: String,
        /// The argument.
        argument: String,
        /// The missing input.
        input: String,
    },
    /// An argument or `wait_for` names a step that does not exist.
    #[error(
        "step `{step}` depends on the result of a step named `{dependency}` which cannot be found"
    )]
    UnknownStep {
        /// The consuming step.
        step: String,
        /// The missing producer.
        dependency: String,
    },
    /// The steps' dependencies form a cycle.
    #[error("reactor contains cyclic dependencies: {}", cycle_text(cycle, *length))]
    Cycle {
        /// The steps of one cycle in data-flow order, the first repeated at
        /// the end; for a long cycle, only its first steps.
        cycle: Vec<String>,
        /// How many steps the cycle has.
        length: usize,
    },
    /// A step was given no implementation.
    #[error("step `{step}` has no implementation: give it `run` or `implementation`")]
    NoImplementation {
        /// The step.
        step: String,
    },
    /// A step was given an implementation and closures as well.
    #[error("step `{step}` has both an implementation and a `{callback}` closure")]
    ConflictingImplementation {
        /// The step.
        step: String,
        /// The closure that conflicts.
        callback: &'static str,
    },
    /// Inputs declared by the reactor were not supplied.
    #[error("reactor is missing the following inputs: {}", inputs.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", "))]
    MissingInputs {
        /// The missing inputs, in declaration order.
        inputs: Vec<String>,
    },
    /// An input's transform failed.
    #[error("the transform of input `{input}` failed: {reason}")]
    InputTransform {
        /// The input.
        input: String,
        /// Why.
        reason: Reason,
    },
    /// An input declared with a type was given a value of another.
    #[error("input `{input}` is a `{actual}`, but the reactor declares a `{expected}`")]
    InputType {
        /// The input.
        input: String,
        /// The declared type.
        expected: &'static str,
        /// The type given.
        actual: &'static str,
    },
    /// A run option is out of range.
    #[error("invalid run option `{option}`: {message}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A step asked for an argument it was not given.
    #[error("step `{step}` has no argument `{argument}`")]
    MissingArgument {
        /// The step.
        step: String,
        /// The argument asked for.
        argument: String,
    },
    /// A step read an argument as the wrong type.
    #[error("argument `{argument}` of step `{step}` is a `{actual}`, but the step expected a `{expected}`")]
    ArgumentType {
        /// The step.
        step: String,
        /// The argument.
        argument: String,
        /// The type the step asked for.
        expected: &'static str,
        /// The type the value has.
        actual: &'static str,
    },
    /// A value was read as the wrong type.
    #[error("value is a `{actual}`, not the expected `{expected}`")]
    ValueType {
        /// The type asked for.
        expected: &'static str,
        /// The type the value has.
        actual: &'static str,
    },
    /// The run failed and its saga unwound.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The run halted; the halted run can be resumed.
    #[error("reactor halted (run `{}`); resume it with `HaltedRun::resume`", .0.run_id())]
    Halted(Box<HaltedRun>),
    /// A run was nested inside more runs than [`MAX_NESTING`](crate::executor::MAX_NESTING).
    #[error("runs are nested {depth} deep, more than the limit of {limit} (a reactor composing itself without end?)")]
    NestingTooDeep {
        /// The depth reached.
        depth: u32,
        /// The limit.
        limit: u32,
    },
    /// A middleware's `init` hook refused the run: nothing ran.
    #[error("middleware refused run `{run_id}`: {reason}")]
    Refused {
        /// The run.
        run_id: String,
        /// Why.
        reason: Reason,
    },
    /// A run's state does not fit the reactor it is resumed with.
    #[error("the state of run `{run_id}` does not fit the reactor: {problem}")]
    StateMismatch {
        /// The run.
        run_id: String,
        /// What does not fit.
        problem: String,
    },
    /// A value could not cross a durable run's journal.
    #[error("a `{type_name}` could not be encoded or decoded: {message}")]
    Codec {
        /// The type of the value.
        type_name: &'static str,
        /// What serde said.
        message: String,
    },
    /// A reactor cannot run durably: a value it would journal has no
    /// encoding, or it uses what the journal cannot record yet.
    #[error("reactor `{reactor}` cannot run durably: {problem}")]
    NotDurable {
        /// The reactor.
        reactor: String,
        /// What is missing, naming the step or input.
        problem: String,
    },
    /// The journal's store failed (after its retries).
    #[error(transparent)]
    Store(#[from] crate::journal::StoreError),
    /// A run was journalled under another definition of its reactor.
    #[error(
        "run `{run_id}` of reactor `{reactor}` was started under another definition: {changed}"
    )]
    DefinitionChanged {
        /// The run.
        run_id: String,
        /// The reactor.
        reactor: String,
        /// What changed (the first difference found).
        changed: String,
    },
    /// No run, or no reactor, of that name is known.
    #[error("unknown {what} `{name}`")]
    Unknown {
        /// `"run"` or `"reactor"`.
        what: &'static str,
        /// The name asked for.
        name: String,
    },
    /// A registered step kind could not make a step (unregistered kind,
    /// parameters that do not encode or decode, a panic).
    #[error("cannot make step `{step}`: {problem}")]
    StepKind {
        /// The step asked for.
        step: String,
        /// What went wrong, naming the kind.
        problem: String,
    },
    /// Only a successful, fully reversible run can be undone.
    #[error("the run `{run_id}` cannot be undone: {message}")]
    State {
        /// The run.
        run_id: String,
        /// Why.
        message: String,
    },
}

impl Error {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Run(run) => run.class(),
            Error::MissingInputs { .. }
            | Error::InputTransform { .. }
            | Error::InputType { .. }
            | Error::UnknownInput { .. }
            | Error::UnknownStep { .. }
            | Error::Cycle { .. }
            | Error::Duplicate { .. }
            | Error::NoImplementation { .. }
            | Error::ConflictingImplementation { .. }
            | Error::InvalidOption { .. }
            | Error::NestingTooDeep { .. }
            | Error::MissingArgument { .. }
            | Error::ArgumentType { .. }
            | Error::ValueType { .. }
            | Error::Codec { .. }
            | Error::NotDurable { .. }
            | Error::StepKind { .. }
            | Error::Unknown { .. } => ErrorClass::Invalid,
            Error::Store(_) => ErrorClass::Internal,
            Error::NoSteps { .. }
            | Error::MissingReturn { .. }
            | Error::UnknownReturn { .. }
            | Error::Halted(_)
            | Error::StateMismatch { .. }
            | Error::DefinitionChanged { .. }
            | Error::Refused { .. }
            | Error::State { .. } => ErrorClass::Validation,
        }
    }

    /// The run error, if the run failed.
    pub fn as_run_error(&self) -> Option<&RunError> {
        match self {
            Error::Run(run) => Some(run),
            _ => None,
        }
    }
}

/// Which callback of a step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Phase {
    /// Resolving the step's arguments, before it ran.
    Arguments,
    /// The step's `run`.
    Run,
    /// The step's `compensate`.
    Compensate,
    /// The step's `undo`.
    Undo,
    /// Planning steps that a step emitted.
    Plan,
    /// Middleware, on an event of the step (or of the run).
    Middleware,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Arguments => "arguments",
            Phase::Run => "run",
            Phase::Compensate => "compensate",
            Phase::Undo => "undo",
            Phase::Plan => "plan",
            Phase::Middleware => "middleware",
        })
    }
}

/// One step's failure: which step, in which phase, on which attempt, and why.
#[derive(Clone, Debug, thiserror::Error, Serialize)]
#[error("step `{step}` failed in {phase} (attempt {attempt}): {kind}")]
pub struct StepError {
    /// The step's name.
    pub step: String,
    /// The callback that failed.
    pub phase: Phase,
    /// The attempt, counting from 1.
    pub attempt: u32,
    /// What happened.
    #[source]
    pub kind: StepErrorKind,
}

impl StepError {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        self.kind.class()
    }
}

/// What went wrong in a step.
#[derive(Clone, Debug, thiserror::Error, Serialize)]
#[non_exhaustive]
pub enum StepErrorKind {
    /// `run` returned an error (or `compensate` accepted the failure).
    #[error("{0}")]
    Failed(Reason),
    /// `run` panicked.
    #[error("the step panicked: {0}")]
    Panicked(String),
    /// The step asked to retry more often than `max_retries` allows.
    #[error("retried {retries} times, more than its max_retries of {max_retries}")]
    RetriesExceeded {
        /// How many retries were asked for.
        retries: u32,
        /// The limit.
        max_retries: u32,
    },
    /// `compensate` returned an error or panicked.
    #[error("compensation failed: {0}")]
    Compensate(Reason),
    /// `undo` returned an error or panicked.
    #[error("undo failed: {0}")]
    Undo(Reason),
    /// `undo` kept asking to retry.
    #[error("undo was retried {attempts} times without success")]
    UndoRetriesExceeded {
        /// How many times undo ran.
        attempts: u32,
    },
    /// An argument's producer result is no longer kept.
    #[error("argument `{argument}` needs the result of `{dependency}`, which is not available")]
    MissingResult {
        /// The argument.
        argument: String,
        /// The producing step.
        dependency: String,
    },
    /// An argument's sub-path does not exist in the value.
    #[error("argument `{argument}`: key {key} not found at path [{path}] in a `{value_type}`")]
    ArgumentPath {
        /// The argument.
        argument: String,
        /// The key that was not found.
        key: String,
        /// The path up to and including that key.
        path: String,
        /// The type of the value the key was looked up in.
        value_type: &'static str,
    },
    /// An argument's transform failed.
    #[error("the transform of argument `{argument}` failed: {reason}")]
    ArgumentTransform {
        /// The argument.
        argument: String,
        /// Why.
        reason: Reason,
    },
    /// The step's whole-argument transform failed.
    #[error("the argument transform failed: {0}")]
    ArgumentsTransform(Reason),
    /// Steps emitted by this step could not be planned.
    #[error("its emitted steps could not be planned: {0}")]
    Plan(Reason),
    /// The step was still running when the run stopped waiting for it, and
    /// was cancelled.
    #[error("the step was still running after the halt timeout; it was cancelled and is undone as if it had completed")]
    Abandoned,
    /// Middleware panicked on an event of the step or run.
    #[error("{0}")]
    Middleware(String),
}

impl StepErrorKind {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            StepErrorKind::Plan(_) | StepErrorKind::Abandoned | StepErrorKind::Middleware(_) => {
                ErrorClass::Internal
            }
            _ => ErrorClass::Invalid,
        }
    }
}

/// A failed run: every error collected while it failed and unwound.
#[derive(Clone, Debug, Serialize)]
pub struct RunError {
    /// The run's id.
    pub run_id: String,
    /// The errors, in the order they happened: failures first, then undo errors.
    pub errors: Vec<StepError>,
}

impl RunError {
    /// The most severe class among the errors.
    pub fn class(&self) -> ErrorClass {
        self.errors
            .iter()
            .map(StepError::class)
            .max()
            .unwrap_or(ErrorClass::Unknown)
    }

    /// The errors of one step.
    pub fn for_step<'a>(&'a self, step: &'a str) -> impl Iterator<Item = &'a StepError> + 'a {
        self.errors.iter().filter(move |e| e.step == step)
    }

    /// The first error whose reason is an `E`, searching run, compensate and undo reasons.
    pub fn find_reason<E: StdError + 'static>(&self) -> Option<&E> {
        self.errors.iter().find_map(|e| match &e.kind {
            StepErrorKind::Failed(r)
            | StepErrorKind::Compensate(r)
            | StepErrorKind::Undo(r)
            | StepErrorKind::ArgumentTransform { reason: r, .. }
            | StepErrorKind::ArgumentsTransform(r) => r.downcast_ref::<E>(),
            _ => None,
        })
    }
}

/// How many nested run errors are written out; deeper ones (a run nested
/// hundreds deep) are summarised, so that writing an error never needs a
/// stack deeper than that.
const SHOWN_NESTING: u32 = 16;

thread_local! {
    static WRITING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run `{}` failed ({:?}) with {} error(s)",
            self.run_id,
            self.class(),
            self.errors.len()
        )?;
        let depth = WRITING.with(|w| w.get());
        if depth >= SHOWN_NESTING {
            return write!(f, " (nested too deep to show)");
        }
        WRITING.with(|w| w.set(depth + 1));
        let written = self.errors.iter().try_for_each(|e| write!(f, "\n- {e}"));
        WRITING.with(|w| w.set(depth));
        written
    }
}

impl StdError for RunError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.errors.first().map(|e| e as &(dyn StdError + 'static))
    }
}

/// The most steps of a cycle an error names.
pub(crate) const CYCLE_SHOWN: usize = 10;

fn cycle_text(cycle: &[String], length: usize) -> String {
    if length < cycle.len() {
        cycle.join(" -> ")
    } else {
        format!(
            "{} -> ... ({length} steps in the cycle)",
            cycle.join(" -> ")
        )
    }
}

/// Turns a panic payload into a message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}
