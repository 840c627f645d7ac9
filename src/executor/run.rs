//! Starting runs ([`RunRequest`]) and what they return ([`RunOutcome`]).

use super::nested_journal::{journal_nested, nested_id, NestedJournals};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::coordinator::{Coordinator, Finish, Settings};
use super::nesting::{self, Inherited, Live, Tracker, MAX_NESTING, STACK_HOP};
use super::state::{Recovered, RunState};
use super::undo::UndoStack;
use crate::context::RunScope;
use crate::error::{panic_message, Error, Reason};
use crate::middleware::{Emitter, Middleware, RunInfo};
use crate::name::Name;
use crate::planner::Plan;
use crate::pool::adaptive::Concurrency;
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
    pub(super) reactor: Reactor,
    pub(super) inputs: ValueMap,
    pub(super) resume: Option<RunState>,
    max_concurrency: Option<usize>,
    /// [`Concurrency::Auto`]: awaiting steps under an adaptive limit.
    adaptive: bool,
    run_async: bool,
    timeout: Option<Duration>,
    max_iterations: Option<u64>,
    halt_timeout: Duration,
    pool: Option<ConcurrencyPool>,
    /// A pool was given with [`RunRequest::pool`].
    pool_given: bool,
    pub(super) run_id: Option<String>,
    pub(super) fully_reversible: bool,
    context: ValueMap,
    middleware: Vec<Arc<dyn Middleware>>,
    /// The run this one is part of ([`RunRequest::within`]).
    within: Option<Within>,
    /// The span of the run this one resumes.
    follows: Option<tracing::Id>,
    /// Set by the durable runtime.
    durable: Option<Durable>,
}

/// What a run nested with [`RunRequest::within`] takes from its parent.
struct Within {
    run_id: Name,
    span: tracing::Span,
    middleware: Vec<Arc<dyn Middleware>>,
    /// The outer run holds its awaiting steps to no limit.
    awaiting_unbounded: bool,
    /// The outer run is durable: so is this one.
    child: Option<ChildOf>,
}

/// A durable run's step that a nested run is started in.
struct ChildOf {
    nested: Arc<dyn NestedJournals>,
    journal: Arc<crate::journal::RunJournal>,
    step: String,
    attempt: u32,
    /// Its place among the runs of the attempt, if its step names it (a
    /// map's element `i` is `e{i}`); else the order the runs started in.
    place: Option<String>,
}

impl RunRequest {
    pub(crate) fn new(reactor: Reactor, inputs: ValueMap, resume: Option<RunState>) -> RunRequest {
        RunRequest {
            reactor,
            inputs,
            resume,
            max_concurrency: None,
            adaptive: false,
            run_async: true,
            timeout: None,
            max_iterations: None,
            halt_timeout: DEFAULT_HALT_TIMEOUT,
            pool: None,
            pool_given: false,
            run_id: None,
            fully_reversible: false,
            context: ValueMap::new(),
            middleware: Vec::new(),
            within: None,
            follows: None,
            durable: None,
        }
    }

    /// At most `n` steps of this run at once; 0 is refused for an async
    /// run.
    ///
    /// Without it, a run given a pool may use all of the pool's slots; a
    /// run given neither holds its CPU work (plain `run_sync` closures and
    /// `cpu_bound` steps) to the available cores, and runs its awaiting
    /// steps (async closures, `Step` impls, the ready-made kinds) without
    /// a slot, as they wait rather than compute: up to 10,000 of them at
    /// once, so that a fan-out of millions does not hold a task for each. A run nested with
    /// [`RunRequest::within`] follows its outer run.
    pub fn max_concurrency(mut self, n: usize) -> RunRequest {
        self.max_concurrency = Some(n);
        self.adaptive = false;
        self
    }

