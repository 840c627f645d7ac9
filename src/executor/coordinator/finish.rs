//! The end of a run, whatever ends it (success, failure, halt, timeout,
//! iteration limit): one routine that drains what runs, cancels what it
//! abandons, records it, unwinds the saga when the run failed, and tells
//! the middleware.

use tokio::time::Instant;

use super::{after, def_of, Coordinator, Finish, Inline, Status};
use crate::context::StepRef;
use crate::error::RunError;
use crate::event::EventKind;
use crate::executor::attempt::Attempt;
use crate::executor::state::{RunState, UndoRecord};
use crate::executor::tasks::TaskReport;
use crate::executor::undo::{UndoEntry, Unfinished};
use crate::middleware::{self, RunInfo};
use crate::value::Value;
use crate::value::ValueMap;

impl Coordinator {
    /// Waits for the running attempts (in tasks and in the coordinator) up
    /// to the halt timeout; then cancels those still running and waits
    /// until they, and every task of the runs nested in them, have stopped.
    async fn drain(&mut self) {
        self.wait_for_running().await;
        // Runs nested in this run's steps that were dropped before they
        // ended left what they did to undo: it is this run's now.
        let orphans =
            std::mem::take(&mut *self.scope.orphans.lock().unwrap_or_else(|p| p.into_inner()));
        for mut stack in orphans {
            self.undo.append(&mut stack);
        }
    }

    async fn wait_for_running(&mut self) {
        let deadline = after(Instant::now(), self.settings.halt_timeout);
        enum Drained {
            Task(Option<TaskReport>),
            Inline(Attempt),
            TimedOut,
        }
        while self.tasks.running() > 0 || self.inline.is_some() {
            let running = self.tasks.running() > 0;
            let tasks = &mut self.tasks;
            let inline = &mut self.inline;
            let has_inline = inline.is_some();
            let drained = tokio::select! {
                biased;
                report = tasks.next(), if running => Drained::Task(report),
                attempt = async { inline.as_mut().expect("checked").fut.as_mut().await }, if has_inline => Drained::Inline(attempt),
                _ = tokio::time::sleep_until(deadline) => Drained::TimedOut,
            };
            match drained {
                Drained::Task(Some(report)) => self.on_task(report),
                Drained::Task(None) => {}
                Drained::Inline(attempt) => {
                    let Inline { key, args, ctx, .. } = self.inline.take().expect("it ran");
                    self.on_attempt(key, attempt, args, ctx);
                }
                Drained::TimedOut => break,
            }
        }
        if self.tasks.running() == 0 && self.inline.is_none() {
            return;
        }
        // Abandon what still runs: cancel it, and wait until it stopped.
        if let Some(inline) = self.inline.take() {
            drop(inline.fut);
            let plan = self.plan.clone();
            let def = def_of(
                &plan,
                &self.instances[inline.key.inst as usize],
                inline.key.i(),
            );
            let undo_args = def.can_undo.then_some(inline.args);
            drop(def);
            self.lost(inline.key, undo_args);
        }
        self.tasks.abort_all();
        while let Some(report) = self.tasks.next().await {
            self.on_task(report);
        }
        self.tasks.tracker().idle().await;
    }

