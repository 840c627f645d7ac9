//! The coordinator: the run loop of one run (see the module docs of
//! [`crate::executor`] for the algorithm).

mod emitted;
mod finish;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::time::Instant;

use super::runner::{
    self, Attempt, BoxedTask, ChunkTask, Finished, Report, Runner, StepTask, MAX_CHUNK,
};
use super::state::RunState;
use super::tasks::Tasks;
use crate::argument::{ArgNames, Arguments, Values};
use crate::context::{Context, RunScope, StepRef};
use crate::error::{panic_message, Error, Phase, Reason, RunError, StepError, StepErrorKind};
use crate::event::EventKind;
use crate::name::Name;
use crate::planner::{ArgFrom, Plan, PlannedStep};
use crate::step::{Backoff, StepSpec};
use crate::value::{Value, ValueMap};

/// Run settings the loop obeys.
pub(crate) struct Settings {
    pub(crate) run_async: bool,
    pub(crate) max_concurrency: usize,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_iterations: Option<u64>,
    pub(crate) halt_timeout: Duration,
    pub(crate) resumed: bool,
    /// Whether a completed run reports its state (not needed when only the
    /// value is awaited).
    pub(crate) keep_state: bool,
}

/// How a run ended.
pub(crate) enum Finish {
    Completed { value: Value, state: RunState },
    Halted { state: RunState },
    Failed(RunError),
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
    /// A definition emitted at run time (a new step or a replacement).
    def: Option<Arc<PlannedStep>>,
    status: Status,
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
            def: None,
            status: Status::Waiting,
            remaining: 0,
            readers: 0,
            keep: false,
            result: None,
            retries: 0,
        }
    }
}

struct UndoEntry {
    index: usize,
    value: Value,
    args: Arguments,
}

enum Wake {
    Completion,
    Other,
    Stuck,
    IterationLimit,
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

fn def_of<'p>(plan: &'p Plan, nodes: &[Node], i: usize) -> Def<'p> {
    match &nodes[i].def {
        Some(d) => Def::Dynamic(d.clone()),
        None => Def::Static(&plan.steps[i]),
    }
}

pub(crate) struct Coordinator {
    plan: Arc<Plan>,
    scope: Arc<RunScope>,
    settings: Settings,
    raw_inputs: ValueMap,
    inputs: Vec<Value>,
    nodes: Vec<Node>,
    dynamic_names: FxHashMap<Name, usize>,
    /// Arguments kept for steps to run again (a retry reuses them, and so
    /// does a step a chunk left unrun).
    retry_args: FxHashMap<usize, Arguments>,
    extra_dependents: FxHashMap<usize, Vec<usize>>,
    completed: Vec<usize>,
    ready: VecDeque<usize>,
    tasks: Tasks,
    backoffs: BinaryHeap<Reverse<(Instant, usize)>>,
    undo: Vec<UndoEntry>,
    errors: Vec<StepError>,
    unfinished: usize,
    halting: bool,
    nested: bool,
    span: tracing::Span,
    /// Whether steps get `tracing` spans (debug level enabled).
    step_spans: bool,
    started: Instant,
    iterations: u64,
}

impl Coordinator {
    /// Prepares a run from `state` (empty for a fresh run).
    pub(crate) fn new(
        plan: Arc<Plan>,
        scope: Arc<RunScope>,
        settings: Settings,
        inputs: Vec<Value>,
        state: RunState,
        span: tracing::Span,
    ) -> Result<Box<Coordinator>, Error> {
        let nested = scope.slots.is_held_by_step();
        let n = plan.steps.len();
        let mut nodes: Vec<Node> = (0..n).map(|_| Node::pending()).collect();
        nodes[plan.return_step].keep = true;
        // Boxed: the coordinator is large, and a run moves it into its future.
        let mut c = Box::new(Coordinator {
            plan,
            scope,
            settings,
            raw_inputs: state.inputs,
            inputs,
            nodes,
            dynamic_names: FxHashMap::default(),
            retry_args: FxHashMap::default(),
            extra_dependents: FxHashMap::default(),
            completed: Vec::with_capacity(n),
            ready: VecDeque::new(),
            tasks: Tasks::new(),
            backoffs: BinaryHeap::new(),
            undo: Vec::new(),
            errors: Vec::new(),
            unfinished: n,
            halting: false,
            nested,
            span,
            step_spans: tracing::level_enabled!(tracing::Level::DEBUG),
            started: Instant::now(),
            iterations: 0,
        });
        if !c.settings.resumed {
            c.wire_fresh();
        } else {
            c.restore(
                state.completed,
                state.results,
                state.undo_stack,
                state.emitted,
                state.retries,
            )?;
        }
        Ok(c)
    }

