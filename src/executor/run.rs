//! Starting runs ([`RunRequest`]) and what they return ([`RunOutcome`]).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::coordinator::{Coordinator, Finish, Settings};
use super::runner;
use super::state::RunState;
use crate::context::{Context, RunScope};
use crate::error::{panic_message, Error, Reason, RunError};
use crate::event::{Emitter, Middleware};
use crate::name::Name;
use crate::pool::ConcurrencyPool;
use crate::reactor::Reactor;
use crate::value::{Value, ValueMap};

/// The default `halt_timeout`.
pub const DEFAULT_HALT_TIMEOUT: Duration = Duration::from_secs(5);

/// A run about to start: set options, then `.await` it (for the result) or
/// call [`RunRequest::outcome`] (for halts and reversible runs).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reactor::{step, ConcurrencyPool, Inputs, Reactor};
///
/// # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
/// let reactor = Reactor::builder("one")
///     .add(step("a").run_sync(|_, _| Ok(1_i64)))
///     .returns("a")
///     .build()?;
/// let pool = ConcurrencyPool::new(4);
/// let value = reactor
///     .run(Inputs::new())
///     .max_concurrency(4)
///     .pool(pool)
///     .timeout(Duration::from_secs(5))
///     .await?;
/// assert_eq!(*value.get::<i64>()?, 1);
/// # Ok(()) }
/// ```
#[must_use = "a run does nothing until awaited"]
pub struct RunRequest {
    reactor: Reactor,
    inputs: ValueMap,
    resume: Option<RunState>,
    max_concurrency: Option<usize>,
    run_async: bool,
    timeout: Option<Duration>,
    max_iterations: Option<u64>,
    halt_timeout: Duration,
    pool: Option<ConcurrencyPool>,
    run_id: Option<String>,
    fully_reversible: bool,
    context: ValueMap,
    middleware: Vec<Arc<dyn Middleware>>,
}

impl RunRequest {
    pub(crate) fn new(reactor: Reactor, inputs: ValueMap, resume: Option<RunState>) -> RunRequest {
        RunRequest {
            reactor,
            inputs,
            resume,
            max_concurrency: None,
            run_async: true,
            timeout: None,
            max_iterations: None,
            halt_timeout: DEFAULT_HALT_TIMEOUT,
            pool: None,
            run_id: None,
            fully_reversible: false,
            context: ValueMap::new(),
            middleware: Vec::new(),
        }
    }

    /// At most `n` steps of this run at once (default: available cores).
    pub fn max_concurrency(mut self, n: usize) -> RunRequest {
        self.max_concurrency = Some(n);
        self
    }

    /// `false` runs every step one at a time in the caller's task.
    pub fn run_async(mut self, run_async: bool) -> RunRequest {
        self.run_async = run_async;
        self
    }

    /// Halts the run once this much time has passed (running steps are not
    /// interrupted; they are awaited up to the halt timeout).
    pub fn timeout(mut self, timeout: Duration) -> RunRequest {
        self.timeout = Some(timeout);
        self
    }

    /// Halts the run after this many loop iterations.
    pub fn max_iterations(mut self, n: u64) -> RunRequest {
        self.max_iterations = Some(n);
        self
    }

    /// How long a halting or failing run waits for running steps (default 5 s).
    pub fn halt_timeout(mut self, timeout: Duration) -> RunRequest {
        self.halt_timeout = timeout;
        self
    }

    /// Shares `pool` with other runs instead of allocating one.
    pub fn pool(mut self, pool: ConcurrencyPool) -> RunRequest {
        self.pool = Some(pool);
        self
    }

    /// Sets the run id (default: a fresh UUID; a resumed run keeps its own).
    pub fn run_id(mut self, id: impl Into<String>) -> RunRequest {
        self.run_id = Some(id.into());
        self
    }

    /// Keeps the undo stack of a successful run so it can be undone later
    /// ([`CompletedRun::undo`]).
    pub fn fully_reversible(mut self) -> RunRequest {
        self.fully_reversible = true;
        self
    }

    /// Adds a context value that every step sees.
    pub fn context(
        mut self,
        key: impl Into<String>,
        value: impl Send + Sync + 'static,
    ) -> RunRequest {
        self.context.insert(key.into(), Value::new(value));
        self
    }

    /// Attaches middleware to this run.
    pub fn middleware(mut self, middleware: Arc<dyn Middleware>) -> RunRequest {
        self.middleware.push(middleware);
        self
    }