    /// Ends the run: drains it, then completes, halts, or unwinds the saga
    /// and fails.
    pub(super) async fn finish(mut self: Box<Self>) -> Finish {
        self.drain().await;
        let duration = self.started.elapsed();
        // A map's elements are part of the map's run: no run events or
        // hooks of their own.
        let own_run = self.feed.is_none();
        let scope = self.scope.clone();
        let info = RunInfo {
            run_id: &scope.run_id,
            reactor: &scope.plan.name,
            resumed: self.settings.resumed,
            parent_run: scope.events.parent_run(),
        };
        if self.errors.is_empty() && !self.halting && self.is_done() {
            let value = match &mut self.feed {
                Some(feed) => feed.result(),
                None => self.instances[0].nodes[self.plan.return_step]
                    .result
                    .clone()
                    .expect("the return step's result is kept"),
            };
            let value = if own_run {
                self.emit_run(|| EventKind::RunComplete {
                    duration,
                    value: &value,
                });
                match scope.events.complete(info, value).await {
                    Ok(value) => Some(value),
                    Err(reason) => {
                        self.errors
                            .push(middleware::failure(&scope.plan.name, 0, reason));
                        None
                    }
                }
            } else {
                Some(value)
            };
            if self.durable() && self.errors.is_empty() {
                let ret = self.instances[0].nodes[self.plan.return_step]
                    .result
                    .clone();
                if let Some(ret) = ret {
                    self.journal_completed(&ret).await;
                }
            }
            if let (Some(value), true) = (value, self.errors.is_empty()) {
                let state = if self.settings.keep_state && own_run {
                    self.state()
                } else {
                    RunState::default()
                };
                let undo = std::mem::take(&mut self.undo);
                self.span.record("outcome", "completed");
                return Finish::Completed { value, state, undo };
            }
        } else if self.errors.is_empty() {
            let mut state = Some(if own_run {
                self.state()
            } else {
                RunState::default()
            });
            if own_run {
                self.emit_run(|| EventKind::RunHalt { duration });
                let halted = state.take().expect("made above");
                match scope.events.halt(info, halted).await {
                    Ok(s) => state = Some(s),
                    Err(reason) => {
                        self.errors
                            .push(middleware::failure(&scope.plan.name, 0, reason))
                    }
                }
            }
            if self.errors.is_empty() {
                self.journal_halted().await;
            }
            if let (Some(state), true) = (state, self.errors.is_empty()) {
                let undo = std::mem::take(&mut self.undo);
                self.span.record("outcome", "halted");
                return Finish::Halted {
                    state,
                    undo,
                    span: self.span.id(),
                };
            }
        }
        self.settle_maybe_started();
        self.journal_unwinding().await;
        if self.journal_broken {
            // Left to be taken up from the journal, which says it runs (a
            // durable run's stack, dropped, is handed to no one).
            drop(std::mem::take(&mut self.undo));
        }
        let undone = self.undo.unwind().await;
        self.errors.extend(undone);
        if self.durable() && !self.journal_broken {
            let errors = std::mem::take(&mut self.errors);
            self.journal_failed_end(&errors).await;
            self.errors = errors;
        }
        let mut error = RunError {
            run_id: scope.run_id.to_string(),
            errors: std::mem::take(&mut self.errors),
        };
        if own_run {
            self.emit_run(|| EventKind::RunError {
                duration,
                error: &error,
            });
            error.errors.append(&mut self.errors);
            error = scope.events.error(info, error).await;
        }
        self.span.record("outcome", "failed");
        Finish::Failed(error, self.failed_element)
    }

    /// The run's state as plain data (of a reactor's run, not a map's).
    fn state(&self) -> RunState {
        let plan = &self.plan;
        let inst = &self.instances[0];
        let name = |i: usize| def_of(plan, inst, i).name().to_string();
        let mut results = ValueMap::new();
        let mut retries = std::collections::BTreeMap::new();
        let mut emitted = Vec::new();
        for (i, node) in inst.nodes.iter().enumerate() {
            if let Some(v) = &node.result {
                results.insert(name(i), v.clone());
            }
            if node.retries > 0 && node.status != Status::Done {
                retries.insert(name(i), node.retries);
            }
            if let Some(d) = inst.def(i) {
                emitted.push(d.spec.clone());
            }
        }
        RunState {
            run_id: self.scope.run_id.to_string(),
            inputs: self.raw_inputs.clone(),
            context: self.scope.values.clone(),
            completed: inst.completed.iter().map(|&i| name(i as usize)).collect(),
            results,
            undo_stack: self
                .undo
                .entries()
                .iter()
                .map(|e| UndoRecord {
                    step: e.ctx.step_name().to_string(),
                    emitted: match &e.ctx.step {
                        StepRef::Planned(_) => None,
                        StepRef::Emitted(spec) => Some(spec.clone()),
                    },
                    value: e.value.clone(),
                    arguments: e.args.clone(),
                })
                .collect(),
            emitted,
            retries,
            abandoned: self.abandoned.clone(),
        }
    }
}

impl Drop for Coordinator {
    /// A nested run dropped before it ended (its step was cancelled) adds
    /// its running undoable steps, as possibly completed, to its undo
    /// stack, which hands itself to the run it is nested in. A run that
    /// ended has nothing left.
    fn drop(&mut self) {
        if !self.nested {
            return;
        }
        if self.durable() {
            // Its journal says what it did: the step that ran it undoes
            // it from there (as possibly started), once; its stack is
            // handed to no one (`UndoStack`'s drop).
            return;
        }
        let mut running: Vec<(super::Key, Option<crate::argument::Arguments>)> =
            self.tasks.take_running().collect();
        if let Some(inline) = self.inline.take() {
            running.push((inline.key, Some(inline.args)));
        }
        let plan = self.plan.clone();
        for (key, args) in running {
            let def = def_of(&plan, &self.instances[key.inst as usize], key.i());
            let (true, Some(args)) = (def.can_undo, args) else {
                continue;
            };
            self.undo.push(UndoEntry {
                step: def.imp(),
                ctx: self.undo_context(
                    self.step_ref(key, &def),
                    self.instances[key.inst as usize].nodes[key.i()].retries,
                ),
                value: Value::new(Unfinished),
                args,
            });
        }
        // The stack hands itself to the parent run when dropped.
    }
}