    /// How many steps may run at once: a [`Concurrency::Limit`] as
    /// [`RunRequest::max_concurrency`], or [`Concurrency::Auto`]: CPU work
    /// on the cores, awaiting steps under a limit that adapts to their
    /// latency, reported by
    /// [`EventKind::ConcurrencyLimit`](crate::EventKind::ConcurrencyLimit)
    /// events. The last of `concurrency` and `max_concurrency` called
    /// wins. A pool given, or an outer run ([`RunRequest::within`]) with a
    /// limit or a pool, still holds every step: the adaptive limit only
    /// governs what would otherwise be unheld. It counts this run's own
    /// awaiting steps (a composed reactor's steps are not under it), and
    /// starts at 10, so steps that can only finish together (more than 10
    /// waiting for each other) never do under it. A map's elements are
    /// held by its batch size, not by the adaptive limit.
    ///
    /// ```
    /// use reactor::{step, Concurrency, Inputs, Reactor};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
    /// let reactor = Reactor::builder("calls")
    ///     .add(step("call").run(|_, _| async { Ok(1_u8) }))
    ///     .returns("call")
    ///     .build()?;
    /// reactor.run(Inputs::new()).concurrency(Concurrency::Auto).await?;
    /// # Ok(()) }
    /// ```
    pub fn concurrency(mut self, concurrency: impl Into<Concurrency>) -> RunRequest {
        match concurrency.into() {
            Concurrency::Limit(n) => {
                self.max_concurrency = Some(n);
                self.adaptive = false;
            }
            Concurrency::Auto => {
                self.max_concurrency = None;
                self.adaptive = true;
            }
        }
        self
    }

    /// `false` runs every step one at a time in the caller's task.
    pub fn run_async(mut self, run_async: bool) -> RunRequest {
        self.run_async = run_async;
        self
    }

    /// Halts the run once this much time has passed: running steps are
    /// awaited up to the halt timeout, then cancelled (they run again on
    /// resume). Any `Duration` works: one too long to represent never ends.
    pub fn timeout(mut self, timeout: Duration) -> RunRequest {
        self.timeout = Some(timeout);
        self
    }

    /// Halts the run after this many loop iterations.
    pub fn max_iterations(mut self, n: u64) -> RunRequest {
        self.max_iterations = Some(n);
        self
    }

    /// How long a halting or failing run waits for running steps before it
    /// cancels them (default 5 s). A failing run undoes a cancelled step
    /// that can undo as if it had completed (its undo receives
    /// [`Unfinished`](crate::Unfinished)).
    pub fn halt_timeout(mut self, timeout: Duration) -> RunRequest {
        self.halt_timeout = timeout;
        self
    }

