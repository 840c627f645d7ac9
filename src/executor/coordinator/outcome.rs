//! What a finished attempt means for the run, wherever it ran: the result
//! kept for readers and on the undo stack, emitted steps joining the run,
//! retries counted against `max_retries` and delayed by the step's
//! backoff, halts, and failures.

use std::cmp::Reverse;

use tokio::time::Instant;

use super::{after, def_of, Coordinator, Key, Status};
use crate::argument::Arguments;
use crate::context::Context;
use crate::error::{Phase, Reason, StepError, StepErrorKind};
use crate::event::EventKind;
use crate::executor::attempt::{self, Attempt, DoneMore, UndoWith, Verdict};
use crate::executor::undo::{UndoEntry, Unfinished};
use crate::step::{Backoff, StepSpec};
use crate::value::Value;

impl Coordinator {
    /// Handles the end of an attempt of step `key`.
    pub(super) fn on_attempt(&mut self, key: Key, attempt: Attempt, args: Arguments, ctx: Context) {
        if let Some(panic) = attempt.hook {
            let attempt = self.instances[key.inst as usize].nodes[key.i()].retries + 1;
            self.errors.push(panic.error(ctx.step_name(), attempt));
        }
        match attempt.verdict {
            Verdict::Done { value, more: None } => {
                self.complete(key, value, Vec::new(), args, ctx, UndoWith::Value)
            }
            Verdict::Done {
                value,
                more: Some(more),
            } => {
                let DoneMore {
                    emitted,
                    undo,
                    halt,
                } = *more;
                if halt {
                    self.instances[key.inst as usize].nodes[key.i()].keep = true;
                    self.halting = true;
                }
                self.complete(key, value, emitted, args, ctx, undo);
            }
            Verdict::Retry {
                reason,
                compensated,
            } => self.retry(key, reason, compensated, args, ctx),
            Verdict::Failed { phase, kind } => {
                let attempt = self.instances[key.inst as usize].nodes[key.i()].retries + 1;
                self.fail(key, phase, attempt, *kind);
            }
        }
    }

