//! Middleware: what sees every event of a run ([`Middleware::on_event`]) and
//! hooks into its start and end ([`Middleware::init`], `complete`, `error`,
//! `halt`), and how a run delivers to it ([`Emitter`]).
//!
//! A run's middleware are its reactor's, then those a nested run inherits
//! from the run it is nested in ([`RunRequest::within`](crate::RunRequest::within)),
//! then the run request's, each once. Hooks run in that order, each seeing
//! what the one before it returned. User code in middleware is guarded: a
//! panic, or an error a hook returns, is an error of the run, which still
//! drains and undoes.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::error::{BoxError, RunError, StepError};
use crate::event::{Event, EventKind};
use crate::executor::attempt::guarded;
use crate::executor::RunState;
use crate::name::Name;
use crate::pool::ConcurrencyPool;
use crate::value::{Value, ValueMap};

/// What a hook sees of the run it is called for.
#[derive(Clone, Copy, Debug)]
pub struct RunInfo<'a> {
    /// The run's id.
    pub run_id: &'a str,
    /// The reactor's name.
    pub reactor: &'a str,
    /// Whether the run resumes a halted one.
    pub resumed: bool,
    /// The run this run is nested in, if any.
    pub parent_run: Option<&'a str>,
}

/// Sees every event of the runs it is attached to, and may hook into their
/// start and end. Every method has a default that does nothing.
///
/// Hooks are async, run in the order the middleware were given, and see
/// what the hook before them returned. `init` runs before anything else
/// of the run (an error refuses the run: nothing runs, no other hook is
/// called); `complete` after a run succeeded (an error fails the run, which
/// then unwinds); `error` after a run failed and its saga unwound (every
/// `error` hook runs); `halt` when a run halts (an error fails the run).
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use reactor::{async_trait, step, BoxError, Event, Inputs, Middleware, Reactor, RunInfo, Value, ValueMap};
///
/// #[derive(Default)]
/// struct Audit(Mutex<Vec<String>>);
///
/// #[async_trait]
/// impl Middleware for Audit {
///     fn on_event(&self, event: &Event<'_>) {
///         self.0.lock().unwrap().push(event.kind.name().to_string());
///     }
///     async fn init(&self, _run: RunInfo<'_>, context: &mut ValueMap) -> Result<(), BoxError> {
///         context.insert("tenant".into(), Value::new("acme".to_string()));
///         Ok(())
///     }
///     async fn complete(&self, _run: RunInfo<'_>, value: Value) -> Result<Value, BoxError> {
///         Ok(Value::new(format!("{} (audited)", value.get::<String>()?)))
///     }
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
/// let audit = Arc::new(Audit::default());
/// let reactor = Reactor::builder("r")
///     .add(step("who").run_sync(|_, ctx| Ok(ctx.get::<String>("tenant").unwrap().clone())))
///     .returns("who")
///     .build()?;
/// let out = reactor.run(Inputs::new()).middleware(audit.clone()).await?;
/// assert_eq!(out.get::<String>()?, "acme (audited)");
/// assert_eq!(audit.0.lock().unwrap()[0], "run.start");
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Middleware: Send + Sync + 'static {
    /// Called for each event, synchronously, on the task where it happens.
    fn on_event(&self, _event: &Event<'_>) {}

    /// Before the run starts: may change the run's context, or refuse the
    /// run with an error.
    async fn init(&self, _run: RunInfo<'_>, _context: &mut ValueMap) -> Result<(), BoxError> {
        Ok(())
    }

    /// After the run succeeded: may change its result, or fail the run.
    async fn complete(&self, _run: RunInfo<'_>, value: Value) -> Result<Value, BoxError> {
        Ok(value)
    }

    /// After the run failed and unwound: may change or add to its errors.
    async fn error(&self, _run: RunInfo<'_>, error: RunError) -> RunError {
        error
    }

    /// When the run halts: may change the state it halts with (its
    /// context, say), or fail the run.
    async fn halt(&self, _run: RunInfo<'_>, state: RunState) -> Result<RunState, BoxError> {
        Ok(state)
    }
}

/// A middleware's panic on an event: it fails the run (or, on a step's
/// start event, the step, which then does not run).
#[derive(Clone, Debug)]
pub(crate) struct HookPanic {
    pub(crate) event: &'static str,
    pub(crate) message: String,
}

impl HookPanic {
    /// The panic as an error of `step` (or of the run, named by its
    /// reactor) on `attempt`.
    pub(crate) fn error(&self, step: &str, attempt: u32) -> StepError {
        failure(step, attempt, self.to_string())
    }
}

