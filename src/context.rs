//! The context a step runs in: run id, attempt, retry budget, user context
//! and the concurrency pool to share with nested runs.

use std::sync::Arc;

use crate::event::EventKind;
use crate::executor::nesting::Tracker;
use crate::middleware::{Emitter, HookPanic};
use crate::name::Name;
use crate::planner::Plan;
use crate::pool::{ConcurrencyPool, Lender};
use crate::step::StepSpec;
use crate::value::{Value, ValueMap};

/// What a run shares with all of its steps (aligned to a cache line, like
/// the plan, to keep its fields off the line of the `Arc`'s counts).
#[repr(align(64))]
pub(crate) struct RunScope {
    pub(crate) plan: Arc<Plan>,
    pub(crate) run_id: Name,
    pub(crate) values: ValueMap,
    /// The pool the run takes slots from.
    pub(crate) pool: ConcurrencyPool,
    /// The slot lent to this run by the step it is nested in, if any.
    pub(crate) lender: Option<Lender>,
    pub(crate) async_run: bool,
    /// The run's limit of steps running at once.
    pub(crate) max_concurrency: usize,
    /// Awaiting steps are held to no limit (no pool or limit was given).
    pub(crate) awaiting_unbounded: bool,
    /// How long the run waits for running steps when it stops.
    pub(crate) halt_timeout: std::time::Duration,
    pub(crate) events: Emitter,
    /// The run's `tracing` span.
    pub(crate) span: tracing::Span,
    /// Counts the run's tasks and those of runs nested in them.
    pub(crate) tracker: Arc<Tracker>,
    /// How deeply the run is nested (0: started outside any step).
    pub(crate) depth: u32,
    /// How many `run_async(false)` runs are stacked on the task driving it.
    pub(crate) stacked: u32,
    /// The undo stacks of runs nested in this run's steps that were dropped
    /// before they ended: the run undoes them with its own.
    pub(crate) orphans: std::sync::Mutex<Vec<crate::executor::UndoStack>>,
    /// The run's journal, if it is durable.
    pub(crate) journal: Option<Arc<crate::journal::RunJournal>>,
    /// Where the runs nested in a durable run's steps get their journals.
    pub(crate) nested: Option<Arc<dyn crate::executor::NestedJournals>>,
}

impl RunScope {
    /// Emits an event of the run (or of `step`) to its middleware.
    pub(crate) fn emit<'k>(
        &self,
        step: Option<&str>,
        kind: impl FnOnce() -> EventKind<'k>,
    ) -> Result<(), HookPanic> {
        self.events
            .emit(&self.run_id, &self.plan.name, &self.pool, step, kind)
    }
}

/// The context of one step attempt.
///
/// # Examples
///
/// ```
/// use reactor::{step, Reactor};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), reactor::Error> {
/// let reactor = Reactor::builder("ctx")
///     .add(step("who").run_sync(|_args, ctx| {
///         Ok(format!("{} try {}", ctx.step_name(), ctx.current_try()))
///     }))
///     .returns("who")
///     .build()?;
/// let out = reactor.run(reactor::Inputs::new()).await?;
/// assert_eq!(out.get::<String>()?, "who try 0");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Context {
    pub(crate) run: Arc<RunScope>,
    pub(crate) step: StepRef,
    pub(crate) current_try: u32,
    pub(crate) retries_remaining: Option<u32>,
    /// How long the step waited, ready, before this attempt started, in
    /// microseconds (measured only when middleware listens).
    pub(crate) queued_us: u32,
    /// Whether any middleware listens: copied here so that a step running
    /// on another thread need not read the run's shared state to know.
    pub(crate) events: bool,
    /// The context is an undo's: runs nested in it are not journalled
    /// (undo runs at least once anyway), so they take no nested run id.
    pub(crate) undoing: bool,
}

/// Which step a context is for: one of the plan's (no reference count to
/// touch) or one emitted at run time.
#[derive(Clone)]
pub(crate) enum StepRef {
    Planned(usize),
    Emitted(StepSpec),
}