    /// Shares `pool` with other runs instead of allocating one. The run may
    /// use all of its slots, unless [`RunRequest::max_concurrency`] says
    /// less. A pool of 0 slots is refused.
    pub fn pool(mut self, pool: ConcurrencyPool) -> RunRequest {
        self.pool = Some(pool);
        self.pool_given = true;
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

    /// Runs this reactor as part of the step whose context `ctx` is (a
    /// reactor run inside a step): it shares that run's pool (the step's
    /// slot is lent to it), sees its context values (its own win) and its
    /// middleware, which see its events and hooks with the outer run as
    /// [`RunInfo::parent_run`](crate::RunInfo::parent_run), and its
    /// `tracing` span is a child of the outer run's. Compose, recurse,
    /// group and around run their reactors this way.
    ///
    /// ```
    /// use reactor::{step, Inputs, Reactor};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
    /// let inner = Reactor::builder("inner")
    ///     .add(step("hi").run_sync(|_, ctx| Ok(ctx.get::<&str>("who").copied().unwrap_or("?"))))
    ///     .returns("hi")
    ///     .build()?;
    /// let outer = Reactor::builder("outer")
    ///     .add(step("call").run(move |_, ctx| {
    ///         let inner = inner.clone();
    ///         async move { Ok(*inner.run(Inputs::new()).within(&ctx).await?.get::<&str>()?) }
    ///     }))
    ///     .returns("call")
    ///     .build()?;
    /// let out = outer.run(Inputs::new()).context("who", "Marty").await?;
    /// assert_eq!(*out.get::<&str>()?, "Marty");
    /// # Ok(()) }
    /// ```
    pub fn within(mut self, ctx: &crate::Context) -> RunRequest {
        let outer = &ctx.run;
        self.pool = Some(outer.pool.clone());
        for (key, value) in &outer.values {
            self.context
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        self.within = Some(Within {
            run_id: outer.run_id.clone(),
            span: outer.span.clone(),
            middleware: outer.events.middleware().to_vec(),
            awaiting_unbounded: outer.awaiting_unbounded,
            child: match (&outer.nested, &outer.journal) {
                (Some(nested), Some(journal)) if !ctx.undoing => Some(ChildOf {
                    nested: nested.clone(),
                    journal: journal.clone(),
                    step: ctx.step_name().to_string(),
                    attempt: ctx.current_try() + 1,
                    place: None,
                }),
                _ => None,
            },
        });
        self
    }

    /// Runs to the end and returns the full outcome.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the run: its running steps are cancelled
    /// (CPU-bound ones at their next await) and nothing is undone. A run
    /// that ends by itself (success, failure, halt, timeout) returns only
    /// once every step it started, in it or in runs nested in it, has
    /// stopped.
    pub async fn outcome(self) -> Result<RunOutcome, Error> {
        self.execute(true).await
    }

    async fn execute(mut self, keep_state: bool) -> Result<RunOutcome, Error> {
        if self.durable.is_none() {
            if let Some(child) = self.within.as_mut().and_then(|w| w.child.take()) {
                let place = child.place.clone().unwrap_or_else(|| {
                    child
                        .journal
                        .next_child(&child.step, child.attempt)
                        .to_string()
                });
                let parent = self.within.as_ref().map_or("", |w| &*w.run_id);
                let step = child.journal.nested_name(&child.step);
                let id = nested_id(parent, &step, child.attempt, &place);
                // Boxed: every run's future would otherwise carry its
                // state, and nested sync runs stack their futures.
                self = Box::pin(journal_nested(&child.nested, id, self)).await?;
            }
        }
        let reactor = self.reactor.clone();
        let fully_reversible = self.fully_reversible;
        let mut prepared = self.prepare(keep_state || fully_reversible)?;
        let info = RunInfo {
            run_id: &prepared.run_id,
            reactor: &prepared.plan.name,
            resumed: prepared.resumed,
            parent_run: prepared.events.parent_run(),
        };
        if let Err(reason) = prepared.events.init(info, &mut prepared.context).await {
            return Err(Error::Refused {
                run_id: prepared.run_id.to_string(),
                reason: Reason::msg(reason),
            });
        }
        let started = prepared.start()?;
        match started.drive().await {
            Finish::Completed {
                value,
                state,
                mut undo,
            } => {
                if !fully_reversible {
                    // Not to be undone later: nothing is kept for it.
                    undo.release();
                }
                Ok(RunOutcome::Completed(CompletedRun {
                    value,
                    state,
                    undo: fully_reversible.then_some(undo),
                }))
            }
            Finish::Halted { state, undo, span } => Ok(RunOutcome::Halted(HaltedRun {
                reactor,
                state,
                undo,
                span,
            })),
            Finish::Failed(error, _) => Err(Error::Run(error)),
        }
    }

    /// In a durable run, names this nested run's place among the runs of
    /// its step's attempt (see [`nested_id`]), instead of the order the
    /// runs start in: a map's elements start concurrently.
    pub(crate) fn nested_place(mut self, place: String) -> RunRequest {
        if let Some(child) = self.within.as_mut().and_then(|w| w.child.as_mut()) {
            child.place = Some(place);
        }
        self
    }

    /// Makes the run durable: it writes `journal` (the durable runtime's
    /// business, see [`crate::durable`]).
    pub(crate) fn journalled(mut self, durable: Durable) -> RunRequest {
        self.durable = Some(durable);
        self
    }

    /// Checks the request and gathers what the run needs, up to its
    /// `init` hooks.
    fn prepare(self, keep_state: bool) -> Result<Prepared, Error> {
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
        check_inputs(&plan, &mut inputs)?;
        let values = transformed_inputs(&plan, &inputs)?;
        if self.pool.as_ref().is_some_and(|p| p.limit() == 0) {
            return Err(Error::InvalidOption {
                option: "pool",
                message: "a pool of 0 slots can never run a step".to_string(),
            });
        }
        // A run given a pool may use all of its slots, unless told less.
        let max_concurrency = self.max_concurrency.unwrap_or_else(|| {
            self.pool
                .as_ref()
                .map_or_else(available_cores, ConcurrencyPool::limit)
        });
        if max_concurrency == 0 && self.run_async {
            return Err(Error::InvalidOption {
                option: "max_concurrency",
                message: "an async run needs at least 1".to_string(),
            });
        }
        // Awaiting steps are held to no limit (or to the adaptive one)
        // only where nothing else holds them: a limit, a pool or an outer
        // run with either holds every step.
        let awaiting_unbounded = self.max_concurrency.is_none()
            && !self.pool_given
            && self.within.as_ref().is_none_or(|w| w.awaiting_unbounded);
        let adaptive = self.adaptive && awaiting_unbounded;
        let pool = self
            .pool
            .unwrap_or_else(|| ConcurrencyPool::new(max_concurrency.max(1)));
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
        let (parent_run, parent_span) = match self.within {
            Some(w) => {
                middleware.extend(w.middleware);
                (Some(w.run_id), Some(w.span))
            }
            None => (None, None),
        };
        middleware.extend(self.middleware);
        let span = match &parent_span {
            Some(parent) => {
                tracing::info_span!(parent: parent, "reactor.run", reactor = %plan.name, run_id = %run_id, outcome = tracing::field::Empty)
            }
            None => {
                tracing::info_span!("reactor.run", reactor = %plan.name, run_id = %run_id, outcome = tracing::field::Empty)
            }
        };
        if let Some(halted) = self.follows {
            span.follows_from(halted);
        }
        state.inputs = inputs;
        Ok(Prepared {
            plan,
            state,
            values,
            resumed,
            pool,
            run_id,
            context,
            events: Emitter::new(middleware, parent_run),
            span,
            run_async: self.run_async,
            max_concurrency: max_concurrency.max(1),
            awaiting_unbounded,
            adaptive,
            timeout: self.timeout,
            max_iterations: self.max_iterations,
            halt_timeout: self.halt_timeout,
            keep_state,
            durable: self.durable,
        })
    }
}

/// A run request checked and gathered, its `init` hooks still to run.
struct Prepared {
    plan: Arc<Plan>,
    state: RunState,
    values: Vec<Value>,
    resumed: bool,
    pool: ConcurrencyPool,
    run_id: Name,
    context: ValueMap,
    events: Emitter,
    span: tracing::Span,
    run_async: bool,
    max_concurrency: usize,
    awaiting_unbounded: bool,
    adaptive: bool,
    timeout: Option<Duration>,
    max_iterations: Option<u64>,
    halt_timeout: Duration,
    keep_state: bool,
    durable: Option<Durable>,
}

/// What makes a run durable: its journal, and what its journal said
/// when it was taken up again.
pub(crate) struct Durable {
    pub(crate) journal: Arc<crate::journal::RunJournal>,
    pub(crate) recovered: Option<Recovered>,
    pub(crate) cancel: Option<tokio_util::sync::CancellationToken>,
    /// The step kinds its emitted steps are journalled by.
    pub(crate) steps: crate::durable::StepRegistry,
    /// Where the runs nested in its steps get their journals.
    pub(crate) nested: Arc<dyn NestedJournals>,
}

impl Prepared {
    /// The run, ready to be driven.
    fn start(self) -> Result<Started, Error> {
        let placed = Placement::new(&self.pool, self.run_async)?;
        let scope = placed.scope(RunScope {
            plan: self.plan.clone(),
            run_id: self.run_id,
            values: self.context,
            pool: self.pool,
            lender: None,
            async_run: self.run_async,
            max_concurrency: self.max_concurrency,
            awaiting_unbounded: self.awaiting_unbounded,
            halt_timeout: self.halt_timeout,
            events: self.events,
            span: self.span.clone(),
            tracker: Tracker::new(None),
            depth: 0,
            stacked: 0,
            orphans: Default::default(),
            journal: self.durable.as_ref().map(|d| d.journal.clone()),
            nested: self.durable.as_ref().map(|d| d.nested.clone()),
        });
        let settings = Settings {
            run_async: self.run_async,
            max_concurrency: self.max_concurrency,
            awaiting_unbounded: self.awaiting_unbounded,
            adaptive: self.adaptive,
            timeout: self.timeout,
            max_iterations: self.max_iterations,
            halt_timeout: self.halt_timeout,
            resumed: self.resumed,
            keep_state: self.keep_state,
            cancel: self.durable.as_ref().and_then(|d| d.cancel.clone()),
            steps: self.durable.as_ref().map(|d| d.steps.clone()),
            recovered: self.durable.and_then(|d| d.recovered).map(Box::new),
        };
        let coordinator = Coordinator::new(
            self.plan,
            scope,
            settings,
            self.values,
            self.state,
            None,
            self.span.clone(),
        )?;
        Ok(Started {
            coordinator,
            span: self.span,
            placed,
        })
    }
}

/// Checks a run's inputs against its plan: every declared input is
/// given (an error names those missing), inputs declared with a type
/// have it (an error names the input and both types); inputs the plan
/// does not declare are dropped.
pub(crate) fn check_inputs(plan: &Plan, inputs: &mut ValueMap) -> Result<(), Error> {
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
    for def in &plan.inputs {
        let given = &inputs[&*def.name];
        if let Some(codec) = def.codec.as_ref().filter(|c| !c.fits(given)) {
            return Err(Error::InputType {
                input: def.name.to_string(),
                expected: codec.type_name(),
                actual: given.type_name(),
            });
        }
    }
    Ok(())
}

/// The inputs after their transforms, in declaration order.
fn transformed_inputs(plan: &Plan, inputs: &ValueMap) -> Result<Vec<Value>, Error> {
    let mut values = Vec::with_capacity(plan.inputs.len());
    for def in &plan.inputs {
        let raw = inputs[&*def.name].clone();
        let value = match &def.transform {
            None => raw,
            Some(t) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t(&raw))) {
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
    Ok(values)
}

/// Where a run is driven, and what it inherits from the attempt it was
/// started in: a run nested in a step holding a slot of its pool may use
/// that slot, and its tasks count towards the step's run.
pub(crate) struct Placement {
    inherited: Inherited,
    /// Whether the run's loop gets a task of its own (async runs nested in
    /// a step, and every few levels of nested `run_async(false)` runs, so
    /// that nesting is not bounded by the caller's stack).
    own_task: bool,
}

impl Placement {
    pub(crate) fn new(pool: &ConcurrencyPool, run_async: bool) -> Result<Placement, Error> {
        let inherited = nesting::inherited(pool);
        if inherited.depth > MAX_NESTING {
            return Err(Error::NestingTooDeep {
                depth: inherited.depth,
                limit: MAX_NESTING,
            });
        }
        // A run started outside any step is driven in the task awaiting
        // it (a task hand-off per run saved); a nested async run gets a
        // task of its own, so that its loop neither deepens its step's
        // polls nor waits on them.
        let nested = inherited.parent.is_some();
        let own_task = (run_async && nested) || inherited.stacked >= STACK_HOP;
        Ok(Placement {
            inherited,
            own_task,
        })
    }

    /// `scope` with what the run inherits.
    pub(crate) fn scope(&self, mut scope: RunScope) -> Arc<RunScope> {
        scope.lender = self.inherited.lender.clone();
        scope.tracker = Tracker::new(self.inherited.parent.as_ref().map(|p| p.tracker.clone()));
        scope.depth = self.inherited.depth;
        scope.stacked = if self.own_task {
            0
        } else {
            self.inherited.stacked
        };
        Arc::new(scope)
    }
}

/// A run ready to be driven.
pub(crate) struct Started {
    pub(crate) coordinator: Box<Coordinator>,
    pub(crate) span: tracing::Span,
    pub(crate) placed: Placement,
}

impl Started {
    /// Drives the run to its end, in a task of its own if placed so.
    pub(crate) async fn drive(mut self) -> Finish {
        let parent = self.placed.inherited.parent.take();
        self.coordinator.nested_in(parent.clone());
        let fut = self.coordinator.drive().instrument(self.span);
        if !self.placed.own_task {
            return fut.await;
        }
        // The loop's task counts towards the run the new run is nested in
        // (until the loop, and what it owns, is dropped).
        let live = parent.as_ref().map(|p| p.tracker.enter());
        let task = AbortOnDrop(tokio::spawn(Counted {
            fut: Box::pin(fut),
            _live: live,
        }));
        match task.await {
            Ok(finish) => finish,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => unreachable!("the coordinator task is only aborted when dropped"),
        }
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

/// A future counted by a tracker until it is dropped (fields drop in
/// order: the future first).
struct Counted<F> {
    fut: Pin<Box<F>>,
    _live: Option<Live>,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.fut.as_mut().poll(cx)
    }
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
    state: RunState,
    /// The undo stack, kept when the run is fully reversible.
    undo: Option<UndoStack>,
}

impl std::fmt::Debug for CompletedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletedRun")
            .field("value", &self.value)
            .field("run_id", &self.state.run_id)
            .field("reversible", &self.undo.is_some())
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

    /// Whether undoing the run has anything to do.
    pub(crate) fn has_undo(&self) -> bool {
        self.undo.as_ref().is_some_and(|u| !u.is_empty())
    }

    /// Undoes the whole run, newest step first. Only for runs started with
    /// [`RunRequest::fully_reversible`]. Every undo is attempted; all errors
    /// are reported together.
    pub async fn undo(self) -> Result<(), Error> {
        let Some(mut undo) = self.undo else {
            return Err(Error::State {
                run_id: self.state.run_id,
                message: "it was not started with `fully_reversible`".to_string(),
            });
        };
        undo.undo_run(&self.state.run_id).await
    }
}

/// A halted run: resume it with [`HaltedRun::resume`], or undo what it
/// did with [`HaltedRun::undo`].
pub struct HaltedRun {
    reactor: Reactor,
    state: RunState,
    undo: UndoStack,
    /// The halted run's span, which the resumed run's follows from.
    span: Option<tracing::Id>,
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

    /// The state, by value (for example to store it): whoever holds it
    /// answers for resuming or undoing the run.
    pub fn into_state(mut self) -> RunState {
        self.undo.release();
        std::mem::take(&mut self.state)
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

    /// Undoes every completed undoable step of the run, newest first,
    /// instead of resuming it. Every undo is attempted; all errors are
    /// reported together.
    pub async fn undo(mut self) -> Result<(), Error> {
        self.undo.undo_run(&self.state.run_id).await
    }

    /// Resumes the run with its stored inputs and results; completed steps
    /// do not run again. Run options (concurrency, pool, timeouts,
    /// middleware) are not part of the state: set them again on the
    /// returned request, or it runs with the defaults.
    pub fn resume(self) -> RunRequest {
        let reactor = self.reactor.clone();
        let span = self.span.clone();
        let mut request = RunRequest::new(reactor, ValueMap::new(), Some(self.into_state()));
        request.follows = span;
        request
    }
}