    fn wire_fresh(&mut self) {
        let plan = self.plan.clone();
        for (i, s) in plan.steps.iter().enumerate() {
            self.nodes[i].remaining = s.deps.len() as u32;
            for &j in &s.reads {
                self.nodes[j].readers += 1;
            }
            if s.deps.is_empty() {
                self.nodes[i].status = Status::Ready;
                self.ready.push_back(i);
            }
        }
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.plan
            .step_named(name)
            .or_else(|| self.dynamic_names.get(name).copied())
    }

    // ----- the loop ------------------------------------------------------

    /// Runs the loop to the end.
    pub(crate) async fn drive(mut self: Box<Self>) -> Finish {
        let scope = self.scope.clone();
        scope
            .events
            .emit(&scope.run_id, &scope.plan.name, None, || {
                EventKind::RunStart {
                    resumed: self.settings.resumed,
                }
            });
        let deadline = self.settings.timeout.map(|t| self.started + t);
        let mut count = true;
        loop {
            if count {
                if let Some(max) = self.settings.max_iterations {
                    if self.iterations >= max {
                        self.halting = true;
                    }
                }
                self.iterations += 1;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.halting = true;
            }
            if self.halting || !self.errors.is_empty() {
                break;
            }
            let ran_inline = self.launch_ready().await;
            if self.halting || !self.errors.is_empty() || self.unfinished == 0 {
                break;
            }
            if ran_inline {
                // One step ran in the coordinator: that was an iteration.
                count = true;
                continue;
            }
            count = match self.wait(deadline).await {
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

    /// Nothing can run, nothing is running, but steps are unfinished.
    fn stuck(&mut self) {
        let names: Vec<String> = (0..self.nodes.len())
            .filter(|&i| !matches!(self.nodes[i].status, Status::Done | Status::Failed))
            .take(8)
            .map(|i| def_of(&self.plan, &self.nodes, i).name().to_string())
            .collect();
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

    /// Starts ready steps until none is left or none can start; returns
    /// `true` right after running a step in the coordinator, so that the
    /// loop checks its limits between such steps.
    async fn launch_ready(&mut self) -> bool {
        let plan = self.plan.clone();
        while let Some(&i) = self.ready.front() {
            if self.halting || !self.errors.is_empty() {
                return false;
            }
            let def = def_of(&plan, &self.nodes, i);
            let inline = !self.settings.run_async || !def.run_async;
            let cpu_bound = def.cpu_bound;
            let permit = if inline {
                None
            } else {
                if self.tasks.running() >= self.settings.max_concurrency {
                    return false;
                }
                match self.scope.slots.try_acquire() {
                    Some(p) => Some(p),
                    // Nested in a step holding a slot of this pool: run in
                    // the coordinator rather than wait for ourselves.
                    None if self.tasks.running() == 0 && self.nested => None,
                    None => return false,
                }
            };
            self.ready.pop_front();
            let (args, ctx) = match self.prepare(i, &def) {
                Ok(prepared) => prepared,
                Err(kind) => {
                    let attempt = self.nodes[i].retries + 1;
                    self.fail(i, Phase::Arguments, attempt, kind);
                    return false;
                }
            };
            self.nodes[i].status = Status::Running;
            let span = self.step_spans.then_some(&self.span);
            let Some(permit) = permit else {
                // In the coordinator: borrow the step, await only if needed.
                let span = span.map(|parent| runner::step_span(parent, &ctx));
                let attempt = match (&def.plain, &span) {
                    (Some(run), None) => runner::run_plain(run, &args, &ctx),
                    _ => match runner::start_attempt(&def.runner(), &args, &ctx, span) {
                        Ok(attempt) => attempt,
                        Err(slow) => slow.await,
                    },
                };
                drop(def);
                self.on_inline_attempt(i, attempt, args, ctx);
                return true;
            };
            if let (Some(run), None, false) = (&def.plain, span, cpu_bound) {
                if self.tasks.running() == 0 && self.ready.is_empty() {
                    // The only step that can run: nothing would run beside
                    // it, so a task of its own would only add hand-offs
                    // (a chain of plain steps runs here, one after another).
                    let attempt = runner::run_plain(run, &args, &ctx);
                    drop(def);
                    drop(permit);
                    self.on_inline_attempt(i, attempt, args, ctx);
                    return true;
                }
                let first = (i, run.clone(), args, ctx);
                drop(def);
                if !self.launch_chunk(first, permit) {
                    return false;
                }
                continue;
            }
            let task = BoxedTask::new(StepTask::new(
                i,
                def.runner(),
                args,
                ctx,
                span,
                Some(permit),
            ));
            drop(def);
            self.tasks.spawn(task, cpu_bound);
        }
        false
    }

    /// Handles an attempt made in the coordinator.
    fn on_inline_attempt(&mut self, index: usize, attempt: Attempt, args: Arguments, ctx: Context) {
        self.on_report(Report {
            index,
            attempt,
            args,
            ctx,
            _runner: None,
        });
    }

    /// Spawns `first` together with as many following ready plain steps as
    /// a fair share of the free slots allows; `false` if preparing one of
    /// them failed the run.
    fn launch_chunk(
        &mut self,
        first: (usize, crate::step::SyncRunFn, Arguments, Context),
        permit: crate::pool::Permit,
    ) -> bool {
        let free = (self.settings.max_concurrency - self.tasks.running()).max(1);
        let share = (self.ready.len() + 1).div_ceil(free).min(MAX_CHUNK);
        if share == 1 {
            // Nothing to share the task with: a plain step task is lighter.
            let (i, run, args, ctx) = first;
            let task = StepTask::new(i, Runner::Plain(run), args, ctx, None, Some(permit));
            self.tasks.spawn(BoxedTask::new(task), false);
            return true;
        }
        let plan = self.plan.clone();
        let mut items = Vec::with_capacity(share);
        items.push(first);
        while items.len() < share {
            let Some(&j) = self.ready.front() else { break };
            let def = def_of(&plan, &self.nodes, j);
            let Some(run) = &def.plain else {
                break;
            };
            if !def.run_async || def.cpu_bound {
                break;
            }
            let run = run.clone();
            self.ready.pop_front();
            match self.prepare(j, &def) {
                Ok((args, ctx)) => {
                    self.nodes[j].status = Status::Running;
                    items.push((j, run, args, ctx));
                }
                Err(kind) => {
                    let attempt = self.nodes[j].retries + 1;
                    self.fail(j, Phase::Arguments, attempt, kind);
                    break;
                }
            }
        }
        self.tasks
            .spawn_chunk(Box::new(ChunkTask::new(items, permit)));
        self.errors.is_empty()
    }

    /// A step's arguments (resolved once: a retry, or a step a chunk left
    /// unrun, reuses the kept ones) and context.
    fn prepare(
        &mut self,
        i: usize,
        def: &PlannedStep,
    ) -> Result<(Arguments, Context), StepErrorKind> {
        let kept = if self.retry_args.is_empty() {
            None
        } else {
            self.retry_args.remove(&i)
        };
        let args = match kept {
            Some(args) => args,
            None => self.resolve_arguments(i, def)?,
        };
        let retries = self.nodes[i].retries;
        let ctx = Context {
            run: self.scope.clone(),
            step: self.step_ref(i, def),
            current_try: retries,
            retries_remaining: def.max_retries.map(|m| m.saturating_sub(retries)),
            events: self.scope.events.is_active(),
        };
        Ok((args, ctx))
    }

    fn step_ref(&self, i: usize, def: &PlannedStep) -> StepRef {
        if self.nodes[i].def.is_none() {
            StepRef::Planned(i)
        } else {
            StepRef::Emitted(def.spec.clone())
        }
    }

    /// The raw value an argument reads (before its sub-path and transform).
    fn raw_argument(&self, def: &PlannedStep, k: usize) -> Option<Value> {
        match def.arg_from[k] {
            ArgFrom::Input(n) => Some(self.inputs[n as usize].clone()),
            ArgFrom::Step(j) => self.nodes[j as usize].result.clone(),
            ArgFrom::Constant => match &def.spec.def().arguments[k].source.origin {
                crate::argument::Origin::Value(v) => Some(v.clone()),
                _ => unreachable!("constant arguments hold a value"),
            },
        }
    }

    fn arg_names(&self, i: usize, def: &PlannedStep) -> ArgNames {
        match &self.nodes[i].def {
            None => ArgNames::Planned(self.plan.clone(), i as u32),
            Some(dynamic) => {
                debug_assert!(std::ptr::eq(&**dynamic, def));
                ArgNames::Emitted(dynamic.clone())
            }
        }
    }

    fn resolve_arguments(&self, i: usize, def: &PlannedStep) -> Result<Arguments, StepErrorKind> {
        // The common case, plain reads of available values, takes one
        // allocation for the whole argument list and touches nothing else.
        let available = |from: &ArgFrom| match *from {
            ArgFrom::Step(j) => self.nodes[j as usize].result.is_some(),
            _ => true,
        };
        if def.plain_args && def.arg_from.iter().all(available) {
            let n = def.arg_from.len();
            let values = Values::collect(
                n,
                (0..n).map(|k| self.raw_argument(def, k).expect("checked above")),
            );
            return Ok(Arguments::from_parts(self.arg_names(i, def), values));
        }
        let spec = def.spec.def();
        let mut values = Vec::with_capacity(def.arg_from.len());
        for (k, arg) in spec.arguments.iter().enumerate() {
            let raw = self.raw_argument(def, k).ok_or_else(|| {
                let ArgFrom::Step(j) = def.arg_from[k] else {
                    unreachable!("only step results can be missing")
                };
                StepErrorKind::MissingResult {
                    argument: arg.name.to_string(),
                    dependency: def_of(&self.plan, &self.nodes, j as usize)
                        .name()
                        .to_string(),
                }
            })?;
            values.push(arg.source.finish(&arg.name, raw)?);
        }
        let args = Arguments::from_parts(self.arg_names(i, def), Values::from(values));
        match &spec.extras().transform_arguments {
            None => Ok(args),
            Some(t) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t(args))) {
                Ok(Ok(args)) => Ok(args),
                Ok(Err(e)) => Err(StepErrorKind::ArgumentsTransform(Reason::from(e))),
                Err(p) => Err(StepErrorKind::ArgumentsTransform(Reason::msg(format!(
                    "panicked: {}",
                    panic_message(&*p)
                )))),
            },
        }
    }

    /// One reader of `j` no longer needs its result.
    fn release_read(&mut self, j: usize) {
        let node = &mut self.nodes[j];
        node.readers = node.readers.saturating_sub(1);
        if node.readers == 0 && !node.keep && node.status == Status::Done {
            node.result = None;
        }
    }

    async fn wait(&mut self, deadline: Option<Instant>) -> Wake {
        let blocked_on_pool = !self.ready.is_empty()
            && self.settings.run_async
            && self.tasks.running() < self.settings.max_concurrency;
        let next_backoff = self.backoffs.peek().map(|Reverse((t, _))| *t);
        if self.tasks.running() == 0 && !blocked_on_pool {
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
        if next_backoff.is_none() && deadline.is_none() && !blocked_on_pool {
            // Only running steps to wait for: the common case, kept cheap.
            let finished = self.tasks.next().await;
            return self.on_joined(finished);
        }
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let pool = self.scope.slots.clone();
        enum Woken {
            Joined(Option<Finished>),
            Backoff,
            Other,
        }
        let woken = tokio::select! {
            biased;
            finished = self.tasks.next(), if self.tasks.running() > 0 => Woken::Joined(finished),
            _ = tokio::time::sleep_until(next_backoff.unwrap_or(far)), if next_backoff.is_some() => Woken::Backoff,
            _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => Woken::Other,
            _ = pool.wait_for_release(), if blocked_on_pool => Woken::Other,
        };
        match woken {
            Woken::Joined(res) => self.on_joined(res),
            Woken::Backoff => {
                let now = Instant::now();
                while let Some(Reverse((t, i))) = self.backoffs.peek().copied() {
                    if t > now {
                        break;
                    }
                    self.backoffs.pop();
                    self.nodes[i].status = Status::Ready;
                    self.ready.push_back(i);
                }
                Wake::Other
            }
            Woken::Other => Wake::Other,
        }
    }

    /// Handles a finished task and every other one already finished.
    fn on_joined(&mut self, finished: Option<Finished>) -> Wake {
        if let Some(finished) = finished {
            self.on_finished(finished);
        }
        while let Some(finished) = self.tasks.try_next() {
            self.on_finished(finished);
        }
        Wake::Completion
    }

    fn on_finished(&mut self, finished: Finished) {
        let (reports, unrun) = finished.into_reports();
        for report in reports {
            self.on_report(report);
        }
        // Steps a chunk left unrun go first, in their order (they come last
        // first), arguments and all.
        for (i, args) in unrun {
            self.nodes[i].status = Status::Ready;
            self.retry_args.insert(i, args);
            self.ready.push_front(i);
        }
    }

    fn on_report(&mut self, report: Report) {
        let i = report.index;
        match report.attempt {
            Attempt::Completed {
                value,
                emitted,
                undo,
            } => self.complete(i, value, emitted, report.args, Some(undo)),
            Attempt::Skipped(value) => self.complete(i, value, Vec::new(), report.args, None),
            Attempt::Halted(value) => {
                self.nodes[i].keep = true;
                self.complete(i, value, Vec::new(), report.args, Some(None));
                self.halting = true;
            }
            Attempt::Retry {
                reason,
                from_compensation,
            } => {
                let plan = self.plan.clone();
                let def = def_of(&plan, &self.nodes, i);
                let backoff =
                    runner::backoff(&*def.imp(), reason.as_ref(), &report.args, &report.ctx);
                if !from_compensation {
                    let ctx = &report.ctx;
                    runner::emit(ctx, || EventKind::StepRetry {
                        attempt: ctx.current_try + 1,
                        reason: reason.as_ref(),
                        backoff,
                    });
                }
                drop(def);
                self.retry_args.insert(i, report.args);
                self.retry(i, reason, backoff)
            }
            Attempt::Failed { phase, kind } => {
                let attempt = self.nodes[i].retries + 1;
                self.fail(i, phase, attempt, *kind);
            }
        }
    }

    fn retry(&mut self, i: usize, reason: Option<Reason>, backoff: Backoff) {
        let plan = self.plan.clone();
        let max = def_of(&plan, &self.nodes, i).max_retries;
        let node = &mut self.nodes[i];
        node.retries += 1;
        if let Some(max) = max {
            if node.retries > max {
                let attempt = node.retries;
                let kind = match reason {
                    Some(r) => StepErrorKind::Failed(r),
                    None => StepErrorKind::RetriesExceeded {
                        retries: attempt,
                        max_retries: max,
                    },
                };
                self.fail(i, Phase::Run, attempt, kind);
                return;
            }
        }
        match backoff {
            Backoff::After(d) if !d.is_zero() => {
                node.status = Status::BackingOff;
                self.backoffs.push(Reverse((Instant::now() + d, i)));
            }
            _ => {
                node.status = Status::Ready;
                self.ready.push_back(i);
            }
        }
    }

    fn fail(&mut self, i: usize, phase: Phase, attempt: u32, kind: StepErrorKind) {
        self.nodes[i].status = Status::Failed;
        let error = StepError {
            step: def_of(&self.plan, &self.nodes, i).name().to_string(),
            phase,
            attempt,
            kind,
        };
        let scope = &self.scope;
        scope
            .events
            .emit(&scope.run_id, &scope.plan.name, Some(&error.step), || {
                EventKind::StepFailed { error: &error }
            });
        self.errors.push(error);
    }

    /// Records a finished step. `undo` is `None` for a step a guard skipped
    /// (it is not undone), else what the step keeps for its undo, if not
    /// its value.
    fn complete(
        &mut self,
        i: usize,
        value: Value,
        emitted: Vec<StepSpec>,
        args: Arguments,
        undo: Option<Option<Value>>,
    ) {
        let plan = self.plan.clone();
        let def = def_of(&plan, &self.nodes, i);
        if let (true, Some(token)) = (def.can_undo, undo) {
            self.undo.push(UndoEntry {
                index: i,
                value: token.unwrap_or_else(|| value.clone()),
                args,
            });
        }
        let replaced = if emitted.is_empty() {
            false
        } else {
            self.add_emitted_by(i, &value, emitted)
        };
        // Its readings are done (emitted steps were wired first, so results
        // they read stay): producers nobody else reads free their results.
        for &j in &def.reads {
            if j != i {
                self.release_read(j);
            }
        }
        if replaced || self.nodes[i].status == Status::Failed {
            return;
        }
        let node = &mut self.nodes[i];
        node.status = Status::Done;
        self.unfinished -= 1;
        self.completed.push(i);
        if node.readers > 0 || node.keep {
            node.result = Some(value);
        }
        if i < plan.steps.len() {
            for &d in &plan.steps[i].dependents {
                self.dependency_done(d);
            }
        }
        if !self.extra_dependents.is_empty() {
            if let Some(extra) = self.extra_dependents.remove(&i) {
                for d in extra {
                    self.dependency_done(d);
                }
            }
        }
    }

    fn dependency_done(&mut self, d: usize) {
        let node = &mut self.nodes[d];
        node.remaining -= 1;
        if node.remaining == 0 && node.status == Status::Waiting {
            node.status = Status::Ready;
            self.ready.push_back(d);
        }
    }
}