/// A middleware's failure (a panic, or an error a hook returned) as an
/// error of `step` (or of the run, named by its reactor) on `attempt`.
pub(crate) fn failure(step: &str, attempt: u32, message: String) -> StepError {
    StepError {
        step: step.to_string(),
        phase: crate::error::Phase::Middleware,
        attempt,
        kind: crate::error::StepErrorKind::Middleware(message),
    }
}

impl std::fmt::Display for HookPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "middleware panicked on `{}`: {}",
            self.event, self.message
        )
    }
}

/// Delivers a run's events and hooks to its middleware.
#[derive(Clone, Default)]
pub(crate) struct Emitter {
    middleware: Arc<[Arc<dyn Middleware>]>,
    /// The run the run is nested in.
    parent_run: Option<Name>,
}

impl Emitter {
    pub(crate) fn new(middleware: Vec<Arc<dyn Middleware>>, parent_run: Option<Name>) -> Emitter {
        // Each middleware once, in the order given.
        let mut unique: Vec<Arc<dyn Middleware>> = Vec::with_capacity(middleware.len());
        for m in middleware {
            if !unique.iter().any(|u| Arc::ptr_eq(u, &m)) {
                unique.push(m);
            }
        }
        Emitter {
            middleware: unique.into(),
            parent_run,
        }
    }

    /// The middleware, for runs nested in this one.
    pub(crate) fn middleware(&self) -> &[Arc<dyn Middleware>] {
        &self.middleware
    }

    pub(crate) fn parent_run(&self) -> Option<&str> {
        self.parent_run.as_deref()
    }

    /// Whether any middleware listens.
    pub(crate) fn is_active(&self) -> bool {
        !self.middleware.is_empty()
    }

    /// Emits an event built only when someone listens. Every middleware
    /// sees it, even after one panicked; the first panic is returned.
    #[inline]
    pub(crate) fn emit<'k>(
        &self,
        run_id: &str,
        reactor: &str,
        pool: &ConcurrencyPool,
        step: Option<&str>,
        kind: impl FnOnce() -> EventKind<'k>,
    ) -> Result<(), HookPanic> {
        if self.middleware.is_empty() {
            return Ok(());
        }
        let event = Event {
            run_id,
            reactor,
            parent_run: self.parent_run.as_deref(),
            pool: Some(pool),
            step,
            at: Instant::now(),
            kind: kind(),
        };
        let mut first = None;
        for m in self.middleware.iter() {
            let delivered =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.on_event(&event)));
            if let Err(panic) = delivered {
                first.get_or_insert_with(|| HookPanic {
                    event: event.kind.name(),
                    message: crate::error::panic_message(&*panic),
                });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Runs the `init` hooks on `context`; the first failure refuses the run.
    pub(crate) async fn init(
        &self,
        run: RunInfo<'_>,
        context: &mut ValueMap,
    ) -> Result<(), String> {
        for m in self.middleware.iter() {
            match guarded(|| m.init(run, context)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.to_string()),
                Err(panic) => return Err(format!("init panicked: {panic}")),
            }
        }
        Ok(())
    }

    /// Runs the `complete` hooks; the first failure fails the run.
    pub(crate) async fn complete(
        &self,
        run: RunInfo<'_>,
        mut value: Value,
    ) -> Result<Value, String> {
        for m in self.middleware.iter() {
            value = match guarded(|| m.complete(run, value)).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err(format!("the complete hook failed: {e}")),
                Err(panic) => return Err(format!("the complete hook panicked: {panic}")),
            };
        }
        Ok(value)
    }

    /// Runs every `error` hook; a panicking one adds its panic to the error.
    pub(crate) async fn error(&self, run: RunInfo<'_>, mut error: RunError) -> RunError {
        for m in self.middleware.iter() {
            let kept = error.clone();
            error = match guarded(|| m.error(run, error)).await {
                Ok(e) => e,
                Err(panic) => {
                    let mut kept = kept;
                    kept.errors.push(
                        HookPanic {
                            event: "run.error",
                            message: format!("the error hook panicked: {panic}"),
                        }
                        .error(run.reactor, 0),
                    );
                    kept
                }
            };
        }
        error
    }

    /// Runs the `halt` hooks; the first failure fails the run.
    pub(crate) async fn halt(
        &self,
        run: RunInfo<'_>,
        mut state: RunState,
    ) -> Result<RunState, String> {
        for m in self.middleware.iter() {
            state = match guarded(|| m.halt(run, state)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(format!("the halt hook failed: {e}")),
                Err(panic) => return Err(format!("the halt hook panicked: {panic}")),
            };
        }
        Ok(state)
    }
}
