//! The coordinator: the loop of one run (see the module docs of
//! [`crate::executor`] for the algorithm).
//!
//! Its parts: [`instance`] (the graph state of one run of the plan: the
//! whole run, or one map element), [`launch`] (where ready attempts run),
//! [`first_poll`] (where an awaiting attempt starts), [`outcome`] (what a
//! finished attempt means), [`emitted`] (steps added at run time, and a
//! run rebuilt from its state), [`feed`] (map elements admitted as
//! instances) and [`finish`] (the one exit path: drain, record, unwind).

mod emitted;
mod feed;
mod finish;
mod first_poll;
mod instance;
mod journal;
mod launch;
mod outcome;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::attempt::SlowAttempt;
use super::places::{Finished, CHUNK_TIME};
use super::state::{Recovered, RunState};
use super::tasks::{TaskReport, Tasks};
use super::undo::UndoStack;
use crate::argument::Arguments;
use crate::context::{Context, RunScope};
use crate::error::{Error, Phase, Reason, RunError, StepError, StepErrorKind};
use crate::event::EventKind;
use crate::planner::{Plan, PlannedStep};
use crate::pool::adaptive::AdaptiveLimit;
use crate::pool::Permit;
use crate::value::{Value, ValueMap};

pub(crate) use feed::{Elements, Feed};
use instance::Instance;

/// Run settings the loop obeys.
pub(crate) struct Settings {
    pub(crate) run_async: bool,
    pub(crate) max_concurrency: usize,
    /// Awaiting steps run without a slot, beside the `max_concurrency`
    /// others (the default when no pool or limit is given).
    pub(crate) awaiting_unbounded: bool,
    /// Those awaiting steps are held to an adaptive limit
    /// ([`Concurrency::Auto`](crate::Concurrency::Auto)).
    pub(crate) adaptive: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_iterations: Option<u64>,
    pub(crate) halt_timeout: Duration,
    pub(crate) resumed: bool,
    /// Whether a completed run reports its state (not needed when only the
    /// value is awaited).
    pub(crate) keep_state: bool,
    /// A durable run taken up from its journal.
    pub(crate) recovered: Option<Box<Recovered>>,
    /// Cancels the run (a durable run, by its runtime): it stops starting
    /// steps, drains, undoes, and ends cancelled.
    pub(crate) cancel: Option<tokio_util::sync::CancellationToken>,
    /// The step kinds a durable run journals its emitted steps by.
    pub(crate) steps: Option<crate::durable::StepRegistry>,
}

/// How a run ended.
pub(crate) enum Finish {
    Completed {
        value: Value,
        state: RunState,
        undo: UndoStack,
    },
    Halted {
        state: RunState,
        undo: UndoStack,
        /// The run's span, which a resumed run follows from.
        span: Option<tracing::Id>,
    },
    /// The run failed; for a map, the first element that failed.
    Failed(RunError, Option<u64>),
}

/// A step of one instance: `inst` indexes the coordinator's instances
/// (always 0 for a reactor's run), `step` the instance's nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub(crate) inst: u32,
    pub(crate) step: u32,
}

impl Key {
    fn new(inst: usize, step: usize) -> Key {
        Key {
            inst: inst as u32,
            step: step as u32,
        }
    }

    fn i(self) -> usize {
        self.step as usize
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Waiting,
    Ready,
    Running,
    BackingOff,
    Done,
    Failed,
}

struct Node {
    status: Status,
    /// Its definition was emitted at run time (a new step or a
    /// replacement): held in its instance's `defs`, out of line so that
    /// every node stays small.
    emitted: bool,
    /// Dependencies not yet done.
    remaining: u32,
    /// Pending steps that will read this step's result.
    readers: u32,
    /// Keep the result whatever the readers (the return step).
    keep: bool,
    result: Option<Value>,
    retries: u32,
}

impl Node {
    fn pending() -> Node {
        Node {
            status: Status::Waiting,
            emitted: false,
            remaining: 0,
            readers: 0,
            keep: false,
            result: None,
            retries: 0,
        }
    }
}

/// A step definition: static (in the plan) or emitted at run time.
enum Def<'p> {
    Static(&'p PlannedStep),
    Dynamic(Arc<PlannedStep>),
}

impl std::ops::Deref for Def<'_> {
    type Target = PlannedStep;
    fn deref(&self) -> &PlannedStep {
        match self {
            Def::Static(s) => s,
            Def::Dynamic(s) => s,
        }
    }
}

