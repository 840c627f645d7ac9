//! Where ready attempts run: in the coordinator, in a task of their own,
//! or in a chunk of plain steps. This decides where and when, never what
//! an attempt means (that is [`attempt`](crate::executor::attempt)'s and
//! [`outcome`](super::outcome)'s).

use super::first_poll::Start;
use super::{def_of, Coordinator, Inline, Key, Status};
use crate::argument::{ArgNames, Arguments, Values};
use crate::context::{Context, StepRef};
use crate::error::{panic_message, Phase, Reason, StepErrorKind};
use crate::executor::attempt::{self, Started};
use crate::executor::nesting::Nesting;
use crate::executor::places::{Batch, BoxedTask, ChunkTask, Ended, StepTask, MAX_CHUNK};
use crate::executor::tasks::Keys;
use crate::planner::{ArgFrom, PlannedStep};
use crate::pool::Permit;
use crate::step::{Runner, SyncRunFn};

/// At most this many unheld awaiting steps of one run are in flight at
/// once (without `Concurrency::Auto`): far past what waiting on I/O needs,
/// while a fan-out of millions of steps does not hold a task for each.
pub(crate) const UNHELD_LIMIT: usize = 10_000;

/// Plain steps costing less than this (measured over this run's chunks)
/// run their chunks in the coordinator: handing them to another task
/// would cost more than running them.
const CHEAP_STEP_NS: u64 = 1_000;

impl Coordinator {
    /// Whether step `key` runs off the coordinator holding a slot.
    pub(super) fn needs_slot(&self, key: Key) -> bool {
        let def = def_of(&self.plan, &self.instances[key.inst as usize], key.i());
        self.settings.run_async && def.run_async && !self.unheld(&def)
    }

    /// Whether `def` runs without a slot: an awaiting step of a run given
    /// no pool or limit, held only to [`UNHELD_LIMIT`] (under
    /// `Concurrency::Auto`, to its adaptive limit instead).
    fn unheld(&self, def: &PlannedStep) -> bool {
        self.settings.awaiting_unbounded && def.awaits
    }

    /// A free slot: one taken while waiting, the pool's, or the one lent
    /// to this run.
    fn take_slot(&mut self) -> Option<Permit> {
        if let Some(p) = self.spare.take() {
            return Some(p);
        }
        self.scope
            .pool
            .try_acquire()
            .or_else(|| self.scope.lender.as_ref().and_then(|l| l.try_borrow()))
    }

    /// Admits map elements and starts ready steps until none is left or
    /// none can start; returns `true` right after an attempt completed in
    /// the coordinator, so that the loop checks its limits between such
    /// attempts.
    pub(super) fn launch_ready(&mut self) -> bool {
        // Awaiting attempts that end here during this call: a batch, like
        // a chunk of plain steps.
        let mut here = Batch::default();
        self.launch_some(&mut here) || here.ran() > 0
    }