    /// A step retries: counted against its `max_retries` (past them it
    /// fails, with the retry reason or `RetriesExceeded`), then ready again
    /// at once or after its backoff (a panicking backoff fails the step).
    fn retry(
        &mut self,
        key: Key,
        reason: Option<Reason>,
        compensated: bool,
        args: Arguments,
        ctx: Context,
    ) {
        let plan = self.plan.clone();
        let def = def_of(&plan, &self.instances[key.inst as usize], key.i());
        let backoff = attempt::backoff(&*def.imp(), reason.as_ref(), &args, &ctx);
        let max = def.max_retries();
        drop(def);
        let backoff = match backoff {
            Ok(backoff) => backoff,
            Err(panicked) => {
                let attempt = self.instances[key.inst as usize].nodes[key.i()].retries + 1;
                self.fail(key, Phase::Run, attempt, StepErrorKind::Failed(panicked));
                return;
            }
        };
        if ctx.events {
            let attempt = ctx.current_try + 1;
            if let Err(panic) = ctx.emit(|| EventKind::StepRetry {
                attempt,
                compensated,
                reason: reason.as_ref(),
                backoff,
            }) {
                self.errors.push(panic.error(ctx.step_name(), attempt));
            }
        }
        let inst = &mut self.instances[key.inst as usize];
        inst.retry_args.insert(key.i(), args);
        let node = &mut inst.nodes[key.i()];
        node.retries += 1;
        let retries = node.retries;
        self.journal_retry(key, retries);
        let node = &mut self.instances[key.inst as usize].nodes[key.i()];
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
                self.fail(key, Phase::Run, attempt, kind);
                return;
            }
        }
        match backoff {
            Backoff::After(d) if !d.is_zero() => {
                node.status = Status::BackingOff;
                self.backoffs.push(Reverse((after(Instant::now(), d), key)));
            }
            _ => {
                node.status = Status::Ready;
                self.push_ready(key);
            }
        }
    }

    /// A step failed for good: the run stops starting steps and unwinds.
    pub(super) fn fail(&mut self, key: Key, phase: Phase, attempt: u32, kind: StepErrorKind) {
        let inst = &mut self.instances[key.inst as usize];
        inst.nodes[key.i()].status = Status::Failed;
        if self.feed.is_some() {
            self.failed_element.get_or_insert(inst.index);
        }
        let error = StepError {
            step: self.name_of(key).to_string(),
            phase,
            attempt,
            kind,
        };
        let scope = self.scope.clone();
        let emitted = scope.emit(Some(&error.step), || EventKind::StepFailed {
            error: &error,
        });
        let step = error.step.clone();
        self.errors.push(error);
        if let Err(panic) = emitted {
            self.errors.push(panic.error(&step, attempt));
        }
    }

    /// A step whose task was lost (aborted after the halt timeout, or
    /// stopped by an engine bug). A halted run runs it again on resume; a
    /// failed run reports it and undoes it as if it had completed.
    pub(super) fn lost(&mut self, key: Key, undo_args: Option<Arguments>) {
        let plan = self.plan.clone();
        let inst = &mut self.instances[key.inst as usize];
        if inst.nodes[key.i()].status != Status::Running {
            return;
        }
        let name = self.name_of(key);
        let scope = self.scope.clone();
        let _ = scope.emit(Some(&name), || EventKind::StepAbandoned);
        if self.errors.is_empty() && self.halting {
            tracing::warn!(step = %name, "step still running after the halt timeout: cancelled, it runs again on resume");
            let inst = &mut self.instances[key.inst as usize];
            inst.nodes[key.i()].status = Status::Ready;
            self.abandoned.push(name.to_string());
            return;
        }
        tracing::warn!(step = %name, "step still running after the halt timeout: cancelled, and undone as if it had completed");
        let attempt = self.instances[key.inst as usize].nodes[key.i()].retries + 1;
        let def = def_of(&plan, &self.instances[key.inst as usize], key.i());
        if def.can_undo {
            let args = undo_args.unwrap_or_else(|| Arguments::from_pairs::<&str>(&name, []));
            let ctx = self.undo_context(self.step_ref(key, &def), attempt - 1);
            self.undo.push(UndoEntry {
                step: def.imp(),
                ctx,
                value: Value::new(Unfinished),
                args,
            });
        }
        drop(def);
        self.fail(key, Phase::Run, attempt, StepErrorKind::Abandoned);
    }

    /// Records a finished step: its undo entry, its emitted steps, its
    /// result for its readers; its dependents' counts drop.
    fn complete(
        &mut self,
        key: Key,
        value: Value,
        emitted: Vec<StepSpec>,
        args: Arguments,
        ctx: Context,
        undo: UndoWith,
    ) {
        let attempt = ctx.current_try + 1;
        let refused = match self.durable() {
            true => self
                .journal_done(key, &value, &emitted, &undo, attempt)
                .err(),
            false => None,
        };
        let plan = self.plan.clone();
        let (k, i) = (key.inst as usize, key.i());
        let def = def_of(&plan, &self.instances[k], i);
        if def.can_undo {
            let kept = match undo {
                UndoWith::Value => Some(value.clone()),
                UndoWith::Token(token) => Some(token),
                UndoWith::Nothing => None,
            };
            if let Some(kept) = kept {
                self.undo.push(UndoEntry {
                    step: def.imp(),
                    ctx,
                    value: kept,
                    args,
                });
            }
        }
        if let Some(kind) = refused {
            // Its work is done (and on the undo stack): the journal cannot
            // record it, so the run fails.
            drop(def);
            self.fail(key, Phase::Run, attempt, kind);
            return;
        }
        let replaced = !emitted.is_empty() && self.add_emitted_by(key, &value, emitted);
        if self.durable() {
            self.journal_done_push(key, replaced);
        }
        // Its readings are done (emitted steps were wired first, so results
        // they read stay): producers nobody else reads free their results.
        for j in def.reads() {
            if j != i {
                self.instances[k].release_read(j);
            }
        }
        drop(def);
        let inst = &mut self.instances[k];
        if replaced || inst.nodes[i].status == Status::Failed {
            return;
        }
        let node = &mut inst.nodes[i];
        node.status = Status::Done;
        if node.readers > 0 || node.keep {
            node.result = Some(value);
        }
        inst.unfinished -= 1;
        if self.feed.is_none() {
            inst.completed.push(key.step);
        }
        if self.durable() {
            // Its dependents start once the journal holds it.
            self.unsynced.push(key);
            return;
        }
        self.release(&plan, k, i);
    }

    /// Step `i` of instance `k` is done: its dependents' counts drop.
    #[inline]
    pub(super) fn release(&mut self, plan: &crate::planner::Plan, k: usize, i: usize) {
        if i < plan.steps.len() {
            for d in plan.steps[i].dependents() {
                self.dependency_done(k, d);
            }
        }
        if !self.instances[k].extra_dependents.is_empty() {
            if let Some(extra) = self.instances[k].extra_dependents.remove(&i) {
                for d in extra {
                    self.dependency_done(k, d);
                }
            }
        }
        if self.feed.is_some() && self.instances[k].unfinished == 0 {
            self.element_done(k);
        }
    }
}