fn def_of<'p>(plan: &'p Plan, inst: &Instance, i: usize) -> Def<'p> {
    match inst.def(i) {
        Some(d) => Def::Dynamic(d.clone()),
        None => Def::Static(&plan.steps[i]),
    }
}

/// The attempt running in the coordinator, when it has to await.
struct Inline {
    key: Key,
    fut: SlowAttempt,
    args: Arguments,
    ctx: Context,
}

enum Wake {
    Completion,
    Other,
    Stuck,
    IterationLimit,
}

pub(crate) struct Coordinator {
    plan: Arc<Plan>,
    scope: Arc<RunScope>,
    settings: Settings,
    /// The inputs as supplied, kept for the run's state.
    raw_inputs: ValueMap,
    /// The inputs after their transforms (a map's element input is each
    /// instance's own).
    inputs: Vec<Value>,
    instances: Vec<Instance>,
    /// Instances of finished elements, to reuse.
    free: Vec<u32>,
    /// A map's elements, admitted as instances.
    feed: Option<Box<Feed>>,
    /// The plan's input that is each instance's element (a map's).
    element_input: Option<u32>,
    /// Whether any middleware listens.
    events: bool,
    /// What this run's plain steps cost, on average over its chunks.
    plain_step_ns: Option<u64>,
    /// Where its awaiting steps' attempts start.
    first_polls: first_poll::FirstPolls,
    /// When ready steps became ready (only when middleware listens).
    queued_at: rustc_hash::FxHashMap<Key, Instant>,
    ready: VecDeque<Key>,
    tasks: Tasks,
    inline: Option<Inline>,
    /// A slot taken while waiting for one, for the next step to start.
    spare: Option<Permit>,
    /// The adaptive limit of awaiting steps, and when each running one
    /// started ([`Concurrency::Auto`](crate::Concurrency::Auto) only).
    adaptive: Option<AdaptiveLimit>,
    launched: rustc_hash::FxHashMap<Key, Instant>,
    backoffs: BinaryHeap<Reverse<(Instant, Key)>>,
    undo: UndoStack,
    errors: Vec<StepError>,
    /// Steps abandoned by a halt: they run again on resume.
    abandoned: Vec<String>,
    /// The first map element that failed.
    failed_element: Option<u64>,
    halting: bool,
    span: tracing::Span,
    /// Whether steps get `tracing` spans (debug level enabled).
    step_spans: bool,
    started: Instant,
    deadline: Option<Instant>,
    iterations: u64,
    /// Nested in a step of another run (its undo stack then belongs to it).
    nested: bool,
    /// Completed steps of a durable run whose dependents wait for the
    /// journal's next flush.
    unsynced: Vec<Key>,
    /// The journal already says the run unwinds.
    unwinding_journalled: bool,
    /// The journal could not be written: the run stops without undoing.
    journal_broken: bool,
    /// The run was cancelled: it unwinds, and ends cancelled.
    cancelled: bool,
    /// Undoable steps that may have started before the crash this run
    /// was taken up after, and where their undo entries go (above those
    /// taken up from the journal).
    maybe_started: Vec<Key>,
    recovered_undo: usize,
    /// The completion `journal_done` made, until `journal_done_push`.
    done_entry: Option<Box<crate::journal::Entry>>,
    /// The journal says the run completed (a nested run rebuilt for its
    /// undo): it completes again writing nothing.
    completed_before: bool,
}

/// A moving average of costs in nanoseconds, `d` its newest sample.
fn averaged(before: Option<u64>, d: Duration) -> u64 {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    match before {
        None => ns,
        Some(before) => (before.saturating_mul(3).saturating_add(ns)) / 4,
    }
}

/// `now + d`, saturated: a deadline too far to represent is 30 years away
/// (for a timer, never).
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    now.checked_add(d.min(FAR))
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