    /// [`Coordinator::launch_ready`]'s loop; awaiting attempts that end in
    /// the coordinator are counted in `here`, which stops the loop once it
    /// is a chunk's worth (so that the loop checks its limits, and a
    /// durable run flushes its journal, per batch, not per step).
    fn launch_some(&mut self, here: &mut Batch) -> bool {
        let plan = self.plan.clone();
        loop {
            if self.stopping() {
                return false;
            }
            let Some(&key) = self.ready.front() else {
                if self.admit() {
                    continue;
                }
                return false;
            };
            let inst = &self.instances[key.inst as usize];
            let def = def_of(&plan, inst, key.i());
            if !self.settings.run_async || !def.run_async {
                // In the coordinator, one at a time.
                if self.inline.is_some() {
                    return false;
                }
                self.ready.pop_front();
                let Some((args, ctx)) = self.prepare_or_fail(key, &def) else {
                    return false;
                };
                if let (Some(run), false) = (def.plain(), self.step_spans) {
                    // A plain closure answers at once: no runner to build.
                    let attempt = attempt::run_plain(run, &args, &ctx);
                    drop(def);
                    self.on_attempt(key, attempt, args, ctx);
                    return true;
                }
                let runner = def.runner();
                drop(def);
                if self.start_inline(key, &runner, args, ctx) {
                    return true;
                }
                continue;
            }
            // An unheld step takes no slot, but a place under the adaptive
            // limit if there is one.
            let permit = if self.unheld(&def) {
                let unslotted = self.tasks.running() - self.tasks.slotted();
                let limit = self.adaptive.as_ref().map_or(UNHELD_LIMIT, |a| a.current());
                if unslotted >= limit {
                    return false;
                }
                None
            } else {
                if self.tasks.slotted() >= self.settings.max_concurrency {
                    return false;
                }
                let Some(permit) = self.take_slot() else {
                    return false;
                };
                Some(permit)
            };
            self.ready.pop_front();
            let Some((args, ctx)) = self.prepare_or_fail(key, &def) else {
                return false;
            };
            let span = self.step_spans.then_some(&self.span);
            // Plain closures never await: they always hold a slot.
            let permit = match (def.plain(), span, def.cpu_bound, permit) {
                (Some(run), None, false, Some(permit)) => {
                    let (run, undoes) = (run.clone(), def.can_undo);
                    drop(def);
                    if self.launch_plain((key, run, args, ctx), undoes, permit) {
                        return true;
                    }
                    continue;
                }
                (.., permit) => permit,
            };
            let (cpu_bound, undoes) = (def.cpu_bound, def.can_undo);
            // Plain closures (here with a guard, compensation or a span)
            // keep their tasks, where the cores share CPU work.
            let awaits = def.awaits && !cpu_bound;
            let slotted = permit.is_some();
            if !slotted && self.adaptive.is_some() {
                self.launched.insert(key, tokio::time::Instant::now());
            }
            let task = StepTask::new(key, def.runner(), args, ctx, span, permit);
            drop(def);
            let task = if awaits {
                match self.start_here(task) {
                    Ok(ended) => {
                        // It answered without waiting: no latency to sample.
                        self.launched.remove(&key);
                        self.on_attempt(ended.key, ended.attempt, ended.args, ended.ctx);
                        if here.full() {
                            return true;
                        }
                        continue;
                    }
                    Err(task) => task,
                }
            } else {
                BoxedTask::new(task)
            };
            let undo_args = undoes.then(|| task.args().clone());
            self.tasks.spawn(key, undo_args, task, cpu_bound, slotted);
        }
    }

    /// Starts an awaiting step's attempt where
    /// [`FirstPolls`](super::first_poll::FirstPolls) says: here,
    /// up to its first await (its report if it ended), or in its task.
    fn start_here(&mut self, task: StepTask) -> Result<Ended, BoxedTask> {
        let Start::Here = self.first_polls.next() else {
            return Err(BoxedTask::new(task));
        };
        let started = std::time::Instant::now();
        let polled = task.poll_here();
        self.first_polls.took(started.elapsed(), polled.is_ok());
        polled
    }

    /// Starts a ready plain closure holding `permit`: here when it is the
    /// only step that can run, else in a chunk. `true` right after an
    /// attempt completed here.
    fn launch_plain(
        &mut self,
        first: (Key, SyncRunFn, Arguments, Context),
        undoes: bool,
        permit: Permit,
    ) -> bool {
        if self.tasks.running() == 0
            && self.ready.is_empty()
            && self.inline.is_none()
            && !self.feed.as_ref().is_some_and(|f| f.wants_more())
        {
            // The only step that can run: nothing would run beside it, so
            // a task of its own would only add hand-offs (a chain of plain
            // steps runs here, one after another).
            let (key, run, args, ctx) = first;
            let attempt = attempt::run_plain(&run, &args, &ctx);
            drop(permit);
            self.on_attempt(key, attempt, args, ctx);
            return true;
        }
        self.launch_chunk(first, undoes, permit)
    }

    /// Starts an attempt in the coordinator: `true` if it completed at
    /// once (and was handled), else it runs on as the coordinator's inline
    /// attempt.
    fn start_inline(&mut self, key: Key, runner: &Runner, args: Arguments, ctx: Context) -> bool {
        let span = self
            .step_spans
            .then(|| attempt::step_span(&self.span, &ctx));
        match attempt::start(runner, &args, &ctx, span, || Nesting::new(&ctx.run, None)) {
            Started::Now(attempt) => {
                self.on_attempt(key, attempt, args, ctx);
                true
            }
            Started::Later(fut) => {
                self.inline = Some(Inline {
                    key,
                    fut,
                    args,
                    ctx,
                });
                false
            }
        }
    }