impl Context {
    /// Emits an event of this step to the run's middleware.
    pub(crate) fn emit<'k>(&self, kind: impl FnOnce() -> EventKind<'k>) -> Result<(), HookPanic> {
        self.run.emit(Some(self.step_name()), kind)
    }

    pub(crate) fn spec(&self) -> &StepSpec {
        match &self.step {
            StepRef::Planned(i) => &self.run.plan.steps[*i].spec,
            StepRef::Emitted(spec) => spec,
        }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run.run_id
    }

    /// The reactor's name.
    pub fn reactor_name(&self) -> &str {
        &self.run.plan.name
    }

    /// The current step's name.
    pub fn step_name(&self) -> &str {
        self.spec().name()
    }

    /// The current step's definition: emit it again (`Outcome::OkWithSteps`)
    /// to run the step once more, for example to poll an external resource.
    pub fn current_step(&self) -> StepSpec {
        self.spec().clone()
    }

    /// How many retries this step has already made: 0 on the first attempt.
    pub fn current_try(&self) -> u32 {
        self.current_try
    }

    /// How many retries remain, or `None` when they are unlimited.
    pub fn retries_remaining(&self) -> Option<u32> {
        self.retries_remaining
    }

    /// A key for calls to external systems, the same for every attempt of
    /// this step in this run, and after the run is taken up again after a
    /// crash: `"<run id>:<step>"`. Pass it to the system the step changes
    /// (a payment provider's idempotency key, a unique column), so that an
    /// attempt made again after a crash does its work once, and an undo
    /// finds what to undo. Steps of a map's elements share their step's
    /// key (in a durable run each element is a run of its own, and has
    /// keys of its own): add the element's own identity to it.
    ///
    /// ```
    /// use reactor::{step, Inputs, Reactor};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), reactor::Error> {
    /// let r = Reactor::builder("keys")
    ///     .add(step("charge").run_sync(|_, ctx| Ok(ctx.idempotency_key())))
    ///     .returns("charge")
    ///     .build()?;
    /// let key = r.run(Inputs::new()).run_id("order-7").await?;
    /// assert_eq!(key.get::<String>()?, "order-7:charge");
    /// # Ok(()) }
    /// ```
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.run.run_id, self.step_name())
    }

    /// This attempt's id, `"<epoch>.<attempt>"`: the epoch counts how many
    /// times the run has been taken up (1 for its first start, one more
    /// for each resume or recovery), the attempt counts from 1. A system
    /// that records it can ignore a late call from an attempt it has seen
    /// overtaken.
    pub fn attempt_id(&self) -> String {
        let epoch = self.run.journal.as_ref().map_or(1, |j| j.epoch());
        format!("{epoch}.{}", self.current_try + 1)
    }

    /// Whether the run is durable (its nested runs are too): it has a
    /// journal, as the coordinator's own test says.
    pub(crate) fn durable(&self) -> bool {
        self.run.journal.is_some()
    }

    /// Whether the run is asynchronous (steps may run concurrently).
    pub fn is_async(&self) -> bool {
        self.run.async_run
    }

    /// The concurrency pool of this run: pass it to nested runs
    /// ([`RunRequest::pool`](crate::RunRequest::pool)) to share its limit.
    /// A step holding a slot lends it to the runs nested in it, so a nested
    /// run never waits for a slot its caller holds.
    pub fn pool(&self) -> &ConcurrencyPool {
        &self.run.pool
    }

    /// A context value: the run's context wins over the step's own.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.run
            .values
            .get(key)
            .or_else(|| self.spec().def().extras().context.get(key))
    }

    /// A context value as a `T`, if present and of that type.
    pub fn get<T: 'static>(&self, key: &str) -> Option<&T> {
        self.value(key).and_then(Value::downcast_ref)
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("run_id", &self.run.run_id)
            .field("step", &self.step_name())
            .field("current_try", &self.current_try)
            .field("retries_remaining", &self.retries_remaining)
            .field("values", &self.run.values)
            .finish()
    }
}