impl Coordinator {
    /// Prepares a run from `state` (empty for a fresh run); `feed`, for a
    /// map, admits its elements as instances instead of running the plan
    /// once.
    pub(crate) fn new(
        plan: Arc<Plan>,
        scope: Arc<RunScope>,
        settings: Settings,
        inputs: Vec<Value>,
        mut state: RunState,
        feed: Option<Box<Feed>>,
        span: tracing::Span,
    ) -> Result<Box<Coordinator>, Error> {
        let started = Instant::now();
        let deadline = settings.timeout.map(|t| after(started, t));
        let tasks = Tasks::new(scope.tracker.clone());
        let events = scope.events.is_active();
        let adaptive = settings.adaptive.then(AdaptiveLimit::default);
        // Boxed: the coordinator is large, and a run moves it into its future.
        let mut c = Box::new(Coordinator {
            plan,
            scope,
            settings,
            raw_inputs: std::mem::take(&mut state.inputs),
            inputs,
            instances: Vec::new(),
            free: Vec::new(),
            element_input: feed.as_ref().map(|f| f.element_input()),
            events,
            plain_step_ns: None,
            first_polls: Default::default(),
            queued_at: Default::default(),
            feed,
            ready: VecDeque::new(),
            tasks,
            inline: None,
            spare: None,
            adaptive,
            launched: Default::default(),
            backoffs: BinaryHeap::new(),
            undo: UndoStack::default(),
            errors: Vec::new(),
            abandoned: Vec::new(),
            failed_element: None,
            halting: false,
            span,
            step_spans: tracing::level_enabled!(tracing::Level::DEBUG),
            started,
            deadline,
            iterations: 0,
            nested: false,
            unsynced: Vec::new(),
            unwinding_journalled: false,
            journal_broken: false,
            cancelled: false,
            maybe_started: Vec::new(),
            recovered_undo: 0,
            completed_before: false,
            done_entry: None,
        });
        if c.feed.is_some() {
            return Ok(c);
        }
        let k = c.new_instance(Value::unit(), 0);
        c.instances[k].completed.reserve(c.plan.steps.len());
        if c.settings.resumed {
            c.restore(k, state)?;
        } else {
            c.wire_fresh(k);
        }
        if let Some(recovered) = c.settings.recovered.take() {
            c.recover(*recovered);
        }
        Ok(c)
    }

    /// Nests this run in a step of `parent`: what this run leaves to undo
    /// if it is dropped before it ends (its step was cancelled), including
    /// its running steps, goes to `parent`.
    pub(crate) fn nested_in(&mut self, parent: Option<Arc<RunScope>>) {
        self.nested = parent.is_some();
        self.undo.nest_in(parent);
    }

    // ----- the loop ------------------------------------------------------

    /// Runs the loop to the end.
    pub(crate) async fn drive(mut self: Box<Self>) -> Finish {
        let resumed = self.settings.resumed;
        if self.feed.is_none() {
            self.emit_run(|| EventKind::RunStart { resumed });
        }
        let mut count = true;
        // Steps run here one after another yield to the task's other work
        // every so often (the coordinator may be the caller's own task).
        let (mut inline_runs, mut busy_since) = (0_u32, Instant::now());
        loop {
            if count {
                if let Some(max) = self.settings.max_iterations {
                    if self.iterations >= max {
                        self.halting = true;
                    }
                }
                self.iterations += 1;
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.halting = true;
            }
            if self
                .settings
                .cancel
                .as_ref()
                .is_some_and(|c| c.is_cancelled())
            {
                self.cancel_now();
            }
            if self.journal_pending() {
                self.sync_journal().await;
            }
            if self.stopping() {
                break;
            }
            let mut ran_inline = self.launch_ready();
            if !ran_inline && self.inline.is_some() {
                // An attempt that just started awaiting in the coordinator
                // may well be done on its first poll.
                ran_inline = self.poll_inline().await;
            }
            if self.stopping() || self.is_done() {
                break;
            }
            if ran_inline {
                // One step ran in the coordinator: that was an iteration.
                count = true;
                inline_runs += 1;
                if inline_runs % 32 == 0 && busy_since.elapsed() >= CHUNK_TIME {
                    tokio::task::yield_now().await;
                    busy_since = Instant::now();
                }
                continue;
            }
            if inline_runs != 0 {
                // Waiting gives the task's other work its turn.
                (inline_runs, busy_since) = (0, Instant::now());
            }
            count = match self.wait().await {
                Wake::Completion => true,
                Wake::Other => false,
                Wake::IterationLimit => {
                    self.halting = true;
                    break;
                }
                Wake::Stuck => {
                    self.stuck();
                    break;
                }
            };
        }
        self.finish().await
    }