    /// Runs `first` together with following ready plain steps as a chunk:
    /// in the coordinator when this run's plain steps have proven cheaper
    /// than handing them to another task (then returns `true`), else in a
    /// task of its own with as many steps as a fair share of the free
    /// slots allows.
    fn launch_chunk(
        &mut self,
        first: (Key, SyncRunFn, Arguments, Context),
        undoes: bool,
        permit: Permit,
    ) -> bool {
        if self.plain_step_ns.is_some_and(|ns| ns < CHEAP_STEP_NS) {
            self.run_chunk_here(first, permit);
            return true;
        }
        let free = self
            .settings
            .max_concurrency
            .saturating_sub(self.tasks.slotted())
            .max(1);
        let share = (self.ready.len() + 1).div_ceil(free).min(MAX_CHUNK);
        if share == 1 {
            // Nothing to share the task with: a plain step task is lighter.
            let (key, run, args, ctx) = first;
            let undo_args = undoes.then(|| args.clone());
            let task = StepTask::new(key, Runner::Plain(run), args, ctx, None, Some(permit));
            self.tasks
                .spawn(key, undo_args, BoxedTask::new(task), false, true);
            return false;
        }
        let mut keys = Keys::new();
        keys.push((first.0, undoes.then(|| first.2.clone())));
        let mut items = Vec::with_capacity(share);
        items.push(first);
        while items.len() < share {
            let Some((key, run, args, ctx, undoes)) = self.next_plain() else {
                break;
            };
            keys.push((key, undoes.then(|| args.clone())));
            items.push((key, run, args, ctx));
        }
        self.tasks
            .spawn_chunk(keys, Box::new(ChunkTask::new(items, permit)));
        false
    }

    /// Runs `first` and the ready plain steps after it in the coordinator,
    /// one after another, as a chunk would (at most [`MAX_CHUNK`] of them,
    /// for at most [`CHUNK_TIME`]), holding `permit`; measures them.
    fn run_chunk_here(&mut self, first: (Key, SyncRunFn, Arguments, Context), permit: Permit) {
        let started = std::time::Instant::now();
        let mut batch = Batch::since(started);
        let (mut key, mut run, mut args, mut ctx) = first;
        loop {
            let attempt = attempt::run_plain(&run, &args, &ctx);
            self.on_attempt(key, attempt, args, ctx);
            if batch.full() || self.stopping() {
                break;
            }
            match self.next_plain() {
                Some((k, r, a, c, _)) => (key, run, args, ctx) = (k, r, a, c),
                None => break,
            }
        }
        drop(permit);
        self.measured_plain(started.elapsed() / batch.ran());
    }

    /// The next ready step, prepared, if it is a plain step that a chunk
    /// may take (with whether it can undo).
    fn next_plain(&mut self) -> Option<(Key, SyncRunFn, Arguments, Context, bool)> {
        let plan = self.plan.clone();
        let &key = self.ready.front()?;
        let def = def_of(&plan, &self.instances[key.inst as usize], key.i());
        let run = def.plain()?;
        if !def.run_async || def.cpu_bound || !self.settings.run_async {
            return None;
        }
        let run = run.clone();
        self.ready.pop_front();
        let (args, ctx) = self.prepare_or_fail(key, &def)?;
        Some((key, run, args, ctx, def.can_undo))
    }

    /// [`Coordinator::prepare`], failing the step if its arguments cannot
    /// be resolved; marks it running.
    fn prepare_or_fail(&mut self, key: Key, def: &PlannedStep) -> Option<(Arguments, Context)> {
        match self.prepare(key, def) {
            Ok(prepared) => {
                self.instances[key.inst as usize].nodes[key.i()].status = Status::Running;
                Some(prepared)
            }
            Err(kind) => {
                let attempt = self.instances[key.inst as usize].nodes[key.i()].retries + 1;
                self.fail(key, Phase::Arguments, attempt, kind);
                None
            }
        }
    }

