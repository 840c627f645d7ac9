//! What a durable run writes to its journal, and when: the write-ahead
//! rule in one place.
//!
//! 1. A completed step's `StepDone` (its encoded result) is pushed when
//!    the step completes; its dependents wait in `unsynced` until the
//!    next flush, which the loop makes before it starts any step. So a
//!    step starts only once what it depends on is durable, and one commit
//!    carries every step that completed meanwhile.
//! 2. A retry's `StepRetry` goes with the next flush.
//! 3. The end: `RunEnded` (completed), `Halted`, or `Unwinding` (the
//!    errors and the steps to undo) before the first undo; each undo then
//!    writes its `Undone` ([`crate::executor::undo`]), and `RunEnded`
//!    (failed) comes last.
//! 4. A run taken up from its journal gets its undo stack back through
//!    its state (each entry's arguments rebuilt from the journalled
//!    results, [`super::emitted`]); an unwinding one goes on unwinding
//!    ([`Recovered`]); one that fails undoes, as possibly completed, the
//!    steps that may have started before the crash.
//!
//! A step the journal cannot record (a result of another type than its
//! declared one, an emitted step no registered kind rebuilds, an undo
//! token) fails, naming why. Emitted steps are journalled as data, with
//! their emitter's `StepDone` ([`crate::durable::StepRegistry`]). A store
//! that keeps failing fails the run.

use super::{def_of, Coordinator, Key, Status};
use crate::argument::Arguments;
use crate::error::{Error, Phase, Reason, StepError, StepErrorKind};
use crate::executor::attempt::UndoWith;
use crate::executor::state::Recovered;
use crate::executor::undo::UndoEntry;
use crate::executor::NestedRuns;
use crate::journal::{Entry, RunEnd, StepFailure, UndoItem};
use crate::step::StepSpec;
use crate::value::Value;

impl Coordinator {
    /// Whether this run writes a journal.
    pub(super) fn durable(&self) -> bool {
        self.scope.journal.is_some()
    }

    /// Makes step `key`'s completion ready for the journal; an error if
    /// the journal cannot record it. It is pushed
    /// ([`Coordinator::journal_done_push`]) once the steps it emitted are
    /// planned. (Kept out of line, and out of `complete`'s frame: runs
    /// without a journal do not pay for it.)
    #[inline(never)]
    pub(super) fn journal_done(
        &mut self,
        key: Key,
        value: &Value,
        emitted: &[StepSpec],
        undo: &UndoWith,
        attempt: u32,
    ) -> Result<(), StepErrorKind> {
        let refuse = |what: &str| {
            Err(StepErrorKind::Failed(Reason::msg(format!(
                "a durable run cannot journal {what}"
            ))))
        };
        let emitted = match (&self.settings.steps, emitted.is_empty()) {
            (_, true) => Vec::new(),
            (Some(steps), false) => emitted
                .iter()
                .map(|spec| steps.journalled(spec))
                .collect::<Result<_, _>>()
                .map_err(|e| StepErrorKind::Plan(Reason::msg(e)))?,
            (None, false) => return refuse("steps emitted without a step registry"),
        };
        // Of undo values apart from the result, only nested runs kept by
        // id can be journalled.
        let nested = match undo {
            UndoWith::Token(token) => match token.downcast_ref::<NestedRuns>() {
                Some(runs) => runs.ids.clone(),
                None => return refuse("an undo value apart from the result (`OkWithUndo`)"),
            },
            _ => Vec::new(),
        };
        let plan = self.plan.clone();
        let def = def_of(&plan, &self.instances[key.inst as usize], key.i());
        let Some(codec) = def.spec.output_codec() else {
            return refuse("a result of undeclared type");
        };
        let value = codec
            .encode(value)
            .map_err(|e| StepErrorKind::Failed(Reason::msg(e.to_string())))?;
        let entry = Entry::StepDone {
            step: def.name().to_string(),
            attempt,
            value,
            skipped: matches!(undo, UndoWith::Nothing),
            emitted,
            nested,
        };
        drop(def);
        self.done_entry = Some(Box::new(entry));
        Ok(())
    }

