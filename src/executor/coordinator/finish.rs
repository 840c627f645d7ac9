//! The end of a run: waiting for running steps, unwinding the saga, and
//! the run's state as plain data.

use std::time::Duration;

use tokio::time::Instant;

use super::{def_of, Coordinator, Finish, Status};
use crate::context::Context;
use crate::error::RunError;
use crate::event::EventKind;
use crate::executor::runner;
use crate::executor::state::{RunState, UndoRecord};
use crate::value::ValueMap;

impl Coordinator {
    /// Waits for running steps, up to `limit`; steps still running then are
    /// abandoned and will run again on resume.
    pub(super) async fn drain(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.tasks.running() > 0 {
            match tokio::time::timeout_at(deadline, self.tasks.next()).await {
                Ok(Some(finished)) => self.on_finished(finished),
                Ok(None) => break,
                Err(_) => {
                    for i in 0..self.nodes.len() {
                        if self.nodes[i].status == Status::Running {
                            tracing::warn!(
                                step = %def_of(&self.plan, &self.nodes, i).name(),
                                "step still running after the halt timeout; it is abandoned and cannot be undone"
                            );
                            self.nodes[i].status = Status::Ready;
                        }
                    }
                    self.tasks.detach_all();
                }
            }
        }
    }

    pub(super) async fn finish(mut self: Box<Self>) -> Finish {
        let halt_timeout = self.settings.halt_timeout;
        self.drain(halt_timeout).await;
        let scope = self.scope.clone();
        let duration = self.started.elapsed();
        if !self.errors.is_empty() {
            self.unwind().await;
            let error = RunError {
                run_id: scope.run_id.to_string(),
                errors: std::mem::take(&mut self.errors),
            };
            scope
                .events
                .emit(&scope.run_id, &scope.plan.name, None, || {
                    EventKind::RunError {
                        duration,
                        error: &error,
                    }
                });
            return Finish::Failed(error);
        }
        if self.unfinished == 0 && !self.halting {
            let value = self.nodes[self.plan.return_step]
                .result
                .clone()
                .expect("the return step's result is kept");
            scope
                .events
                .emit(&scope.run_id, &scope.plan.name, None, || {
                    EventKind::RunComplete {
                        duration,
                        value: &value,
                    }
                });
            let state = if self.settings.keep_state {
                self.into_state()
            } else {
                RunState::default()
            };
            return Finish::Completed { value, state };
        }
        scope
            .events
            .emit(&scope.run_id, &scope.plan.name, None, || {
                EventKind::RunHalt { duration }
            });
        Finish::Halted {
            state: self.into_state(),
        }
    }

    /// Undoes every completed undoable step, newest first.
    pub(super) async fn unwind(&mut self) {
        let plan = self.plan.clone();
        while let Some(entry) = self.undo.pop() {
            let def = def_of(&plan, &self.nodes, entry.index);
            let ctx = Context {
                run: self.scope.clone(),
                step: self.step_ref(entry.index, &def),
                current_try: 0,
                retries_remaining: None,
                events: self.scope.events.is_active(),
            };
            let step = def.imp();
            drop(def);
            let undo = runner::undo(step, entry.value, entry.args, ctx);
            if let Err(e) = undo.await {
                self.errors.push(e);
            }
        }
    }

    pub(super) fn into_state(self: Box<Self>) -> RunState {
        let plan = &self.plan;
        let name = |i: usize| def_of(plan, &self.nodes, i).name().to_string();
        let mut results = ValueMap::new();
        let mut retries = std::collections::BTreeMap::new();
        let mut emitted = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(v) = &node.result {
                results.insert(name(i), v.clone());
            }
            if node.retries > 0 && node.status != Status::Done {
                retries.insert(name(i), node.retries);
            }
            if let Some(d) = &node.def {
                emitted.push(d.spec.clone());
            }
        }
        RunState {
            run_id: self.scope.run_id.to_string(),
            inputs: self.raw_inputs.clone(),
            context: self.scope.values.clone(),
            completed: self.completed.iter().map(|&i| name(i)).collect(),
            results,
            undo_stack: self
                .undo
                .iter()
                .map(|e| UndoRecord {
                    step: name(e.index),
                    value: e.value.clone(),
                    arguments: e.args.clone(),
                })
                .collect(),
            emitted,
            retries,
        }
    }
}