    /// A step's arguments (resolved once: a retry, or a step a chunk left
    /// unrun, reuses the kept ones) and context.
    fn prepare(
        &mut self,
        key: Key,
        def: &PlannedStep,
    ) -> Result<(Arguments, Context), StepErrorKind> {
        let inst = &mut self.instances[key.inst as usize];
        let kept = if inst.retry_args.is_empty() {
            None
        } else {
            inst.retry_args.remove(&key.i())
        };
        let node = &inst.nodes[key.i()];
        let retries = node.retries;
        let step = if node.emitted {
            StepRef::Emitted(def.spec.clone())
        } else {
            StepRef::Planned(key.i())
        };
        let args = match kept {
            Some(args) => args,
            None => self.resolve_arguments(key, def)?,
        };
        let queued_us = if self.events {
            self.queued_at.remove(&key).map_or(0, |t| {
                u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX)
            })
        } else {
            0
        };
        let ctx = Context {
            run: self.scope.clone(),
            step,
            current_try: retries,
            retries_remaining: def.max_retries().map(|m| m.saturating_sub(retries)),
            queued_us,
            events: self.events,
            undoing: false,
        };
        Ok((args, ctx))
    }

    /// The context an undo of a step runs in outside any attempt (a step
    /// rebuilt from a state, abandoned, or that may have started before a
    /// crash).
    pub(super) fn undo_context(&self, step: StepRef, current_try: u32) -> Context {
        Context {
            run: self.scope.clone(),
            step,
            current_try,
            retries_remaining: None,
            queued_us: 0,
            events: self.events,
            undoing: true,
        }
    }

    pub(super) fn step_ref(&self, key: Key, def: &PlannedStep) -> StepRef {
        if self.instances[key.inst as usize].nodes[key.i()].emitted {
            StepRef::Emitted(def.spec.clone())
        } else {
            StepRef::Planned(key.i())
        }
    }

    /// The raw value an argument reads (before its sub-path and transform).
    fn raw_argument(&self, key: Key, def: &PlannedStep, k: usize) -> Option<crate::value::Value> {
        let inst = &self.instances[key.inst as usize];
        match def.arg_from[k] {
            ArgFrom::Input(n) if Some(n) == self.element_input => Some(inst.element.clone()),
            ArgFrom::Input(n) => Some(self.inputs[n as usize].clone()),
            ArgFrom::Step(j) => inst.nodes[j as usize].result.clone(),
            ArgFrom::Constant => match &def.spec.def().arguments[k].source.origin {
                crate::argument::Origin::Value(v) => Some((**v).clone()),
                _ => unreachable!("constant arguments hold a value"),
            },
        }
    }

    fn arg_names(&self, key: Key, def: &PlannedStep) -> ArgNames {
        match self.instances[key.inst as usize].def(key.i()) {
            None => ArgNames::Planned(self.plan.clone(), key.step),
            Some(dynamic) => {
                debug_assert!(std::ptr::eq(&**dynamic, def));
                ArgNames::Emitted(dynamic.clone())
            }
        }
    }

    #[inline(always)]
    pub(super) fn resolve_arguments(
        &self,
        key: Key,
        def: &PlannedStep,
    ) -> Result<Arguments, StepErrorKind> {
        let inst = &self.instances[key.inst as usize];
        // The common case, plain reads of available values, takes one
        // allocation for the whole argument list and touches nothing else.
        let available = |from: &ArgFrom| match *from {
            ArgFrom::Step(j) => inst.nodes[j as usize].result.is_some(),
            _ => true,
        };
        if def.plain_args && def.arg_from.iter().all(available) {
            let n = def.arg_from.len();
            let values = Values::collect(
                n,
                (0..n).map(|k| self.raw_argument(key, def, k).expect("checked above")),
            );
            return Ok(Arguments::from_parts(self.arg_names(key, def), values));
        }
        let spec = def.spec.def();
        let mut values = Vec::with_capacity(def.arg_from.len());
        for (k, arg) in spec.arguments.iter().enumerate() {
            let raw = self.raw_argument(key, def, k).ok_or_else(|| {
                let ArgFrom::Step(j) = def.arg_from[k] else {
                    unreachable!("only step results can be missing")
                };
                StepErrorKind::MissingResult {
                    argument: arg.name.to_string(),
                    dependency: def_of(&self.plan, inst, j as usize).name().to_string(),
                }
            })?;
            values.push(arg.source.finish(&arg.name, raw)?);
        }
        let args = Arguments::from_parts(self.arg_names(key, def), Values::from(values));
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
}