    /// Whether the run stops starting steps (it halts or fails).
    fn stopping(&self) -> bool {
        self.halting || !self.errors.is_empty()
    }

    /// Whether every step has finished (for a map: every element).
    fn is_done(&self) -> bool {
        match &self.feed {
            None => self.instances[0].unfinished == 0,
            Some(feed) => feed.exhausted() && self.instances.len() == self.free.len(),
        }
    }

    /// Nothing can run, nothing is running, but steps are unfinished.
    fn stuck(&mut self) {
        let plan = self.plan.clone();
        let mut names = Vec::new();
        for inst in &self.instances {
            for i in 0..inst.nodes.len() {
                if inst.live && !matches!(inst.nodes[i].status, Status::Done | Status::Failed) {
                    names.push(def_of(&plan, inst, i).name().to_string());
                }
            }
        }
        names.truncate(8);
        self.errors.push(StepError {
            step: names.first().cloned().unwrap_or_default(),
            phase: Phase::Plan,
            attempt: 0,
            kind: StepErrorKind::Plan(Reason::msg(format!(
                "steps can never run: {}",
                names.join(", ")
            ))),
        });
    }

    /// Whether a ready step waits for a slot that a run of ours could use.
    fn blocked_on_pool(&self) -> bool {
        self.settings.run_async
            && self.spare.is_none()
            && self.tasks.slotted() < self.settings.max_concurrency
            && self.ready.front().is_some_and(|&k| self.needs_slot(k))
    }

    async fn wait(&mut self) -> Wake {
        if self.spare.is_some() && !self.ready.front().is_some_and(|&k| self.needs_slot(k)) {
            // A slot taken while waiting that no step can use now: give it
            // back rather than keep it from other runs.
            self.spare = None;
        }
        let blocked_on_pool = self.blocked_on_pool();
        let next_backoff = self.backoffs.peek().map(|Reverse((t, _))| *t);
        let feeding = self.feed.as_ref().is_some_and(|f| f.wants_more());
        if self.tasks.running() == 0 && self.inline.is_none() && !blocked_on_pool && !feeding {
            match next_backoff {
                None => return Wake::Stuck,
                Some(_) => {
                    // Sleeping would spend the last iteration on the retry:
                    // halt instead.
                    if let Some(max) = self.settings.max_iterations {
                        if self.iterations + 1 >= max {
                            return Wake::IterationLimit;
                        }
                    }
                }
            }
        }
        if next_backoff.is_none()
            && self.deadline.is_none()
            && !blocked_on_pool
            && !feeding
            && self.inline.is_none()
            && self.settings.cancel.is_none()
        {
            // Only running steps to wait for: the common case, kept cheap.
            let report = self.tasks.next().await;
            return self.on_reported(report);
        }
        let far = after(Instant::now(), Duration::MAX);
        let scope = self.scope.clone();
        let cancel = self.settings.cancel.clone();
        enum Woken {
            Reported(Option<TaskReport>),
            Inline(super::attempt::Attempt),
            Backoff,
            Slot(Permit),
            Element(Option<Value>),
            Other,
        }
        let tasks = &mut self.tasks;
        let inline = &mut self.inline;
        let feed = &mut self.feed;
        let running = tasks.running() > 0;
        let woken = tokio::select! {
            biased;
            report = tasks.next(), if running => Woken::Reported(report),
            attempt = async { inline.as_mut().expect("checked").fut.as_mut().await }, if inline.is_some() => Woken::Inline(attempt),
            _ = tokio::time::sleep_until(next_backoff.unwrap_or(far)), if next_backoff.is_some() => Woken::Backoff,
            _ = tokio::time::sleep_until(self.deadline.unwrap_or(far)), if self.deadline.is_some() => Woken::Other,
            permit = scope.pool.acquire(), if blocked_on_pool => Woken::Slot(permit),
            permit = async { scope.lender.as_ref().expect("checked").borrow().await }, if blocked_on_pool && scope.lender.is_some() => Woken::Slot(permit),
            element = async { feed.as_mut().expect("checked").next().await }, if feeding => Woken::Element(element),
            _ = async { cancel.as_ref().expect("checked").cancelled().await }, if cancel.is_some() => Woken::Other,
        };
        match woken {
            Woken::Reported(report) => self.on_reported(report),
            Woken::Inline(attempt) => {
                let Inline { key, args, ctx, .. } = self.inline.take().expect("it ran");
                self.on_attempt(key, attempt, args, ctx);
                Wake::Completion
            }
            Woken::Backoff => {
                self.backoffs_due();
                Wake::Other
            }
            Woken::Slot(permit) => {
                self.spare = Some(permit);
                Wake::Other
            }
            Woken::Element(element) => {
                self.admit_one(element);
                Wake::Other
            }
            Woken::Other => Wake::Other,
        }
    }