    /// Pushes step `key`'s completion to the journal's next flush, unless
    /// the steps it emitted failed to plan (then it failed, and is not
    /// done).
    #[inline(never)]
    pub(super) fn journal_done_push(&mut self, key: Key, replaced: bool) {
        let Some(entry) = self.done_entry.take() else {
            return;
        };
        let failed = self.instances[key.inst as usize].nodes[key.i()].status == Status::Failed;
        if let (Some(journal), true) = (&self.scope.journal, replaced || !failed) {
            journal.push(*entry);
        }
    }

    /// Pushes step `key`'s retry count.
    pub(super) fn journal_retry(&mut self, key: Key, retries: u32) {
        if let Some(journal) = &self.scope.journal {
            journal.push(Entry::StepRetry {
                step: self.name_of(key).to_string(),
                retries,
            });
        }
    }

    /// The run's runtime cancelled it: it stops starting steps, and
    /// unwinds as a failed run does, ending cancelled.
    pub(super) fn cancel_now(&mut self) {
        if self.cancelled && !self.errors.is_empty() {
            return;
        }
        self.cancelled = true;
        let cancelled = self.run_failure("the run was cancelled");
        self.errors.push(cancelled);
    }

    /// A failure of the run itself, not of one of its steps: it carries
    /// the reactor's name.
    fn run_failure(&self, message: impl Into<String>) -> StepError {
        StepError {
            step: self.plan.name.to_string(),
            phase: Phase::Run,
            attempt: 0,
            kind: StepErrorKind::Failed(Reason::msg(message)),
        }
    }

    /// Whether the journal waits for a flush (completed steps, retries).
    pub(super) fn journal_pending(&self) -> bool {
        !self.unsynced.is_empty() || self.scope.journal.as_ref().is_some_and(|j| j.has_pending())
    }

    /// Makes the journal durable, then lets the dependents of the steps
    /// completed meanwhile start. A store that keeps failing fails the
    /// run.
    pub(super) async fn sync_journal(&mut self) {
        if let Some(journal) = self.scope.journal.clone() {
            if let Err(e) = journal.flush().await {
                self.journal_failed(e.into());
                return;
            }
        }
        let plan = self.plan.clone();
        for key in std::mem::take(&mut self.unsynced) {
            self.release(&plan, key.inst as usize, key.i());
        }
    }

    /// The journal cannot be written: the run stops, and leaves its
    /// unwinding (if it fails) to whoever takes it up from the journal,
    /// which still says it runs. Undoing now, unrecorded, would let it be
    /// taken up later as if nothing had been undone.
    fn journal_failed(&mut self, error: Error) {
        self.journal_broken = true;
        let failed = self.run_failure(format!("the journal failed: {error}"));
        self.errors.push(failed);
    }

    /// Writes the run's completion with its (return step's) `value`.
    pub(super) async fn journal_completed(&mut self, value: &Value) {
        let Some(journal) = self.scope.journal.clone() else {
            return;
        };
        if self.completed_before {
            return;
        }
        let plan = self.plan.clone();
        let ret = &plan.steps[plan.return_step];
        let encoded = match ret.spec.output_codec().map(|c| c.encode(value)) {
            Some(Ok(v)) => v,
            Some(Err(e)) => return self.journal_failed(e),
            None => serde_json::Value::Null,
        };
        journal.push(Entry::RunEnded {
            end: RunEnd::Completed { value: encoded },
        });
        if let Err(e) = journal.flush().await {
            self.journal_failed(e.into());
        }
    }

    /// Writes the run's halt.
    pub(super) async fn journal_halted(&mut self) {
        if let Some(journal) = self.scope.journal.clone() {
            if let Err(e) = journal.write(Entry::Halted).await {
                self.journal_failed(e.into());
            }
        }
    }