    /// Runs to the end and returns the full outcome.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the run: its running steps are cancelled
    /// and nothing is undone.
    pub async fn outcome(self) -> Result<RunOutcome, Error> {
        self.execute(true).await
    }

    async fn execute(self, keep_state: bool) -> Result<RunOutcome, Error> {
        let reactor = self.reactor.clone();
        let fully_reversible = self.fully_reversible;
        let run_async = self.run_async;
        let (coordinator, span) = self.into_coordinator(keep_state || fully_reversible)?;
        let finish = if run_async {
            let task = AbortOnDrop(tokio::spawn(coordinator.drive().instrument(span)));
            match (&mut *Box::pin(task)).await {
                Ok(finish) => finish,
                Err(e) if e.is_panic() => {
                    panic!(
                        "the reactor coordinator panicked: {}",
                        panic_message(&*e.into_panic())
                    )
                }
                Err(_) => unreachable!("the coordinator task is only aborted when dropped"),
            }
        } else {
            coordinator.drive().instrument(span).await
        };
        match finish {
            Finish::Completed { value, state } => Ok(RunOutcome::Completed(CompletedRun {
                value,
                reactor,
                state,
                reversible: fully_reversible,
            })),
            Finish::Halted { state } => Ok(RunOutcome::Halted(HaltedRun { reactor, state })),
            Finish::Failed(error) => Err(Error::Run(error)),
        }
    }

    fn into_coordinator(
        self,
        keep_state: bool,
    ) -> Result<(Box<Coordinator>, tracing::Span), Error> {
        let plan = self.reactor.plan().clone();
        let mut state = self.resume.unwrap_or_default();
        let resumed = !state.run_id.is_empty();
        let mut inputs = self.inputs;
        if resumed {
            // Stored inputs, overridden by any given again.
            let mut merged = std::mem::take(&mut state.inputs);
            merged.append(&mut inputs);
            inputs = merged;
        }
        let missing: Vec<String> = plan
            .inputs
            .iter()
            .filter(|i| !inputs.contains_key(&*i.name))
            .map(|i| i.name.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(Error::MissingInputs { inputs: missing });
        }
        inputs.retain(|k, _| plan.input_index.contains_key(k.as_str()));
        let mut values = Vec::with_capacity(plan.inputs.len());
        for def in &plan.inputs {
            let raw = inputs[&*def.name].clone();
            let value = match &def.transform {
                None => raw,
                Some(t) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t(&raw)))
                {
                    Ok(Ok(v)) => v,
                    Ok(Err(e)) => {
                        return Err(Error::InputTransform {
                            input: def.name.to_string(),
                            reason: Reason::from(e),
                        })
                    }
                    Err(p) => {
                        return Err(Error::InputTransform {
                            input: def.name.to_string(),
                            reason: Reason::msg(format!("panicked: {}", panic_message(&*p))),
                        })
                    }
                },
            };
            values.push(value);
        }
        let max_concurrency = self.max_concurrency.unwrap_or_else(available_cores);
        if max_concurrency == 0 && self.run_async {
            return Err(Error::InvalidOption {
                option: "max_concurrency",
                message: "an async run needs at least 1".to_string(),
            });
        }
        let pool = self
            .pool
            .unwrap_or_else(|| ConcurrencyPool::new(max_concurrency));
        let run_id: Name = if resumed {
            std::mem::take(&mut state.run_id).into()
        } else {
            self.run_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
                .into()
        };
        let mut context = std::mem::take(&mut state.context);
        context.extend(self.context);
        let mut middleware = plan.middleware.clone();
        middleware.extend(self.middleware);
        let span = tracing::info_span!("reactor.run", reactor = %plan.name, run_id = %run_id);
        let scope = Arc::new(RunScope {
            plan: plan.clone(),
            run_id,
            values: context,
            pool: pool.held_by_step(),
            slots: pool,
            async_run: self.run_async,
            events: Emitter::new(middleware),
        });
        state.inputs = inputs;
        let settings = Settings {
            run_async: self.run_async,
            max_concurrency: max_concurrency.max(1),
            timeout: self.timeout,
            max_iterations: self.max_iterations,
            halt_timeout: self.halt_timeout,
            resumed,
            keep_state,
        };
        let coordinator = Coordinator::new(plan, scope, settings, values, state, span.clone())?;
        Ok((coordinator, span))
    }
}

impl IntoFuture for RunRequest {
    type Output = Result<Value, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Value, Error>> + Send>>;