    /// Polls the coordinator's attempt once; `true` if it ended (and was
    /// handled).
    async fn poll_inline(&mut self) -> bool {
        let inline = self.inline.as_mut().expect("an attempt in the coordinator");
        let polled =
            std::future::poll_fn(|cx| std::task::Poll::Ready(inline.fut.as_mut().poll(cx))).await;
        let std::task::Poll::Ready(attempt) = polled else {
            return false;
        };
        let Inline { key, args, ctx, .. } = self.inline.take().expect("it ran");
        self.on_attempt(key, attempt, args, ctx);
        true
    }

    /// Step `key` is ready: it waits in the queue.
    fn push_ready(&mut self, key: Key) {
        self.ready.push_back(key);
        self.mark_ready(key);
    }

    /// Notes when `key` became ready, for its start event.
    fn mark_ready(&mut self, key: Key) {
        if self.events {
            self.queued_at.insert(key, Instant::now());
        }
    }

    /// Makes the steps whose backoff has expired ready again.
    fn backoffs_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((t, key))) = self.backoffs.peek().copied() {
            if t > now {
                break;
            }
            self.backoffs.pop();
            let node = &mut self.instances[key.inst as usize].nodes[key.i()];
            if node.status == Status::BackingOff {
                node.status = Status::Ready;
                self.push_ready(key);
            }
        }
    }

    /// Handles a task's report and every other one already sent.
    fn on_reported(&mut self, report: Option<TaskReport>) -> Wake {
        if let Some(report) = report {
            self.on_task(report);
        }
        while let Some(report) = self.tasks.try_next() {
            self.on_task(report);
        }
        Wake::Completion
    }

    fn on_task(&mut self, report: TaskReport) {
        match report {
            TaskReport::Finished(finished) => self.on_finished(finished),
            TaskReport::Lost(keys) => {
                for (key, undo_args) in keys {
                    self.launched.remove(&key);
                    self.lost(key, undo_args);
                }
            }
        }
    }

    fn on_finished(&mut self, finished: Finished) {
        let (ended, unrun, per_step) = finished.into_ended();
        if let Some(d) = per_step {
            self.measured_plain(d);
        }
        for e in ended {
            let succeeded = matches!(e.attempt.verdict, super::attempt::Verdict::Done { .. });
            self.sample_latency(e.key, succeeded);
            self.on_attempt(e.key, e.attempt, e.args, e.ctx);
        }
        // Steps a chunk left unrun go first, in their order (they come last
        // first), arguments and all.
        for (key, args) in unrun {
            let inst = &mut self.instances[key.inst as usize];
            inst.nodes[key.i()].status = Status::Ready;
            inst.retry_args.insert(key.step as usize, args);
            self.ready.push_front(key);
            self.mark_ready(key);
        }
    }

    /// An awaiting step under the adaptive limit ended: the latency of a
    /// success moves the limit (a failure's or a retry's says little about
    /// the service's load), and a new limit is reported.
    fn sample_latency(&mut self, key: Key, succeeded: bool) {
        let (Some(limit), Some(started)) = (&mut self.adaptive, self.launched.remove(&key)) else {
            return;
        };
        if !succeeded {
            return;
        }
        if let Some(limit) = limit.sample(started.elapsed().as_secs_f64()) {
            self.emit_run(|| EventKind::ConcurrencyLimit { limit });
        }
    }

    /// A chunk's plain steps took `d` each, on average.
    fn measured_plain(&mut self, d: Duration) {
        self.plain_step_ns = Some(averaged(self.plain_step_ns, d));
    }

    /// Emits a run event; a middleware panic fails the run.
    fn emit_run<'k>(&mut self, kind: impl FnOnce() -> EventKind<'k>) {
        let scope = self.scope.clone();
        if let Err(panic) = scope.emit(None, kind) {
            self.errors.push(panic.error(&scope.plan.name, 0));
        }
    }
}