    /// A taken-up run that fails undoes the steps that may have started
    /// before the crash and did not run again since, as possibly
    /// completed (their undo receives [`Unfinished`]), in their place:
    /// after the steps the journal completed, before this run's own.
    ///
    /// [`Unfinished`]: crate::executor::Unfinished
    pub(super) fn settle_maybe_started(&mut self) {
        let plan = self.plan.clone();
        let mut at = self.recovered_undo;
        for key in std::mem::take(&mut self.maybe_started) {
            // Done now: on the stack already. Running: drained, then done
            // or abandoned (on the stack either way). Failed now, or never
            // run again: what it did before the crash is undone.
            let status = self.instances[key.inst as usize].nodes[key.i()].status;
            if matches!(status, Status::Done | Status::Running) {
                continue;
            }
            let def = def_of(&plan, &self.instances[key.inst as usize], key.i());
            let def = &*def;
            let step = match def.spec.resolve() {
                Ok(step) => step,
                Err(e) => {
                    tracing::error!(step = %def.name(), error = %e, "cannot undo a step that may have started");
                    continue;
                }
            };
            let args = self.resolve_arguments(key, def).unwrap_or_else(|e| {
                tracing::warn!(step = %def.name(), error = %e, "the arguments of a step that may have started: undone with none");
                Arguments::from_pairs::<&str>(def.name(), [])
            });
            // Its attempt, to find the runs it nested.
            let tries = self.instances[key.inst as usize].nodes[key.i()].retries;
            let ctx = self.undo_context(self.step_ref(key, def), tries);
            self.undo.insert(
                at,
                UndoEntry {
                    step,
                    ctx,
                    value: Value::new(crate::executor::Unfinished),
                    args,
                },
            );
            at += 1;
        }
    }

    /// Writes that the run unwinds: its errors and the steps it undoes.
    pub(super) async fn journal_unwinding(&mut self) {
        let Some(journal) = self.scope.journal.clone() else {
            return;
        };
        if self.unwinding_journalled {
            return;
        }
        self.unwinding_journalled = true;
        let undo = self
            .undo
            .entries()
            .iter()
            .rev()
            .map(|e| UndoItem {
                step: e.ctx.step_name().to_string(),
                abandoned: e.value.is::<crate::executor::Unfinished>(),
            })
            .collect();
        journal.push(Entry::Unwinding {
            errors: self.errors.iter().map(StepFailure::from).collect(),
            undo,
        });
        if let Err(e) = journal.flush().await {
            tracing::error!(error = %e, "the journal failed before unwinding: the run is left to be taken up");
            self.journal_failed(e.into());
        }
    }

    /// Writes the failed run's end, with every error.
    pub(super) async fn journal_failed_end(&mut self, errors: &[StepError]) {
        if let Some(journal) = self.scope.journal.clone() {
            let end = if self.cancelled {
                RunEnd::Cancelled
            } else {
                RunEnd::Failed {
                    errors: errors.iter().map(StepFailure::from).collect(),
                }
            };
            if let Err(e) = journal.write(Entry::RunEnded { end }).await {
                tracing::error!(error = %e, "the journal failed at the run's end");
            }
        }
    }

    /// Takes up what the journal said beyond the run's state: the steps
    /// that may have started before the crash, an unwinding in progress, a
    /// cancellation.
    pub(super) fn recover(&mut self, recovered: Recovered) {
        let plan = self.plan.clone();
        self.completed_before = recovered.completed;
        if recovered.unwinding.is_none() {
            // Ready now means its dependencies were durable before the
            // crash: it may have started, and done its work.
            let instances = &self.instances;
            self.maybe_started = self
                .ready
                .iter()
                .copied()
                .filter(|k| def_of(&plan, &instances[k.inst as usize], k.i()).can_undo)
                .collect();
            self.recovered_undo = self.undo.entries().len();
        }
        if recovered.cancel {
            match recovered.unwinding {
                None => self.cancel_now(),
                // It fails already: it goes on unwinding, and ends cancelled.
                Some(_) => self.cancelled = true,
            }
        }
        if let Some(errors) = recovered.unwinding {
            self.unwinding_journalled = true;
            self.errors.extend(errors.into_iter().map(StepError::from));
            if self.errors.is_empty() {
                // A journal that says it unwinds without saying why: it
                // still unwinds (the journal itself is fine).
                let failed = self.run_failure("the run was unwinding when it was taken up");
                self.errors.push(failed);
            }
        }
    }
}