    /// Runs to the end: the result, or [`Error::Halted`] carrying the halted
    /// run, or the run's error.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            match self.execute(false).await? {
                RunOutcome::Completed(done) => Ok(done.value),
                RunOutcome::Halted(halted) => Err(Error::Halted(Box::new(halted))),
            }
        })
    }
}

/// The number of cores, asked once (the question costs system calls).
fn available_cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// How a run ended, when it did not fail.
#[derive(Debug)]
pub enum RunOutcome {
    /// The run succeeded.
    Completed(CompletedRun),
    /// The run halted and can be resumed.
    Halted(HaltedRun),
}

impl RunOutcome {
    /// The completed run, if it completed.
    pub fn completed(self) -> Option<CompletedRun> {
        match self {
            RunOutcome::Completed(c) => Some(c),
            RunOutcome::Halted(_) => None,
        }
    }

    /// The halted run, if it halted.
    pub fn halted(self) -> Option<HaltedRun> {
        match self {
            RunOutcome::Halted(h) => Some(h),
            RunOutcome::Completed(_) => None,
        }
    }
}

/// A successful run.
pub struct CompletedRun {
    value: Value,
    reactor: Reactor,
    state: RunState,
    reversible: bool,
}

impl std::fmt::Debug for CompletedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletedRun")
            .field("value", &self.value)
            .field("run_id", &self.state.run_id)
            .field("reversible", &self.reversible)
            .finish()
    }
}

impl CompletedRun {
    /// The result.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The result, by value.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// The run's final state.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// Undoes the whole run, newest step first. Only for runs started with
    /// [`RunRequest::fully_reversible`]. Every undo is attempted; all errors
    /// are reported together.
    pub async fn undo(self) -> Result<(), Error> {
        if !self.reversible {
            return Err(Error::State {
                run_id: self.state.run_id,
                message: "it was not started with `fully_reversible`".to_string(),
            });
        }
        undo_state(&self.reactor, self.state).await
    }
}

async fn undo_state(reactor: &Reactor, state: RunState) -> Result<(), Error> {
    let plan = reactor.plan();
    // Undo runs one step at a time, outside any shared pool.
    let pool = ConcurrencyPool::new(1);
    let scope = Arc::new(RunScope {
        plan: plan.clone(),
        run_id: state.run_id.clone().into(),
        values: state.context.clone(),
        pool: pool.held_by_step(),
        slots: pool,
        async_run: false,
        events: Emitter::new(plan.middleware.clone()),
    });
    let mut errors = Vec::new();
    for record in state.undo_stack.into_iter().rev() {
        let spec = state
            .emitted
            .iter()
            .find(|s| s.name() == record.step)
            .cloned()
            .or_else(|| {
                plan.step_named(&record.step)
                    .map(|i| plan.steps[i].spec.clone())
            });
        let Some(spec) = spec else { continue };
        let step = match spec.resolve() {
            Ok(step) => step,
            Err(_) => continue,
        };
        let ctx = Context {
            run: scope.clone(),
            step: crate::context::StepRef::Emitted(spec),
            current_try: 0,
            retries_remaining: None,
            events: scope.events.is_active(),
        };
        let undo = runner::undo(step, record.value, record.arguments, ctx);
        if let Err(e) = undo.await {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Run(RunError {
            run_id: state.run_id,
            errors,
        }))
    }
}

/// A halted run: resume it with [`HaltedRun::resume`].
pub struct HaltedRun {
    reactor: Reactor,
    state: RunState,
}

impl std::fmt::Debug for HaltedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaltedRun")
            .field("reactor", &self.reactor.name())
            .field("state", &self.state)
            .finish()
    }
}

impl HaltedRun {
    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.state.run_id
    }

    /// The halted run's state.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// The state, by value (for example to store it).
    pub fn into_state(self) -> RunState {
        self.state
    }

    /// A kept result.
    pub fn result(&self, step: &str) -> Option<&Value> {
        self.state.results.get(step)
    }

    /// The steps of the definition and emitted steps still to complete.
    pub fn pending_steps(&self) -> Vec<String> {
        let plan = self.reactor.plan();
        plan.steps
            .iter()
            .map(|s| s.spec.name().to_string())
            .chain(self.state.emitted.iter().map(|s| s.name().to_string()))
            .filter(|n| !self.state.is_completed(n))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Resumes the run with its stored inputs and results; completed steps
    /// do not run again.
    pub fn resume(self) -> RunRequest {
        RunRequest::new(self.reactor, ValueMap::new(), Some(self.state))
    }
}
